"""dl_data_disk_plan: what the data_disk role may do with a device. Never destroy data."""

import json

import pytest
from ansible.errors import AnsibleFilterError

from dl_storage import FilterModule, dl_data_disk_plan, dl_data_disk_root_problem

SETTINGS = {"fstype": "ext4", "label": "dlcluster", "format_empty": False}
OURS_BLKID = "DEVNAME=/dev/vdb\nLABEL=dlcluster\nUUID=5b1c-42\nTYPE=ext4\nUSAGE=filesystem\n"
OURS_WIPEFS = {"signatures": [{"device": "vdb", "offset": "0x438", "type": "ext4", "label": "dlcluster"}]}


def probe(**fields):
    return {"device": "/dev/vdb", "disk": "vdb", "parents": [], "root_disks": ["vda"], "wipefs": {"signatures": []},
            "blkid": "", **fields}


def test_an_empty_device_is_refused_unless_formatting_is_allowed():
    refused = dl_data_disk_plan(probe(), SETTINGS, "node1")
    assert refused["action"] == "refuse"
    assert refused["reason"] == ("Host node1: data_disk_device is /dev/vdb, which is empty; set data_disk_format_empty: "
                                 "true to format it as ext4. Nothing was changed.")
    assert dl_data_disk_plan(probe(), {**SETTINGS, "format_empty": True})["action"] == "format"


def test_our_labelled_filesystem_is_mounted_by_its_uuid():
    plan = dl_data_disk_plan(probe(blkid=OURS_BLKID, wipefs=json.dumps(OURS_WIPEFS)), SETTINGS)
    assert plan["action"] == "mount" and plan["uuid"] == "5b1c-42"


@pytest.mark.parametrize("blkid,wipefs,held", [
    # Another filesystem, even ours with another label: never formatted, even with format_empty.
    ("LABEL=photos\nUUID=1\nTYPE=ext4\n", {"signatures": [{"type": "ext4", "label": "photos"}]}, "ext4 labelled photos"),
    ("UUID=2\nTYPE=xfs\n", {"signatures": [{"type": "xfs"}]}, "xfs"),
    # A partition table that blkid -p does not report on the whole disk: wipefs does.
    ("", {"signatures": [{"type": "gpt"}, {"type": "PMBR"}]}, "PMBR, gpt"),
    # Our label, but a second signature (e.g. an old RAID member superblock) on the same device.
    (OURS_BLKID, {"signatures": [{"type": "ext4"}, {"type": "linux_raid_member"}]}, "ext4, linux_raid_member"),
])
def test_a_device_with_any_other_signature_is_never_formatted(blkid, wipefs, held):
    plan = dl_data_disk_plan(probe(blkid=blkid, wipefs=wipefs), {**SETTINGS, "format_empty": True}, "node1")
    assert plan["action"] == "refuse", plan
    assert f"which already holds {held}" in plan["reason"] and "it is never formatted" in plan["reason"]


@pytest.mark.parametrize("fields", [{"disk": "vda"}, {"disk": "vda1", "parents": ["vda"]}])
def test_the_root_disk_is_refused_even_when_empty_and_formatting_is_allowed(fields):
    plan = dl_data_disk_plan(probe(**fields), {**SETTINGS, "format_empty": True}, "node1")
    assert plan["action"] == "refuse" and "holds the root filesystem" in plan["reason"], plan


def test_bad_arguments():
    with pytest.raises(AnsibleFilterError, match="fstype must be one of ext4, xfs"):
        dl_data_disk_plan(probe(), {**SETTINGS, "fstype": "ntfs"})
    with pytest.raises(AnsibleFilterError, match="must be mappings"):
        dl_data_disk_plan("vdb", SETTINGS)


def test_filter_is_registered():
    assert FilterModule().filters()["dl_data_disk_plan"] is dl_data_disk_plan


FACTS = {"ansible_mounts": [{"mount": "/", "device": "/dev/vda1"}, {"mount": "/boot/efi", "device": "/dev/vda15"}],
         "ansible_devices": {"vda": {"partitions": {"vda1": {}, "vda15": {}}}, "vdb": {"partitions": {}}},
         "ansible_device_links": {"ids": {"vda": ["virtio-root0"], "vdb": ["virtio-data0"]}}}


@pytest.mark.parametrize("device", ["/dev/vda", "/dev/vda1", "virtio-root0", "/dev/disk/by-id/virtio-root0"])
def test_the_preflight_names_the_root_disk_however_it_is_given(device):
    problem = dl_data_disk_root_problem(device, FACTS, "node1")
    assert problem.startswith(f"Host node1: data_disk_device is {device}, which is vda") or \
        problem.startswith(f"Host node1: data_disk_device is {device}, which is vda1"), problem
    assert "the disk of the root filesystem (/dev/vda1)" in problem


@pytest.mark.parametrize("device", ["", "/dev/vdb", "virtio-data0", "/dev/mapper/vg-data", "unknown-id"])
def test_the_preflight_passes_other_devices(device):
    assert dl_data_disk_root_problem(device, FACTS, "node1") == ""


def test_the_preflight_passes_when_root_is_not_a_device():
    # A container: / is an overlay.
    assert dl_data_disk_root_problem("/dev/vda", {**FACTS, "ansible_mounts": [{"mount": "/", "device": "overlay"}]}) == ""
