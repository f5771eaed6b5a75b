"""filter_plugins/dl_datasets.py: the catalogue, the pre-flight's sentences, each host's entries resolved."""

from pathlib import Path

import pytest
import yaml

from dl_datasets import (dl_datasets_catalogue, dl_datasets_entries, dl_datasets_problems, dl_datasets_rclone_env,
                         dl_datasets_wanted)

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = yaml.safe_load((ROOT / "roles" / "datasets" / "vars" / "catalogue.yml").read_text())[
    "__datasets_builtin_catalogue"]
S3 = {"type": "s3", "endpoint": "https://s3.lab:8333", "bucket": "models", "prefix": "toy/1", "credentials": "lab"}
CREDENTIALS = {"lab": {"access_key_id": "AKID", "secret_access_key": "SECRET"}}


def entry(**fields):
    base = {"kind": "dataset", "version": "1", "source": {"type": "http", "url": "https://mirror.lab/x/1/"},
            "manifest": {"algorithm": "sha256", "files": {"a.bin": "a" * 64}}}
    return {**base, **fields}


def problems(enabled, catalogue, **kwargs):
    return dl_datasets_problems(enabled, catalogue, "node1", kwargs.get("accepted"), kwargs.get("credentials"),
                                kwargs.get("root", "/data"))


def test_the_builtin_catalogue_passes_its_own_checks_once_licences_are_accepted():
    names = sorted(BUILTIN)
    assert problems(names, BUILTIN, accepted=["imagenet-ilsvrc2017", "vggface2"]) == []
    # Each seed entry is there, models too; checksums only where a source is named.
    for name in ("mnist", "voc2007", "voc2012", "coco2017", "imagenet-ilsvrc2017", "vggface2", "librispeech",
                 "aishell1", "wikipedia-en", "wikipedia-zh", "resnet-v1-50", "inception-v3"):
        assert name in BUILTIN, name
    for name, item in BUILTIN.items():
        if any(item["manifest"]["files"].values()):
            assert "none" not in item["manifest"]["source"], name


def test_licensed_entries_are_refused_until_accepted():
    found = problems(["imagenet-ilsvrc2017"], BUILTIN)
    assert len(found) == 1 and "Host node1: dataset imagenet-ilsvrc2017 may be used only under its licence" in found[0]
    assert "add imagenet-ilsvrc2017 to datasets_accept_licenses" in found[0]


def test_an_unknown_name_is_named_with_the_variable():
    found = problems(["mnsit"], BUILTIN)
    assert found and found[0].startswith("Host node1: datasets_enabled names 'mnsit', which is not in the catalogue")
    assert "datasets_catalogue_extra" in found[0]


@pytest.mark.parametrize("checksum,algorithm", [("abc", "sha256"), ("a" * 63, "sha256"), ("g" * 64, "sha256"),
                                                ("a" * 64, "md5")])
def test_a_checksum_that_is_not_hex_of_the_right_length_is_refused(checksum, algorithm):
    catalogue = {"mine": entry(manifest={"algorithm": algorithm, "files": {"a.bin": checksum}})}
    found = problems(["mine"], catalogue)
    assert len(found) == 1 and "file a.bin has checksum" in found[0] and f"hex digits of {algorithm}" in found[0]


def test_null_checksums_mark_an_entry_unverified_and_pass():
    catalogue = {"mine": entry(manifest={"algorithm": "sha256", "files": {"a.bin": None}})}
    assert problems(["mine"], catalogue) == []
    assert dl_datasets_entries(["mine"], catalogue, "/data")[0]["unverified"] is True


@pytest.mark.parametrize("target", ["/etc", "../etc", "datasets/../../etc"])
def test_a_target_outside_the_data_root_is_refused(target):
    found = problems(["mine"], {"mine": entry(target=target)})
    assert len(found) == 1 and "outside the data root /data" in found[0]


@pytest.mark.parametrize("name", ["/abs.bin", "../up.bin", "a/../b.bin"])
def test_file_names_must_stay_inside_the_version(name):
    found = problems(["mine"], {"mine": entry(manifest={"algorithm": "sha256", "files": {name: None}})})
    assert found and "use a plain relative path" in found[0]


def test_s3_needs_credentials_from_the_inventory():
    catalogue = {"toy": entry(source=S3)}
    found = problems(["toy"], catalogue)
    assert len(found) == 1 and "credentials 'lab', which datasets_s3_credentials does not hold" in found[0]
    assert problems(["toy"], catalogue, credentials=CREDENTIALS) == []
    half = {"lab": {"access_key_id": "AKID"}}
    assert problems(["toy"], catalogue, credentials=half)


def test_other_bad_entries():
    assert "kind 'film'" in problems(["m"], {"m": entry(kind="film")})[0]
    assert "source type 'ftp'" in problems(["m"], {"m": entry(source={"type": "ftp"})})[0]
    assert "no manifest files" in problems(["m"], {"m": entry(manifest={"algorithm": "sha256", "files": {}})})[0]
    assert "has version" in problems(["m"], {"m": entry(version="1 2")})[0]
    assert problems("mnist", BUILTIN)[0].startswith("Host node1: datasets_enabled must be a list")


def test_entries_come_from_the_cache_the_cache_dir_or_upstream():
    catalogue = dl_datasets_catalogue(BUILTIN, {"toy": entry(kind="model", source=S3, extract=True)})
    upstream = dl_datasets_entries(["mnist", "toy"], catalogue, "/data")
    assert upstream[0]["root"] == "/data/datasets" and upstream[0]["source"]["type"] == "http"
    assert upstream[0]["algorithm"] == "md5" and upstream[1]["root"] == "/data/models"
    assert upstream[1]["credentials"] == "lab" and upstream[1]["extract"] is True
    cached = dl_datasets_entries(["toy"], catalogue, "/data", "https://10.0.0.2:8444/")
    assert cached[0]["source"]["url"] == "https://10.0.0.2:8444/models/toy/1/"
    assert cached[0]["source"]["type"] == "http" and "the cluster cache" in cached[0]["source"]["label"]
    assert cached[0]["credentials"] is None
    local = dl_datasets_entries(["toy"], catalogue, "/data", "https://10.0.0.2:8444/", "/data/cache")
    assert local[0]["source"] == {"type": "local", "path": "/data/cache/models/toy/1"}


def test_a_target_inside_the_root_places_the_entry_there():
    resolved = dl_datasets_entries(["m"], {"m": entry(target="datasets/shared/mine")}, "/data")[0]
    assert (resolved["root"], resolved["dir_name"]) == ("/data/datasets/shared", "mine")


def test_the_extra_catalogue_replaces_a_builtin_entry_of_the_same_name():
    merged = dl_datasets_catalogue(BUILTIN, {"mnist": entry()})
    assert merged["mnist"]["version"] == "1" and "voc2012" in merged


def test_the_cache_holds_every_name_some_host_enables():
    hostvars = {"head": {"datasets_enabled": ["mnist"]}, "cpu1": {"datasets_enabled": ["mnist", "voc2012"]},
                "cpu2": {}}
    assert dl_datasets_wanted(hostvars, ["head", "cpu1", "cpu2"]) == ["mnist", "voc2012"]


def test_credentials_go_to_rclones_environment():
    assert dl_datasets_rclone_env(None, CREDENTIALS) == {}
    assert dl_datasets_rclone_env("lab", CREDENTIALS) == {"RCLONE_S3_ACCESS_KEY_ID": "AKID",
                                                         "RCLONE_S3_SECRET_ACCESS_KEY": "SECRET"}


def test_layout_names_and_urls_with_a_login_are_refused():
    assert "the name of the `current` symlink" in problems(["m"], {"m": entry(version="current")})[0]
    for target in ("datasets", "models/", "cache", "cache/x"):
        found = problems(["m"], {"m": entry(target=target)})
        assert found and "the data root's own datasets/, models/ or cache/" in found[0], target
    found = problems(["m"], {"m": entry(source={"type": "http", "url": "https://me:secret@mirror.lab/x/"})})
    assert found and "has a user or password in its url" in found[0]


def test_hosts_reading_through_the_cache_need_no_s3_credentials():
    catalogue = {"toy": entry(source=S3)}
    assert dl_datasets_problems(["toy"], catalogue, "cpu1", None, None, "/data", False) == []
