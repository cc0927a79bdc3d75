# The README's commands. Each target sets up what it needs, idempotently, on a fresh machine as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CONVBENCH := $(VENV)/bin/convbench
STAMP := $(VENV)/.installed
DEB_PACKAGES := dataset-fashion-mnist slurm-wlm munge slurmdbd mariadb-server
export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_MODE ?= offline

.PHONY: demo test bench study setup system-packages

demo: setup
	$(CONVBENCH) list
	$(CONVBENCH) summary resnet56

test: setup
	$(PY) -m pytest

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
