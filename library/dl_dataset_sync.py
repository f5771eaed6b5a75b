#!/usr/bin/python
"""Ansible module: one version of a dataset or model, fetched with rclone, verified, switched in by a symlink."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_dataset_sync
short_description: Fetch one version of a dataset or model with rclone, verify it, then switch C(current) to it
description:
  - The version lives in I(root)/I(name)/I(version); C(current) beside it is a symlink to the version in use.
  - A new version is fetched into I(root)/I(name)/.I(version).partial with C(rclone copy --files-from) (only the
    manifest's files), in parallel (I(transfers)) and within I(bwlimit). A file already in the staging directory
    is never fetched again (C(--ignore-existing); rclone renames a file there only once it is complete), so a run
    that was killed resumes where it stopped, file by file.
  - Every file is checked against the manifest (sha256 or md5) before anything is switched. A file that does not
    match is deleted from the staging directory and the module fails naming it; C(current) keeps pointing at the
    version it pointed at. Archives (.tar, .tar.gz, .tgz, .zip) are then extracted into the version's directory
    when I(extract) is true (a member that would replace a manifest file is refused), the staging directory is renamed to the version and C(current) is switched (a new symlink
    renamed over the old one).
  - A file listed in the manifest that the source does not hold is named as missing (rclone itself skips it).
  - A version already in place is checked against the manifest on every run (the manifest's files, not what
    was extracted from them). Files that differ (changed locally) are reported and left alone, unless I(force) is true, which fetches them again and replaces them.
  - A manifest entry without a checksum (an unverified catalogue entry) is checked for presence only.
  - Check mode reports what would be fetched or replaced, and fetches nothing.
options:
  name:
    description: The entry's name (a directory under I(root)).
    type: str
    required: true
  version:
    description: The version to put in place.
    type: str
    required: true
  root:
    description: The directory holding the entries (C(/data/datasets), C(/data/models), the cache's).
    type: path
    required: true
  files:
    description: The manifest, file name (relative, may hold directories) to its checksum, or null when unknown.
    type: dict
    required: true
  algorithm:
    description: The manifest's checksum algorithm.
    type: str
    choices: [sha256, md5]
    default: sha256
  source:
    description:
      - Where the version's files are. C(type) is C(local) (C(path)), C(http) (C(url) of the version's directory)
        or C(s3) (C(endpoint), C(bucket), C(prefix), C(region), C(provider)); credentials come through I(env).
        An optional C(label) names the source in messages.
    type: dict
    required: true
  env:
    description: Environment for rclone (C(RCLONE_S3_ACCESS_KEY_ID), C(RCLONE_S3_SECRET_ACCESS_KEY)); never logged.
    type: dict
    default: {}
  rclone:
    description: The rclone binary.
    type: path
    default: rclone
  transfers:
    description: Files fetched in parallel.
    type: int
    default: 4
  bwlimit:
    description: rclone's C(--bwlimit) (C(10M), C(off)).
    type: str
    default: "off"
  extract:
    description: Extract the version's archives into the version's directory.
    type: bool
    default: false
  force:
    description: Replace files changed locally.
    type: bool
    default: false
author: dlcluster
"""

EXAMPLES = r"""
- name: MNIST from the cluster cache
  dl_dataset_sync:
    name: mnist
    version: "1"
    root: /data/datasets
    files: {train-images-idx3-ubyte.gz: f68b3c2dcbeaaa9fbdd348bbdeb94873}
    algorithm: md5
    source: {type: http, url: "https://head:8444/datasets/mnist/1/"}
    rclone: /opt/dlcluster/rclone/bin/rclone
"""

RETURN = r"""
status:
  description: C(fetched) (a new version switched in), C(replaced) (changed files fetched again with I(force)),
    C(verified) (in place and matching), C(modified) (files changed locally, left alone).
  returned: success
  type: str
fetched:
  description: The files transferred by this run.
  returned: success
  type: list
modified:
  description: The files that do not match the manifest (changed locally).
  returned: success
  type: list
version_dir:
  description: The version's directory.
  returned: success
  type: str
current:
  description: Where the C(current) symlink points (the version's directory name), or null.
  returned: success
  type: str
unverified:
  description: The files that have no checksum in the manifest (checked for presence only).
  returned: success
  type: list
"""

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile

from ansible.module_utils.basic import AnsibleModule

ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")


def file_checksum(path: str, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mismatches(directory: str, files: dict, algorithm: str) -> list[str]:
    """The manifest's files that are missing from directory or whose checksum differs, sorted."""
    bad = []
    for name, expected in sorted(files.items()):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            bad.append(name)
        elif expected and file_checksum(path, algorithm) != expected.lower():
            bad.append(name)
    return bad


def rclone_command(rclone: str, source: dict, destination: str, list_file: str, transfers: int,
                   bwlimit: str) -> list[str]:
    """rclone copy of the listed files from source into destination, finished files never fetched again."""
    kind = source.get("type")
    flags: list[str] = []
    if kind == "local":
        remote = source["path"]
    elif kind == "http":
        remote = ":http:"
        flags = ["--http-url", source["url"]]
    elif kind == "s3":
        prefix = str(source.get("prefix") or "").strip("/")
        remote = f":s3:{source['bucket']}" + (f"/{prefix}" if prefix else "")
        flags = ["--s3-provider", source.get("provider") or "Other", "--s3-endpoint", source["endpoint"],
                 "--s3-force-path-style=true"]
        if source.get("region"):
            flags += ["--s3-region", source["region"]]
    else:
        raise ValueError(f"unknown source type {kind!r} (local, http or s3)")
    # --files-from-raw: names are taken as they are (--files-from would skip names starting with # or ;).
    return [rclone, "copy", remote, destination, "--files-from-raw", list_file, "--no-traverse",
            "--ignore-existing",
            "--transfers", str(transfers), "--checkers", str(max(transfers, 4)), "--bwlimit", bwlimit,
            "--retries", "3", "--low-level-retries", "5", "--stats", "0", "--config", "/dev/null"] + flags


def where(source: dict) -> str:
    """The source, in words, for messages."""
    if source.get("label"):
        return source["label"]
    if source.get("type") == "s3":
        return f"s3 {source.get('endpoint')} bucket {source.get('bucket')} {source.get('prefix') or ''}".rstrip()
    return str(source.get("url") or source.get("path"))


def present(directory: str, names) -> set[str]:
    return {name for name in names if os.path.isfile(os.path.join(directory, name))}


def refuse_collisions(archive_name: str, members, files) -> None:
    """An archive member that would replace one of the manifest's files is refused (the manifest's files stay
    what was verified)."""
    for member in members:
        if os.path.normpath(member) in files:
            raise ValueError(f"{archive_name}: member {member} would replace the manifest's file of that name")


def extract_archives(directory: str, files) -> list[str]:
    """Extract the archives among files into directory (nothing outside it), return their names."""
    done = []
    for name in sorted(files):
        if not name.endswith(ARCHIVES):
            continue
        path = os.path.join(directory, name)
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                refuse_collisions(name, [m for m in archive.namelist() if not m.endswith("/")], files)
                root = os.path.realpath(directory)
                for member in archive.namelist():
                    target = os.path.realpath(os.path.join(directory, member))
                    if os.path.commonpath([root, target]) != root:
                        raise ValueError(f"{name}: member {member} would land outside {directory}")
                archive.extractall(directory)
        else:
            with tarfile.open(path) as archive:
                refuse_collisions(name, [m.name for m in archive.getmembers() if not m.isdir()], files)
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(directory, filter="data")  # refuses absolute paths, .., devices, links out
                else:  # a Python without PEP 706's filters: the same refusals by hand
                    root = os.path.realpath(directory)
                    for member in archive.getmembers():
                        target = os.path.realpath(os.path.join(directory, member.name))
                        if (os.path.commonpath([root, target]) != root or member.isdev()
                                or member.issym() or member.islnk()):
                            raise ValueError(f"{name}: member {member.name} would land outside {directory} "
                                             "or is a link or device")
                    archive.extractall(directory)
        done.append(name)
    return done


def remove_leftovers(directory: str, files) -> None:
    """Delete what a killed rclone left behind (its *.partial files) that is not a manifest file."""
    for folder, _dirs, names in os.walk(directory):
        for name in names:
            relative = os.path.relpath(os.path.join(folder, name), directory)
            if name.endswith(".partial") and relative not in files:
                os.unlink(os.path.join(folder, name))


def switch_current(base: str, version: str) -> bool:
    """Point base/current at version (a relative symlink renamed over the old one); True when it changed."""
    link = os.path.join(base, "current")
    if os.path.islink(link) and os.readlink(link) == version:
        return False
    temporary = os.path.join(base, f".current.{os.getpid()}")
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(version, temporary)
    os.replace(temporary, link)
    return True


def discard(directory: str, names) -> None:
    """Delete these names from directory where they are (a re-run then fetches them, and only them, again)."""
    for name in names:
        path = os.path.join(directory, name)
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)


def still_current(base: str) -> str:
    """The end of a refusal's message: what `current` still points at."""
    kept = current_target(base)
    return f"nothing was switched, current still points at {kept if kept else 'no version'}"


def current_target(base: str):
    link = os.path.join(base, "current")
    return os.readlink(link) if os.path.islink(link) else None


def fetch(module_run, params: dict, staging: str, names) -> list[str]:
    """rclone the names into staging; return the names that arrived with this run."""
    os.makedirs(staging, mode=0o755, exist_ok=True)
    before = present(staging, names)
    with tempfile.NamedTemporaryFile("w", prefix="dl-dataset-", suffix=".list", delete=False) as listing:
        listing.write("".join(f"{name}\n" for name in sorted(names)))
    try:
        argv = rclone_command(params["rclone"], params["source"], staging, listing.name, params["transfers"],
                              params["bwlimit"])
        rc, out, err = module_run(argv, params["env"])
    finally:
        os.unlink(listing.name)
    arrived = sorted(present(staging, names) - before)
    if rc != 0:
        raise RuntimeError(f"rclone copy failed (exit {rc}) after fetching {len(arrived)} file(s): "
                           f"{(err or out).strip()[-1500:]}")
    return arrived


def sync(params: dict, check_mode: bool, module_run) -> dict:
    """The module's work, apart from AnsibleModule (unit tests call it with a real rclone)."""
    files, algorithm = params["files"], params["algorithm"]
    base = os.path.join(params["root"], params["name"])
    version = params["version"]
    if version == "current" or "/" in version or version.startswith("."):
        raise ValueError(f"{params['name']}: version {version!r} would collide with the layout; choose another")
    path = os.path.join(base, version)
    staging = os.path.join(base, f".{version}.partial")
    result = {"changed": False, "fetched": [], "modified": [], "version_dir": path,
              "unverified": sorted(name for name, value in files.items() if not value)}

    if os.path.isdir(path):
        modified = mismatches(path, files, algorithm)
        result["modified"] = modified
        if modified and not params["force"]:
            result.update(status="modified", current=current_target(base))
            return result
        if modified:
            result.update(changed=True, status="replaced")
            if not check_mode:
                discard(staging, modified)  # fetched afresh, never from an earlier staging copy
                result["fetched"] = fetch(module_run, params, staging, modified)
                corrupt = mismatches(staging, {name: files[name] for name in modified}, algorithm)
                if corrupt:
                    discard(staging, corrupt)
                    raise ValueError(f"{params['name']} {version}: {', '.join(corrupt)} fetched again from the "
                                     f"source do(es) not match the manifest ({algorithm}); the local copies were "
                                     "left as they were")
                for name in modified:
                    target = os.path.join(path, name)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.replace(os.path.join(staging, name), target)
                shutil.rmtree(staging, ignore_errors=True)
        else:
            result["status"] = "verified"
        if current_target(base) != version:
            result["changed"] = True
            if not check_mode:
                switch_current(base, version)
        result["current"] = version if not check_mode else current_target(base)
        return result

    result.update(changed=True, status="fetched")
    if check_mode:
        result["fetched"] = sorted(set(files) - present(staging, files))
        result["current"] = current_target(base)
        return result
    os.makedirs(base, mode=0o755, exist_ok=True)
    result["fetched"] = fetch(module_run, params, staging, files)
    missing = sorted(set(files) - present(staging, files))
    if missing:  # rclone skips a listed name the source lacks, and exits 0
        raise ValueError(f"{params['name']} {version}: {', '.join(missing)} not found at {where(params['source'])}; "
                         f"{still_current(base)}")
    corrupt = mismatches(staging, files, algorithm)
    if corrupt:
        discard(staging, corrupt)  # a re-run fetches these again, and only these
        raise ValueError(f"{params['name']} {version}: {', '.join(corrupt)} from the source do(es) not match the "
                         f"manifest ({algorithm}); {still_current(base)}")
    remove_leftovers(staging, files)
    if params["extract"]:
        extract_archives(staging, files)
    os.rename(staging, path)
    switch_current(base, version)
    result["current"] = version
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "version": {"type": "str", "required": True},
            "root": {"type": "path", "required": True},
            "files": {"type": "dict", "required": True},
            "algorithm": {"type": "str", "choices": ["sha256", "md5"], "default": "sha256"},
            "source": {"type": "dict", "required": True},
            "env": {"type": "dict", "default": {}, "no_log": True},
            "rclone": {"type": "path", "default": "rclone"},
            "transfers": {"type": "int", "default": 4},
            "bwlimit": {"type": "str", "default": "off"},
            "extract": {"type": "bool", "default": False},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )

    def run(argv, env):
        return module.run_command(argv, environ_update={str(k): str(v) for k, v in env.items()})

    try:
        result = sync(module.params, module.check_mode, run)
    except (ValueError, RuntimeError, OSError, tarfile.TarError, zipfile.BadZipFile) as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
