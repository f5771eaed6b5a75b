#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install the distribution's
# docker.io when dockerd is missing, start dockerd when it is not running.
# Prints one clear message and exits non-zero when that is impossible.
set -uo pipefail

log=${DL_DOCKERD_LOG:-/var/log/dlcluster-dockerd.log}
# Seconds to wait for a started dockerd to answer.
wait_s=${DL_DOCKERD_WAIT:-30}

die() {
  echo "ensure-docker: $*" >&2
  exit 1
}

engine_answers() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_answers; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  die "no Docker engine answers and starting one needs root; start dockerd or run as root"
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-docker: installing the distribution's docker.io package" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq docker.io >/dev/null; } ||
    die "could not install docker.io with apt-get; install a Docker engine by hand"
fi

if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && systemctl start docker 2>/dev/null; then
  :
else
  echo "ensure-docker: starting dockerd (log: $log)" >&2
  nohup dockerd >>"$log" 2>&1 &
fi

for _ in $(seq 1 $((wait_s * 2))); do
  engine_answers && exit 0
  sleep 0.5
done
die "dockerd did not answer within $wait_s s; see $log (last lines: $(tail -n 3 "$log" 2>/dev/null | tr '\n' ' '))"
