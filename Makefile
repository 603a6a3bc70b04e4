# bosun.platform test suite. `make test` is what CI runs (.ci/run) and what the README gives.
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
STAGE := $(ROOT)/scripts/stage.sh
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.cache/collections
export ANSIBLE_ROLES_PATH := $(ROOT)/roles
# Molecule scenarios run one after another; `make molecule SCENARIOS="common"` runs some.
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

.PHONY: help setup collection lint sanity unit integration rehearsal molecule test clean lab lab-down

help:
	@echo "make setup        install what the tests need (idempotent)"
	@echo "make lint         ansible-lint (production, offline), yamllint, ruff"
	@echo "make sanity       ansible-test sanity, no ignores"
	@echo "make unit         pytest tests/unit"
	@echo "make integration  pytest tests/integration against real servers"
	@echo "make rehearsal    the production rehearsal: inventories/example on six hosts over SSH"
	@echo "make molecule     every Molecule scenario, one after another"
	@echo "make test         all of the above"
	@echo "make lab          the local lab: five hosts, site.yml, a deploy, the health report"
	@echo "make lab-down     remove the lab"

setup:
	@$(STAGE) setup bash scripts/setup.sh

# The collection as Ansible looks for it: .cache/collections/ansible_collections/bosun/platform
collection:
	@python3 tests/support/collection.py >/dev/null

lint: collection
	@$(STAGE) lint bash -c 'set -e; yamllint -s . && ruff check . && ruff format --check . && python3 scripts/check_role_specs.py && python3 scripts/check_doc_vars.py && ansible-inventory -i inventories/example --list > /dev/null && ansible-lint --offline'

sanity:
	@$(STAGE) sanity bash scripts/sanity.sh

unit: collection
	@$(STAGE) unit pytest -q tests/unit

integration: collection
	@$(STAGE) integration pytest -q tests/integration

# inventories/example as an operator uses it (docs/production.md): tests/rehearsal.
rehearsal: collection
	@$(STAGE) rehearsal pytest -q -s --tb=short -p no:cacheprovider tests/rehearsal

molecule: collection
	@$(STAGE) molecule bash scripts/molecule.sh $(SCENARIOS)

test:
	@rm -f .cache/stage-times
	@$(MAKE) --no-print-directory setup
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory sanity
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory rehearsal
	@$(MAKE) --no-print-directory molecule

# The collection's main job on a local lab of five containers reached over SSH.
lab: setup collection
	@bash scripts/lab.sh up
	@bash scripts/lab.sh main

lab-down:
	@bash scripts/lab.sh down

clean:
	rm -rf .cache tests/output .pytest_cache .ruff_cache
