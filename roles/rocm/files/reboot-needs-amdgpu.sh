# Needs a reboot when AMD's amdgpu DKMS module is installed but not the one running.
# (DLCLUSTER_SYS points at a fixture /sys in tests/unit/test_reboot_checks.py.)
sys=${DLCLUSTER_SYS:-/sys}
dpkg-query -W -f '${Status}' amdgpu-dkms 2>/dev/null | grep -q 'install ok installed' || exit 1
installed=$(modinfo -F version amdgpu 2>/dev/null)
running=$(cat "$sys/module/amdgpu/version" 2>/dev/null)
if [ -z "$running" ]; then
  echo "amdgpu DKMS ${installed:-module} is installed but the kernel runs its own (or none)"; exit 0
fi
[ "$running" = "$installed" ] && exit 1
echo "amdgpu $running runs, $installed is installed"
