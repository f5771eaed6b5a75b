"""dl_job_bundle: write, on the controller, the one archive of a job's files that every host of the job unpacks.

Documentation and arguments: library/dl_job_bundle.py. Used by roles/train/tasks/prepare.yml: one archive built
once, returned base64 as ``data`` for library/dl_job_files.py to unpack in one module run per host, replaces a copy
task per file per host (a directory copy costs two module runs per file on every host).
"""

from __future__ import annotations

import base64
import io
import os
import stat
import tarfile
import tempfile
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = {
    "dest": {"type": "path", "required": True},
    "prefix": {"type": "str", "default": ""},
    "members": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "src": {"type": "str"},
            "content": {"type": "str"},
            "mode": {"type": "raw"},
        },
        "mutually_exclusive": [["src", "content"]],
    },
}

# Left out of a copied directory: bytecode the controller's Python wrote, which no host needs.
SKIPPED_DIRS = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _clean(name: str, what: str) -> str:
    """A relative archive path without '..' or empty parts."""
    parts = [part for part in str(name).replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise AnsibleActionFail(f"dl_job_bundle: {what} {name!r} is not a relative path inside the archive "
                                "(no '..', not empty)")
    return "/".join(parts)


def _mode(value, default: int | None) -> int | None:
    if value in (None, ""):
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError as err:
        raise AnsibleActionFail(f"dl_job_bundle: mode {value!r} is not an octal mode such as '0644'") from err


def _info(name: str, kind: bytes, mode: int, mtime: float, size: int = 0) -> tarfile.TarInfo:
    # Owned by nobody in particular: the user who unpacks it owns the files.
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, int(mtime), size
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def tree_entries(src: str) -> list[tuple[str, str]]:
    """(relative path, absolute path) of every directory and file below `src`, symlinks followed, sorted,
    without __pycache__ and compiled Python."""
    entries = []
    for top, dirs, files in os.walk(src, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        relative = os.path.relpath(top, src)
        for name in dirs + sorted(f for f in files if not f.endswith(SKIPPED_SUFFIXES)):
            entries.append((os.path.normpath(os.path.join(relative, name)), os.path.join(top, name)))
    return entries


def build(members: list[dict], prefix: str = "", now: float | None = None) -> bytes:
    """The gzipped tar of `members`: each {name, src | content | neither, mode}. A src directory adds its tree
    (modes kept), a src file its bytes, content its text, neither an empty directory. Every member's parent
    directories come first, under `prefix`."""
    now = time.time() if now is None else now
    root = _clean(prefix, "prefix") if prefix else ""
    buffer = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:

        def add_dir(path: str, mode: int = 0o755, mtime: float = now) -> None:
            if path and path not in seen:
                add_dir(os.path.dirname(path))
                seen.add(path)
                archive.addfile(_info(path, tarfile.DIRTYPE, mode, mtime))

        def add_file(path: str, data: bytes, mode: int, mtime: float) -> None:
            if path in seen:
                raise AnsibleActionFail(f"dl_job_bundle: {path} is given twice; give each member its own name")
            add_dir(os.path.dirname(path))
            seen.add(path)
            archive.addfile(_info(path, tarfile.REGTYPE, mode, mtime, len(data)), io.BytesIO(data))

        def add_source(path: str, source: str, mode: int | None = None) -> None:
            """A file or directory of the controller, in its own mode unless `mode` is given."""
            status = os.stat(source)
            mode = stat.S_IMODE(status.st_mode) if mode is None else mode
            if stat.S_ISDIR(status.st_mode):
                add_dir(path, mode, status.st_mtime)
            else:
                with open(source, "rb") as handle:
                    add_file(path, handle.read(), mode, status.st_mtime)

        add_dir(root)
        for member in members:
            name = _clean(member.get("name"), "member name")
            path = f"{root}/{name}" if root else name
            src, content = member.get("src"), member.get("content")
            if content is not None:
                add_file(path, str(content).encode(), _mode(member.get("mode"), 0o644), now)
            elif src is None:
                add_dir(path, _mode(member.get("mode"), 0o755))
            elif os.path.isdir(src) or os.path.isfile(src):
                add_source(path, src, _mode(member.get("mode"), None))
                if os.path.isdir(src):
                    for relative, absolute in tree_entries(src):
                        add_source(f"{path}/{relative}", absolute)
            else:
                raise AnsibleActionFail(f"dl_job_bundle: member {name}: src {src} is neither a file nor a directory")
    return buffer.getvalue()


def write_atomically(dest: str, data: bytes) -> None:
    directory = os.path.dirname(dest) or "."
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".dl_job_bundle-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, dest)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


class ActionModule(ActionBase):
    """Runs on the controller only: nothing reaches a host."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        members = []
        for member in args["members"]:
            member = dict(member)
            if member.get("src") is not None:
                # A relative src is looked up like copy's: the role's files/, then the playbook's.
                member["src"] = self._find_needle("files", member["src"])
            members.append(member)
        data = build(members, args["prefix"])
        result.update(dest=args["dest"], members=[m["name"] for m in members], size=len(data), changed=True,
                      data=base64.b64encode(data).decode())
        if not self._task.check_mode:
            write_atomically(args["dest"], data)
        return result
