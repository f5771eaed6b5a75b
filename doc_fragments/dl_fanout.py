"""The options of the modules that run a small program on many hosts at once over plain ssh (plugin_utils/dl_fanout.py):
library/dl_fleet_state.py and library/dl_job_hosts.py."""


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """`extends_documentation_fragment: [dl_fanout]`."""

    DOCUMENTATION = r"""
options:
  become:
    description:
      - Run the program through C(sudo -n) as root (the host's C(ansible_become_user) when set).
      - Omitted, as Ansible would for each host, its C(ansible_become) or else the task's C(become).
    type: bool
  timeout:
    description:
      - ssh's C(ConnectTimeout) in seconds (the ssh plugin's C(timeout) when omitted).
      - A host that has not answered within twice this has failed (a step that changes a host gets 300 s more).
    type: int
  forks:
    description: The most ssh processes at once (Ansible's C(forks) when omitted).
    type: int
"""
