#!/usr/bin/env bash
# make molecule: the molecule scenarios, each step's seconds printed.
#
# With both scenarios (the default), the accelerators scenario (GPU stacks on
# fixture hardware) runs whole in the background while the lab is converged,
# re-run (idempotence) and run in check mode: on two cores the lab's converge
# waits on downloads much of the time. The lab's verify starts only once
# accelerators has finished, so its timing-sensitive tests run on a quiet
# machine. `make molecule SCENARIOS=lab` runs one scenario alone.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds_since() { echo $(( $(date +%s) - $1 )); }

# A whole `molecule test` of one scenario; on failure, its failed tests named at the log's end.
scenario_test() {
  local scenario=$1 t
  t=$(date +%s)
  rm -f ".ansible/junit-$scenario.xml"
  if molecule test -s "$scenario"; then
    echo "== molecule $scenario: $(seconds_since "$t") s"
    return 0
  fi
  python3 scripts/junit_failures.py ".ansible/junit-$scenario.xml"
  return 1
}

# One step of the lab scenario. `molecule check` would run its own whole sequence, so check mode is a converge
# with --check.
lab_step() {
  local t
  t=$(date +%s)
  case $1 in
    check) molecule converge -s lab -- --check ;;
    *) molecule "$1" -s lab ;;
  esac || return 1
  echo "== molecule lab $1: $(seconds_since "$t") s"
}

if [ "$*" != "accelerators lab" ]; then
  for scenario in "$@"; do scenario_test "$scenario" || exit 1; done
  exit 0
fi

start=$(date +%s)
rm -f .ansible/junit-lab.xml
lab_step destroy && lab_step syntax && lab_step create || { lab_step destroy; exit 1; }
# The lab's hosts exist (its image is built, its network chosen) before accelerators starts its own.
mkdir -p .ansible
scenario_test accelerators > .ansible/molecule-accelerators.log 2>&1 &
background=$!
lab_ok=true
for step in converge idempotence check; do
  lab_step "$step" || { lab_ok=false; break; }
done
wait "$background"
accelerators_rc=$?
echo "== molecule accelerators (in the background), its log:"
cat .ansible/molecule-accelerators.log
if $lab_ok && [ "$accelerators_rc" = 0 ]; then
  lab_step verify || { python3 scripts/junit_failures.py .ansible/junit-lab.xml; lab_ok=false; }
fi
lab_step destroy
echo "== molecule lab: $(seconds_since "$start") s"
$lab_ok && [ "$accelerators_rc" = 0 ]
