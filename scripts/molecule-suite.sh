#!/usr/bin/env bash
# make molecule: the molecule scenarios, each step's seconds printed.
#
# The lab runs step by step: its first converge at -vvv into a file (see
# CONVERGE_LOG). The other scenarios (by default accelerators, the GPU stacks
# on fixture hardware) run whole in the background while the lab is
# converged, re-run (idempotence) and run in check mode, and so do the make
# targets given with --beside (`make test`: lint and unit): on two cores the
# lab's converge waits on downloads much of the time, and its warm runs leave
# about a third of the CPU idle (one task at a time, each waiting for its
# slowest host). The lab's verify starts only once they have finished, so its
# timing-sensitive tests run on a quiet machine. Each prints its own seconds.
#   scripts/molecule-suite.sh [--beside TARGET]... SCENARIO...
# `make molecule SCENARIOS=lab` runs the lab alone.
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
  # A failed `molecule test` leaves its hosts behind.
  molecule destroy -s "$scenario" > /dev/null 2>&1 || true
  return 1
}

# The lab's first converge runs at -vvv into this file (only its recap, or its tail on failure, in the log):
# molecule/lab/tests/test_secrets_never_logged.py searches it for every secret of the inventory.
CONVERGE_LOG=.ansible/lab-converge-vvv.log

# One step of the lab scenario. `molecule check` would run its own whole sequence, so check mode is a converge
# with --check.
lab_step() {
  local t rc=0
  t=$(date +%s)
  case $1 in
    converge)
      # Wide lines: molecule wraps ansible's output at the terminal's width.
      COLUMNS=1000 molecule converge -s lab -- -vvv > "$CONVERGE_LOG" 2>&1 || rc=$?
      if [ "$rc" = 0 ]; then grep -A8 "PLAY RECAP" "$CONVERGE_LOG" | tail -9; else tail -400 "$CONVERGE_LOG"; fi ;;
    check) molecule converge -s lab -- --check || rc=$? ;;
    *) molecule "$1" -s lab || rc=$? ;;
  esac
  [ "$rc" = 0 ] || return 1
  echo "== molecule lab $1: $(seconds_since "$t") s"
}

# A make target (lint, unit) beside the lab: its output in .ansible/make-TARGET.log, printed once it is waited for.
make_target() {
  local t
  t=$(date +%s)
  make --no-print-directory "$1" > ".ansible/make-$1.log" 2>&1 || return 1
  echo "== stage $1: $(seconds_since "$t") s (beside the lab)" >> ".ansible/make-$1.log"
}

others=()
beside=()
lab=false
while [ $# -gt 0 ]; do
  case $1 in
    --beside) beside+=("$2"); shift 2 ;;
    lab) lab=true; shift ;;
    *) others+=("$1"); shift ;;
  esac
done
if ! $lab; then
  for target in "${beside[@]}"; do make --no-print-directory "$target" || exit 1; done
  for scenario in "${others[@]}"; do scenario_test "$scenario" || exit 1; done
  exit 0
fi

start=$(date +%s)
mkdir -p .ansible
rm -f .ansible/junit-lab.xml "$CONVERGE_LOG"
lab_step destroy && lab_step syntax && lab_step create || { lab_step destroy; exit 1; }
# The lab's hosts exist (its image is built, its network chosen) before the other scenarios start their own.
( for scenario in "${others[@]}"; do scenario_test "$scenario" || exit 1; done ) > .ansible/molecule-others.log 2>&1 &
background=$!
beside_pids=()
for target in "${beside[@]}"; do
  make_target "$target" &
  beside_pids+=($!)
done
lab_ok=true
# What failed, repeated at the very end of the log (after the destroy's output), where a CI tail shows it.
verdict=()
for step in converge idempotence check; do
  lab_step "$step" || { lab_ok=false; verdict+=("lab $step failed"); break; }
done
others_rc=0
wait "$background" || { others_rc=$?; verdict+=("molecule ${others[*]} failed (its log above)"); }
for i in "${!beside[@]}"; do
  rc=0
  wait "${beside_pids[$i]}" || rc=$?
  echo "== make ${beside[$i]} (beside the lab), the log:"
  cat ".ansible/make-${beside[$i]}.log"
  if [ "$rc" != 0 ]; then
    echo "== make ${beside[$i]} failed"
    others_rc=1
    verdict+=("make ${beside[$i]} failed")
    # pytest's short summary (FAILED/ERROR lines), repeated where a CI tail shows it.
    mapfile -t -O "${#verdict[@]}" verdict < <(grep -E '^(FAILED|ERROR) ' ".ansible/make-${beside[$i]}.log" | head -20)
  fi
done
if [ "${#others[@]}" -gt 0 ]; then
  echo "== molecule ${others[*]} (in the background while the lab converged), the log:"
  cat .ansible/molecule-others.log
fi
if $lab_ok && [ "$others_rc" = 0 ]; then
  # The other scenarios' hosts are deleted in the background after their destroy (lab/lab.py down): the lab's
  # timing-sensitive tests start once that is done (at most two minutes).
  python3 lab/lab.py settle --timeout 120
  lab_step verify || {
    python3 scripts/junit_failures.py .ansible/junit-lab.xml
    lab_ok=false
    verdict+=("lab verify failed:")
    mapfile -t -O "${#verdict[@]}" verdict < <(python3 scripts/junit_failures.py --short .ansible/junit-lab.xml)
  }
fi
lab_step destroy
echo "== molecule lab: $(seconds_since "$start") s"
for line in "${verdict[@]}"; do echo "== FAILED: $line"; done
$lab_ok && [ "$others_rc" = 0 ]
