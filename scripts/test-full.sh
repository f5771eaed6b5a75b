#!/usr/bin/env bash
# make test-full (after make test): TensorFlow and Keras in the lab's envs, the
# integrity tests of all three frameworks, and the TensorFlow sample jobs (one through Slurm).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory lab
frameworks='{"python_envs_default_frameworks": ["pytorch", "tensorflow", "keras"]}'
ansible-playbook site.yml -e "$frameworks"
ansible-playbook playbooks/validate.yml
for job in pytorch-ddp-mnist tf-mwms-mnist tf-ps-mnist tf-mwms-mnist-slurm; do
  ansible-playbook playbooks/train.yml -e job=jobs/$job.yml -e force=true
done
