"""The worker takes its time from the head node over NTP."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import ntp_reach  # noqa: E402

testinfra_hosts = ["ansible://cpu1"]


def test_worker_follows_head_for_time(host):
    assert ntp_reach(host, "head") != "0", "head never answered cpu1's NTP requests"
