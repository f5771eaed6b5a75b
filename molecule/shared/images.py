"""A container image made on the lab host itself (no registry is reachable): busybox from Debian."""

IMAGE = "local/busybox:dlcluster"


def ensure_busybox_image(host) -> str:
    """Import a one-binary image from Debian's busybox-static into the host's Docker engine."""
    with host.sudo():
        if host.run(f"docker image inspect {IMAGE}").rc != 0:
            host.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static")
            host.run_expect([0], "rm -rf /tmp/busybox-root && mkdir -p /tmp/busybox-root/bin /tmp/busybox-root/dev/shm"
                                 " && cp /bin/busybox /tmp/busybox-root/bin/ && "
                                 f"tar -C /tmp/busybox-root -c . | docker import - {IMAGE}")
    return IMAGE
