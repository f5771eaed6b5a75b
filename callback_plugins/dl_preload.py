"""Loads plugins and collections once, in the controller's main process, at the start of every play.

Ansible runs each task of each host in a process forked from the main one, and what that process loads dies with it.
Measured with py-spy on a warm `site.yml` of the 3-host lab, the workers spent about a sixth of the controller's
time loading the same things again for every task and host:
- a task whose templates use a filter that is not built in (this repository's `dl_*` filters) loads every filter
  file of the configured paths, compiled from source when Python writes no bytecode (PYTHONDONTWRITEBYTECODE);
- a task of a collection's module (community.general.ini_file) imports the collection's package, which parses the
  collection's meta/runtime.yml (community.general's is large);
- a lookup parses its plugin's documentation for its settings.
Loaded here, before the play forks anything, every worker inherits them.

Nothing here changes what a play does; with this file out of the callback path, plays run the same, only slower.
"""

import importlib

from ansible.playbook.block import Block
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, lookup_loader, test_loader

DOCUMENTATION = """
  name: dl_preload
  type: aggregate
  short_description: loads the filter and test plugins before a play forks its workers
  description:
    - At every play's start, loads in the controller's main process the Jinja filter, test and lookup plugins of
      the configured paths and the packages of the collections whose modules the play's tasks name, so that the
      processes forked for tasks inherit them instead of each loading them again.
  requirements:
    - the repository's callback_plugins directory in the callback path (ansible.cfg sets it)
"""


class CallbackModule(CallbackBase):
    """Warms the Jinja plugin loaders in the process the task workers are forked from."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dl_preload"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_play_start(self, play):
        # At each play: loading a play's roles adds their plugin directories, which empties the loaders' caches.
        for loader in (filter_loader, test_loader):
            for _plugin in loader.all():
                pass
        for _plugin in lookup_loader.all(class_only=True):
            pass
        try:
            collections = _collections_of(play.compile())
        except Exception as error:  # pylint: disable=broad-except  # a speed-up must never stop a play
            self._display.vvv(f"dl_preload: could not list the play's collections: {error}")
            return
        for collection in sorted(collections):
            try:
                importlib.import_module(f"ansible_collections.{collection}")
            except ImportError as error:
                # Not installed: the task that names it reports that, not this callback.
                self._display.vvv(f"dl_preload: collection {collection} not loaded: {error}")


def _collections_of(blocks) -> set:
    """The collections (namespace.name) whose modules the tasks of these blocks name, ansible.builtin left out."""
    found = set()
    for block in blocks:
        for item in block.block + block.rescue + block.always:
            if isinstance(item, Block):
                found |= _collections_of([item])
                continue
            parts = (item.action or "").split(".")
            if len(parts) >= 3 and parts[:2] != ["ansible", "builtin"]:
                found.add(f"{parts[0]}.{parts[1]}")
    return found
