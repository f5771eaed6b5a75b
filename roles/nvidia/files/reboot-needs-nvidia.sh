# Needs a reboot when the installed NVIDIA kernel module is not the one running.
# Reads the kernel's state, not a fact a failed run may never have written.
# (DLCLUSTER_PROC points at a fixture /proc in tests/unit/test_reboot_checks.py.)
proc=${DLCLUSTER_PROC:-/proc}
installed=$(modinfo -F version nvidia 2>/dev/null) || exit 1
[ -n "$installed" ] || exit 1
if grep -q '^nouveau ' "$proc/modules"; then
  echo "nouveau is loaded; NVIDIA driver $installed waits for a reboot"; exit 0
fi
if [ ! -r "$proc/driver/nvidia/version" ]; then
  echo "NVIDIA driver $installed is installed but not loaded"; exit 0
fi
# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release Build ..."
running=$(awk '/NVRM version/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+(\.[0-9]+)?$/) { print $i; exit } }' \
  "$proc/driver/nvidia/version")
[ "$running" = "$installed" ] && exit 1
echo "NVIDIA driver $running runs, $installed is installed"
