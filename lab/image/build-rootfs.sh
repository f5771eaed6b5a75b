#!/usr/bin/env bash
# Build the lab's Debian 12 systemd root filesystem with debootstrap and write
# it as a tar stream to OUT. The lab tool hashes this file and packages.txt:
# changing either rebuilds the image, nothing else does.
#
# usage: build-rootfs.sh OUT.tar DEBIAN_MIRROR [SECURITY_MIRROR]
set -euo pipefail

out=$1
mirror=$2
security_mirror=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm

rootfs=$(mktemp -d /var/tmp/dlcluster-rootfs.XXXXXX)
cleanup() { rm -rf --one-file-system "$rootfs" "$rootfs.log"; }
trap cleanup EXIT

packages=$(grep -v '^\s*#' "$here/packages.txt" | xargs | tr ' ' ',')
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
  { tail -n 20 "$rootfs.log" >&2; exit 1; }

# Sources: the mirror the image was built from, plus updates and security.
{
  echo "deb $mirror $suite main"
  echo "deb $mirror $suite-updates main"
  if [ -n "$security_mirror" ]; then
    echo "deb $security_mirror $suite-security main"
  fi
} > "$rootfs/etc/apt/sources.list"

# A cloud-image style bootstrap account: the lab injects its SSH key at start,
# exactly as a cloud provider does for Debian's "admin" user.
chroot "$rootfs" useradd --create-home --shell /bin/bash --groups sudo admin
chroot "$rootfs" passwd --lock admin
echo 'admin ALL=(ALL) NOPASSWD:ALL' > "$rootfs/etc/sudoers.d/90-cloud-init-users"
chmod 0440 "$rootfs/etc/sudoers.d/90-cloud-init-users"
install -d -m 0700 -o 1000 -g 1000 "$rootfs/home/admin/.ssh"

# Every container gets its own host keys and machine id at first boot.
rm -f "$rootfs"/etc/ssh/ssh_host_*
: > "$rootfs/etc/machine-id"
install -m 0644 "$here/ssh-hostkeys.service" "$rootfs/etc/systemd/system/ssh-hostkeys.service"
chroot "$rootfs" systemctl enable ssh-hostkeys.service ssh.service >/dev/null

# Units that have no work to do in a container.
chroot "$rootfs" systemctl mask getty@tty1.service console-getty.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
  sys-kernel-config.mount sys-kernel-debug.mount >/dev/null

chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
# No package lists ship with the image: date the lists directory to the epoch
# so that apt's cache_valid_time sees them as stale and refreshes them.
touch -d @0 "$rootfs/var/lib/apt/lists"

tar --numeric-owner -C "$rootfs" -cf "$out" .
