"""Filters of roles/datasets: the catalogue merged with the inventory's entries, its problems (the pre-flight's
sentences), and each host's entries resolved to where they come from and where they go."""

from __future__ import annotations

import posixpath
import re

KINDS = {"dataset": "datasets", "model": "models"}
DIGITS = {"sha256": 64, "md5": 32}
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def dl_datasets_catalogue(builtin: dict, extra: dict | None) -> dict:
    """The built-in catalogue with the inventory's entries added (an entry of the same name replaces the
    built-in one)."""
    return {**(builtin or {}), **(extra or {})}


RESERVED = ("current",)


def _entry_problems(host: str, name: str, entry, data_root: str, credentials: dict,
                    check_credentials: bool = True) -> list[str]:
    where = f"Host {host}: datasets catalogue entry {name}"
    if not isinstance(entry, dict):
        return [f"{where} is not a mapping; give it kind, version, source and manifest."]
    problems = []
    if entry.get("kind", "dataset") not in KINDS:
        problems.append(f"{where} has kind {entry.get('kind')!r}; use dataset or model.")
    if str(entry.get("version", "")) in RESERVED:
        problems.append(f"{where} has version {entry.get('version')!r}, the name of the `current` symlink; choose "
                        "another.")
    elif not NAME.match(str(entry.get("version", ""))):
        problems.append(f"{where} has version {entry.get('version')!r}; give a version such as \"2017\" or \"1\" "
                        "(letters, digits, . _ -).")
    manifest = entry.get("manifest") or {}
    algorithm = manifest.get("algorithm", "sha256")
    files = manifest.get("files") or {}
    if algorithm not in DIGITS:
        problems.append(f"{where} has manifest algorithm {algorithm!r}; use sha256 or md5.")
    elif not isinstance(files, dict) or not files:
        problems.append(f"{where} has no manifest files; list each file with its {algorithm} (or null).")
    else:
        for file, checksum in files.items():
            normal = posixpath.normpath(str(file))
            if str(file).startswith("/") or normal.startswith("..") or normal != str(file):
                problems.append(f"{where} lists file {file!r}; use a plain relative path inside the version.")
            if checksum is not None and not re.fullmatch(rf"[0-9a-fA-F]{{{DIGITS[algorithm]}}}", str(checksum)):
                problems.append(f"{where} file {file} has checksum {str(checksum)!r}, not {DIGITS[algorithm]} hex "
                                f"digits of {algorithm}; fix it, or set it to null to mark the file unverified.")
    target = entry.get("target")
    if target is not None:
        resolved = posixpath.normpath(posixpath.join(data_root, str(target)))
        root = data_root.rstrip("/")
        if not resolved.startswith(root + "/"):
            problems.append(f"{where} has target {target!r}, which is outside the data root {data_root}; use a "
                            "directory under it (relative, e.g. datasets/mine).")
        elif resolved in {f"{root}/datasets", f"{root}/models", f"{root}/cache"} or resolved.startswith(f"{root}/cache/"):
            problems.append(f"{where} has target {target!r}, which is the data root's own datasets/, models/ or "
                            "cache/; use a directory of its own under it (e.g. datasets/mine).")
    source = entry.get("source") or {}
    kind = source.get("type")
    if kind == "http":
        if not re.match(r"^https?://[^/\s]+/", str(source.get("url", "")) + "/"):
            problems.append(f"{where} has an http source without a url (https://host/path/ of the version).")
        elif "@" in str(source["url"]).split("/")[2]:
            problems.append(f"{where} has a user or password in its url, which would be logged; use an S3 source "
                            "with datasets_s3_credentials, or a server that needs none.")
    elif kind == "s3":
        missing = [key for key in ("endpoint", "bucket") if not source.get(key)]
        if missing:
            problems.append(f"{where} has an s3 source without {' and '.join(missing)}.")
        account = source.get("credentials")
        keys = (credentials or {}).get(account) or {}
        if check_credentials and (not account or not keys.get("access_key_id") or not keys.get("secret_access_key")):
            problems.append(f"{where} reads S3 with credentials {account!r}, which datasets_s3_credentials does not "
                            "hold (access_key_id and secret_access_key, from a vault).")
    else:
        problems.append(f"{where} has source type {kind!r}; use http or s3.")
    return problems


def dl_datasets_problems(enabled, catalogue: dict, host: str, accepted=None, credentials=None,
                         data_root: str = "/data", check_credentials: bool = True) -> list[str]:
    """One sentence per problem with a host's datasets_enabled (names the host, the variable and the fix).
    check_credentials false: the host reads S3 through the cluster cache, whose host needs them instead."""
    if not isinstance(enabled, list):
        return [f"Host {host}: datasets_enabled must be a list of catalogue names (got {enabled!r})."]
    problems = []
    for name in enabled:
        if name not in catalogue:
            known = ", ".join(sorted(catalogue)) or "none"
            problems.append(f"Host {host}: datasets_enabled names {name!r}, which is not in the catalogue (known: "
                            f"{known}); fix the name or add the entry to datasets_catalogue_extra.")
            continue
        entry = catalogue[name]
        if not NAME.match(str(name)):
            problems.append(f"Host {host}: datasets catalogue name {name!r} must be lower-case letters, digits, . _ -.")
        problems += _entry_problems(host, name, entry, data_root, credentials, check_credentials)
        licence = entry.get("license") if isinstance(entry, dict) else None
        if licence and name not in (accepted or []):
            where = licence.get("url", licence.get("name", "its terms")) if isinstance(licence, dict) else licence
            problems.append(f"Host {host}: dataset {name} may be used only under its licence ({where}); read it, "
                            f"then add {name} to datasets_accept_licenses.")
    return problems


def dl_datasets_entries(enabled, catalogue: dict, data_root: str, cache_url: str = "",
                        cache_dir: str = "") -> list[dict]:
    """A host's entries, each resolved: kind, version, where it goes (root, the directory holding <name>/),
    manifest, and the source it is fetched from: the cluster cache's URL when cache_url is given, the cache's
    own directory when cache_dir is (on the cache host), else upstream."""
    entries = []
    for name in enabled:
        entry = catalogue[name]
        kind = entry.get("kind", "dataset")
        manifest = entry.get("manifest") or {}
        target = entry.get("target")
        root = (posixpath.dirname(posixpath.normpath(posixpath.join(data_root, target))) if target
                else posixpath.join(data_root, KINDS[kind]))
        base = posixpath.basename(posixpath.normpath(target)) if target else name
        source = dict(entry["source"])
        if cache_dir:
            source = {"type": "local", "path": posixpath.join(cache_dir, KINDS[kind], name, str(entry["version"]))}
        elif cache_url:
            source = {"type": "http",
                      "url": f"{cache_url.rstrip('/')}/{KINDS[kind]}/{name}/{entry['version']}/",
                      "label": f"the cluster cache {cache_url} (a run fills it only when the cache host is in it)"}
        entries.append({"name": name, "dir_name": base, "kind": kind, "version": str(entry["version"]),
                        "root": root, "files": manifest.get("files") or {},
                        "algorithm": manifest.get("algorithm", "sha256"), "source": source,
                        "credentials": None if cache_url or cache_dir else entry["source"].get("credentials"),
                        "extract": bool(entry.get("extract", False)),
                        "unverified": any(value is None for value in (manifest.get("files") or {}).values())})
    return entries


def dl_datasets_wanted(hostvars: dict, hosts: list, default=None) -> list[str]:
    """Every name some host of the list enables (the entries the cluster cache holds), in first-seen order."""
    names: list[str] = []
    for host in hosts:
        for name in (hostvars.get(host, {}).get("datasets_enabled", default) or []):
            if name not in names:
                names.append(name)
    return names


def dl_datasets_rclone_env(account, credentials: dict | None) -> dict:
    """rclone's environment for an S3 source's credentials (never on its command line); {} without one."""
    if not account:
        return {}
    keys = (credentials or {}).get(account) or {}
    return {"RCLONE_S3_ACCESS_KEY_ID": keys.get("access_key_id", ""),
            "RCLONE_S3_SECRET_ACCESS_KEY": keys.get("secret_access_key", "")}


class FilterModule:
    def filters(self):
        return {
            "dl_datasets_catalogue": dl_datasets_catalogue,
            "dl_datasets_problems": dl_datasets_problems,
            "dl_datasets_entries": dl_datasets_entries,
            "dl_datasets_wanted": dl_datasets_wanted,
            "dl_datasets_rclone_env": dl_datasets_rclone_env,
        }
