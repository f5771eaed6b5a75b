"""A job's steps on one host (read, unpack, start, launch: unpack then start, stop), standard library only.

action_plugins/dl_job_hosts.py sends this file to every host of a job at once over plain ssh and runs one step
there (``python3 -``); library/dl_job_files.py (the unpacking through Ansible's module path) shares its unpacking.
So it must stay one self-contained file: no imports beyond the standard library, nothing that needs Ansible.

Each step prints one JSON line: {"ok": true|false, "msg": why not, ...what the step found}.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import glob
import grp
import io
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile

# sudo's secure_path usually has them; a plain PATH may not.
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
FACTS_DIR = "/etc/ansible/facts.d"


def _which(name):
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":" + SBIN)
    if not found:
        raise RuntimeError(f"{name} is not installed on this host")
    return found


def _run(argv, **kwargs):
    return subprocess.run([_which(argv[0]), *argv[1:]], capture_output=True, text=True, check=False,
                          env=dict(os.environ, LC_ALL="C"), **kwargs)


# ---------------------------------------------------------------------------
# read: what the launcher's plan and checks need, in the shape of Ansible's facts

def _fact_text(text):
    """A local fact file's content as Ansible reads it: JSON, else INI ({section: {key: value}})."""
    try:
        return json.loads(text)
    except ValueError:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text)
        except configparser.Error as err:
            return f"error loading facts as JSON or ini - please check content: {err}"
        return {section: dict(parser.items(section)) for section in parser.sections()}


def local_facts(facts_dir=FACTS_DIR):
    """ansible_local: each <name>.fact in facts_dir (run when executable), as setup's local subset reads it."""
    facts = {}
    for path in sorted(glob.glob(os.path.join(facts_dir, "*.fact"))):
        name = os.path.basename(path)[:-len(".fact")]
        try:
            if os.access(path, os.X_OK):
                done = subprocess.run([path], capture_output=True, text=True, check=False, timeout=60)
                text = done.stdout
            else:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
        except (OSError, subprocess.SubprocessError) as err:
            facts[name] = f"error loading fact - {err}"
            continue
        facts[name] = _fact_text(text)
    return facts


def _interface(link):
    """One interface as Ansible's network facts describe it (device, active, type, ipv4, ipv4_secondaries, ipv6)
    from one entry of `ip -json address show`."""
    # Active as setup says it: the kernel's operstate is not "down" (an interface can be up without a carrier).
    entry = {"device": link["ifname"], "active": str(link.get("operstate", "")).lower() != "down",
             "type": "loopback" if link.get("link_type") == "loopback" else (link.get("link_type") or "unknown")}
    if link.get("address") and link.get("link_type") != "loopback":
        entry["macaddress"] = link["address"]
    ipv4, ipv6 = [], []
    for address in link.get("addr_info") or []:
        if address.get("family") == "inet":
            ipv4.append({"address": address["local"], "prefix": str(address.get("prefixlen", "")),
                         **({"broadcast": address["broadcast"]} if address.get("broadcast") else {})})
        elif address.get("family") == "inet6":
            ipv6.append({"address": address["local"], "prefix": str(address.get("prefixlen", "")),
                         "scope": address.get("scope", "")})
    if ipv4:
        entry["ipv4"] = ipv4[0]
        if ipv4[1:]:
            entry["ipv4_secondaries"] = ipv4[1:]
    if ipv6:
        entry["ipv6"] = ipv6
    return entry


def network_facts():
    """interfaces, ansible_<device> for each, and default_ipv4 (the route to 8.8.8.8, as setup finds it)."""
    done = _run(["ip", "-json", "address", "show"])
    if done.returncode != 0:
        raise RuntimeError(f"ip -json address show failed: {done.stderr.strip()}")
    links = json.loads(done.stdout or "[]")
    facts = {"interfaces": []}
    for link in links:
        if not isinstance(link, dict) or not link.get("ifname"):
            continue
        entry = _interface(link)
        facts["interfaces"].append(entry["device"])
        facts[entry["device"].replace("-", "_").replace(":", "_")] = entry
    default = {}
    route = _run(["ip", "-4", "route", "get", "8.8.8.8"])
    words = route.stdout.split() if route.returncode == 0 else []
    for key, name in (("dev", "interface"), ("src", "address"), ("via", "gateway")):
        if key in words[:-1]:
            default[name] = words[words.index(key) + 1]
    facts["default_ipv4"] = default
    return facts


def unit_active(unit):
    """`systemctl is-active <unit>`'s word (inactive for a unit systemd does not know)."""
    return _run(["systemctl", "is-active", "--", unit]).stdout.strip()


def directory_group(path):
    """"directory:<group>" when path is a directory, "<kind>:<group>" for anything else, None when missing (the
    check's `stat -c %F:%G`)."""
    try:
        info = os.lstat(path)  # as stat -c without -L: a link is a link
    except OSError:
        return None
    kind = ("directory" if stat.S_ISDIR(info.st_mode) else "regular file" if stat.S_ISREG(info.st_mode)
            else "symbolic link" if stat.S_ISLNK(info.st_mode) else "other")
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{kind}:{group}"


def read(args):
    """The saved local facts, the network facts, and the check's answer: the job's unit state, then the textfile
    directory (as the check command's stdout_lines)."""
    lines = [unit_active(args["unit"])]
    textfile = directory_group(args["textfile_dir"]) if args.get("textfile_dir") else None
    if textfile:
        lines.append(textfile)
    facts = {"local": local_facts(args.get("facts_dir") or FACTS_DIR), **network_facts()}
    return {"ok": True, "facts": facts, "host_state": {"stdout_lines": lines}}


# ---------------------------------------------------------------------------
# unpack: the job's archive (dl_job_bundle) in the job user's home

def checked_members(archive: tarfile.TarFile, root: str) -> list[tarfile.TarInfo]:
    """The members, when every one is a directory or a regular file at root or below it; else ValueError."""
    members = archive.getmembers()
    for member in members:
        parts = member.name.split("/")
        if member.name.startswith("/") or ".." in parts:
            raise ValueError(f"member {member.name!r} is absolute or climbs out with '..'")
        if member.name != root and not member.name.startswith(root + "/") and not root.startswith(member.name + "/"):
            raise ValueError(f"member {member.name!r} is not below {root}")
        if not (member.isdir() or member.isfile()):
            raise ValueError(f"member {member.name!r} is neither a directory nor a regular file")
    return members


def extract(data: bytes, dest: str, path: str, replace: bool, owner: str | None) -> None:
    """rm -rf path (replace) and tar -x into dest, as `owner` when given and this runs as root (the files are then
    the owner's, and no link the owner made in dest can send a write outside what the owner may write)."""
    identity = {}
    if owner and os.geteuid() == 0:
        account = pwd.getpwnam(owner)
        identity = {"user": account.pw_uid, "group": account.pw_gid,
                    "extra_groups": os.getgrouplist(owner, account.pw_gid)}
    script = ('set -e; if [ "$3" = true ]; then rm -rf -- "$1"; fi; '
              'tar --extract --gzip --file=- --no-same-owner --directory="$2"')
    subprocess.run(["sh", "-c", script, "dl_job_files", path, dest, "true" if replace else "false"], input=data,
                   check=True, capture_output=True, **identity)


def check_archive(dest, archive, root, owner):
    """(path, bytes, regular files) of a job archive for dest/root, or ValueError naming what is wrong (nothing
    written yet)."""
    root = str(root).strip("/")
    if not root or ".." in root.split("/"):
        raise ValueError(f"root {root!r} must be a relative directory without '..'")
    if not os.path.isdir(dest):
        raise ValueError(f"{dest} is not a directory on this host; create it (the job user's home) first")
    if owner:
        try:
            pwd.getpwnam(owner)
        except KeyError as err:
            raise ValueError(f"owner {owner} is not a user of this host") from err
    try:
        data = base64.b64decode(archive, validate=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as handle:
            members = checked_members(handle, root)
    except (binascii.Error, tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"the archive is not a base64 gzipped tar: {err}") from err
    except ValueError as err:
        raise ValueError(f"refused the archive, nothing written: {err}") from err
    return os.path.join(dest, root), data, sum(1 for member in members if member.isfile())


def unpack(args):
    try:
        path, data, files = check_archive(args["dest"], args["archive"], args["root"], args.get("owner"))
        extract(data, args["dest"], path, args.get("replace") is True, args.get("owner"))
    except ValueError as err:
        return {"ok": False, "msg": f"dl_job_files: {err}"}
    except subprocess.CalledProcessError as err:
        return {"ok": False, "msg": f"dl_job_files: unpacking in {args['dest']} as {args.get('owner') or 'this user'} "
                                    f"failed: {err.stderr.decode(errors='replace').strip()}"}
    return {"ok": True, "path": path, "files": files}


# ---------------------------------------------------------------------------
# start and stop: the host's ranks (the plan's argv: systemd-run ...), its unit

def start(args):
    argv = [str(part) for part in args["argv"]]
    try:
        done = _run(argv, timeout=120)
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        return {"ok": False, "msg": str(err)}
    return {"ok": done.returncode == 0, "rc": done.returncode, "msg": (done.stderr or done.stdout).strip()}


def launch(args):
    """unpack, then start: the job's files in place, then the host's ranks (one ssh per host for both)."""
    unpacked = unpack(args)
    if not unpacked["ok"]:
        return unpacked
    return {**start(args), "files": unpacked["files"]}


def stop(args):
    """systemctl stop <unit>, then reset-failed: a transient unit left failed (its ranks exit non-zero on SIGTERM)
    would refuse the next start of the same job id. A unit systemd does not know (rc 5, not loaded) has nothing
    to stop."""
    done = _run(["systemctl", "stop", "--", args["unit"]], timeout=120)
    _run(["systemctl", "reset-failed", "--", args["unit"]], timeout=60)
    return {"ok": done.returncode in (0, 5), "rc": done.returncode, "msg": done.stderr.strip(),
            "loaded": done.returncode != 5}


STEPS = {"read": read, "unpack": unpack, "start": start, "launch": launch, "stop": stop}


def main(argv):
    """``python3 - <json>``: run the step {"step": read|unpack|start|launch|stop, ...its arguments}, print one JSON
    line."""
    args = json.loads(argv[1])
    try:
        result = STEPS[args["step"]](args)
    except (KeyError, OSError, RuntimeError, ValueError, subprocess.SubprocessError) as err:
        result = {"ok": False, "msg": f"{args.get('step', '?')} failed on this host: {type(err).__name__}: {err}"}
    print(json.dumps(result))
