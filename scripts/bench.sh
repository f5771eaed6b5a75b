#!/usr/bin/env bash
# make bench: benchmarks on the converged lab (see scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/bench.py
