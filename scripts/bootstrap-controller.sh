#!/usr/bin/env bash
# Install what the controller needs from the distribution when it is missing:
# debootstrap (lab image), an SSH client, Python venv support, make, curl and
# openssl (the lab tests' requests and certificate checks from the controller),
# and the Docker engine (via ensure-docker.sh). Safe to run again: it installs nothing
# that is already there.
set -euo pipefail

missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing ${missing[*]}; install them (needs root)" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

exec "$(dirname "$0")/ensure-docker.sh"
