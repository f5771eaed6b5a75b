# dlcluster — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
LAB_HOSTS ?= 3
LAB_INVENTORY := inventories/lab/hosts.yml
JOB ?= jobs/pytorch-ddp-mnist.yml
FORCE ?= false
# The GPU stacks on fixture hardware, then one converged lab verified for every role.
SCENARIOS ?= accelerators lab

.PHONY: help bootstrap venv lab lab-down converge train validate demo lint unit molecule test test-full bench bench-rollout bench-vpn bench-launch bench-datasets bench-supervision bench-launch-scale clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

bootstrap: ## Install controller packages and start a Docker engine when missing.
	@scripts/bootstrap-controller.sh

# bootstrap first: a bare Debian lacks python3-venv.
$(VENV)/.installed: requirements.txt | bootstrap
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed ## Create the virtualenv with the pinned tooling.

lab: bootstrap ## Bring up the lab (LAB_HOSTS=3) and write its inventory.
	$(PYTHON) lab/lab.py up --hosts $(LAB_HOSTS) --inventory $(LAB_INVENTORY)

lab-down: ## Remove the lab's containers, network and state (nothing else).
	$(PYTHON) lab/lab.py down --inventory $(LAB_INVENTORY)

converge: venv ## Converge site.yml on the current inventory.
	ansible-playbook site.yml

train: venv ## Run the PyTorch DDP sample across the workers (JOB=jobs/<spec>.yml, FORCE=true to re-run).
	ansible-playbook playbooks/train.yml -e job=$(JOB) -e force=$(FORCE)

validate: venv ## Environment integrity tests on every host; report in reports/validate/.
	ansible-playbook playbooks/validate.yml

demo: venv lab converge ## Fresh machine → lab up → site.yml → DDP training across the two workers.
	$(MAKE) --no-print-directory train FORCE=true

lint: venv ## yamllint (strict) and ansible-lint (production profile).
	yamllint --strict .
	ansible-lint --profile production
	python scripts/role_docs.py --check

unit: venv ## Unit tests (filter plugins, lab tool) and pre-flight integration tests.
	pytest tests

# Both scenarios: accelerators runs in the background while the lab converges (scripts/molecule-suite.sh).
molecule: venv bootstrap ## Molecule scenarios: the GPU stacks, then the whole lab (each step's seconds).
	scripts/molecule-suite.sh $(SCENARIOS)

# lint and unit run beside the lab's converge (scripts/molecule-suite.sh --beside), each with its seconds.
test: venv bootstrap ## Every test: lint, unit and the molecule scenarios (each stage's seconds printed).
	t=$$(date +%s); scripts/molecule-suite.sh --beside lint --beside unit $(SCENARIOS); \
	  echo "== stage molecule (with lint and unit beside it): $$(( $$(date +%s) - t )) s"

# TensorFlow and Keras add ~1 GB per host: kept out of CI's two cores.
test-full: venv ## Every test (the lab's `full` ones too), then TensorFlow/Keras envs, validate and the TF jobs on the lab.
	DL_LAB_TESTS="full or not full" $(MAKE) --no-print-directory test
	scripts/test-full.sh

bench: venv ## Benchmarks: pip mirror upstream fetches, launch overhead, 1 vs 2 host throughput, the benchmark vs by hand, warm re-runs on 2/3/16 hosts, the VPN, datasets through the cache vs direct, the controller's cost of supervising a job, the launcher at 2/4/8 hosts.
	scripts/bench.sh
	$(BIN)/python scripts/bench_benchmark.py
	$(MAKE) --no-print-directory bench-rollout
	$(MAKE) --no-print-directory bench-vpn
	$(MAKE) --no-print-directory bench-datasets
	$(MAKE) --no-print-directory bench-supervision
	$(MAKE) --no-print-directory bench-launch-scale

bench-rollout: venv ## site.yml cold and warm re-run seconds on 2, 3 and 16 lab hosts (BENCH_SIZES) -> reports/rollout/.
	$(BIN)/python scripts/bench_rollout.py

bench-launch: venv ## Submit-to-first-step of the DDP sample on 2 hosts, direct vs Slurm (a converged lab; BENCH_ROUNDS, BENCH_INVENTORY) -> reports/launch/.
	$(BIN)/python scripts/bench_launch.py

bench-supervision: venv ## Controller CPU s per minute of a direct job and the task workers it holds (a converged lab; BENCH_COMPARE=<other checkout>, BENCH_INVENTORY) -> reports/supervision/.
	$(BIN)/python scripts/bench_supervision.py

bench-launch-scale: venv bootstrap ## The launcher at 2, 4 and 8 hosts: overhead to every unit started, to every first step, supervision CPU (its own 9-host lab; BENCH_COMPARE=<other checkout>) -> reports/launch-scale/.
	$(BIN)/python scripts/bench_launch_scale.py

bench-datasets: venv ## Upstream bytes of a dataset sync to 3 hosts, through the cluster cache vs direct (the converged molecule lab; BENCH_INVENTORY) -> reports/datasets/.
	$(BIN)/python scripts/bench_datasets.py

bench-vpn: venv bootstrap ## VPN: iperf3 and ping same site / underlay / each backend's tunnel, DDP samples/s same vs across sites (BENCH_VPN_DDP=0 skips) -> reports/vpn/.
	$(BIN)/python scripts/bench_vpn.py

clean: lab-down ## Remove the lab and the virtualenv.
	rm -rf $(VENV) .ansible
