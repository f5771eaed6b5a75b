"""The worker takes its time from the head node over NTP."""

import time

testinfra_hosts = ["ansible://cpu1"]


def test_worker_follows_head_for_time(host):
    head = host.run("getent hosts head").stdout.split()[0]
    reach = "0"
    for _ in range(30):
        # chronyc -c sources: mode,state,address,stratum,poll,reach,...
        rows = [r.split(",") for r in host.run("chronyc -c -n sources").stdout.splitlines()]
        reach = next((r[5] for r in rows if r[2] == head), "0")
        if reach != "0":
            break
        time.sleep(1)
    assert reach != "0", "head never answered cpu1's NTP requests"
