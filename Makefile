# The README's commands (make demo, make test) and the longer ones the docs name. Each target sets up what it
# needs, idempotently, on a fresh machine as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CONVBENCH := $(VENV)/bin/convbench
STAMP := $(VENV)/.installed
DEB_PACKAGES := dataset-fashion-mnist slurm-wlm munge slurmdbd mariadb-server
export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_MODE ?= offline

.PHONY: demo test bench bench-pipelines study docs setup system-packages

# The main job on embedded defaults: LeNet-5, one epoch of the real Fashion-MNIST, W&B offline.
demo: setup
	$(CONVBENCH) summary lenet5
	$(CONVBENCH) train --arch lenet5 --data fashion-mnist --epochs 1

# Style first (ruff: the formatter's check and the lint rules in pyproject.toml), then the whole suite.
test: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# tests/benchmarks in full (`make test` runs them briefly; the sweep scale benchmark at 10,000 runs, not 1,000;
# the harness overhead with ten pairs, not three, and for resnet20 too: CONVBENCH_BENCH=full)
# and the two-node tests with ten requeues in a row (`make test`: two), and pytest-benchmark's JSON report.
# CONVBENCH_UPDATE_BASELINE=1 make bench re-records tests/benchmarks/baseline.json instead of checking it.
bench: setup
	mkdir -p results/bench
	CONVBENCH_BENCH=full CONVBENCH_SCALE_RUNS=10000 CONVBENCH_REQUEUES=10 CONVBENCH_OVERHEAD_PAIRS=10 $(PY) -m pytest tests/benchmarks tests/test_multinode.py --benchmark-min-rounds=15 --benchmark-max-time=5 --benchmark-warmup=on \
		--benchmark-json=results/bench/benchmarks.json

# The two data pipelines (data.pipeline albumentations, device) side by side inside training, alternating:
# lenet5 at batch 32 and resnet20 at batch 128 on the real Fashion-MNIST (README, Choosing the data pipeline;
# about 15 minutes). On a GPU machine: $(PY) -m tests.benchmarks.gpu_pipelines
bench-pipelines: setup
	$(PY) -m tests.benchmarks.side_by_side

# The seeds' studies on the real Fashion-MNIST, their reports into docs/results/ (see docs/studies.md):
# bf16-mixed against fp32, the depth ladder (plain vs residual 20-56) and its zero-init variant,
# transfer on a dissimilar and a similar split at equal steps, lenet5 vs resnet20's time to
# accuracy, the device data pipeline against Albumentations, and the U-Net's depth, width and skip
# connections on the shapes set. Finished runs are kept in results/study/ and skipped when run again.
STUDY := results/study
SWEEPS := $(STUDY)/sweeps
study: setup
	for s in fashion-precision fashion-depth fashion-depth-zero-init transfer transfer-similar fashion-time-to-accuracy fashion-pipeline unet-depth; do \
		$(CONVBENCH) sweep sweeps/$$s.yaml --parallel $$(nproc) --results $(STUDY) || exit; done
	rm -rf docs/results/precision docs/results/depth docs/results/transfer docs/results/time-to-accuracy docs/results/pipeline docs/results/unet-depth
	$(CONVBENCH) report $(SWEEPS)/fashion-precision --out docs/results/precision
	$(CONVBENCH) report $(SWEEPS)/fashion-depth $(SWEEPS)/fashion-depth-zero-init --out docs/results/depth
	$(CONVBENCH) report $(SWEEPS)/transfer $(SWEEPS)/transfer-similar --out docs/results/transfer
	$(CONVBENCH) report $(SWEEPS)/fashion-time-to-accuracy --target val_acc1=0.80 --target val_acc1=0.83 \
		--out docs/results/time-to-accuracy
	$(CONVBENCH) report $(SWEEPS)/fashion-pipeline --out docs/results/pipeline
	$(CONVBENCH) report $(SWEEPS)/unet-depth --out docs/results/unet-depth

# docs/config.md, the config-key reference, generated from the schema's dataclasses (tests/test_docs.py checks it).
docs: setup
	$(PY) -m harness.config_docs --out docs/config.md

setup: system-packages $(STAMP)

# Debian packages: the real Fashion-MNIST files and a single-node Slurm cluster with accounting.
system-packages:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt-get install $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)
