# bosun.platform test suite. `make test` is what CI runs (.ci/run) and what the README gives.
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
STAGE := $(ROOT)/scripts/stage.sh
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.cache/collections
export ANSIBLE_ROLES_PATH := $(ROOT)/roles
# The collection as Ansible finds it (a symlink to this checkout, made by `make collection`).
COLLECTION_DIR := $(ROOT)/.cache/collections/ansible_collections/bosun/platform
# Module, plugin and role docs: markup, schema, and O()/RV()/M() references to this collection
# and the collections it depends on; references to any other collection are errors.
DOCS_LINT_FLAGS := --plugin-docs --check-extra-docs-refs --validate-collection-refs dependent --disallow-unknown-collection-refs
# `make docs` writes the docsite here (not committed); it needs no network beyond the package index.
DOCSITE := $(ROOT)/.cache/docsite
# Molecule scenarios run one after another; `make molecule SCENARIOS="common"` runs some.
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
# `make test` runs its stages this many at a time (scripts/pool.py): they mostly wait on
# containers, not on the cores. The longest go first; the short CPU-bound ones fill the end.
JOBS ?= 3
LONGEST_FIRST := molecule-topology rehearsal molecule-common molecule-acme molecule-elasticsearch molecule-monitor molecule-postgresql \
	molecule-app integration molecule-control molecule-nginx molecule-redis molecule-maintenance_schedule
TEST_STAGES := $(LONGEST_FIRST) \
	$(addprefix molecule-,$(filter-out $(patsubst molecule-%,%,$(LONGEST_FIRST)),$(SCENARIOS))) \
	lint sanity unit

.PHONY: help setup collection lint docs sanity unit integration rehearsal molecule test clean lab lab-down

help:
	@echo "make setup        install what the tests need (idempotent)"
	@echo "make lint         ansible-lint (production, offline), yamllint, ruff, antsibull-docs lint"
	@echo "make docs         the collection docsite (antsibull-docs + Sphinx) in .cache/docsite/build/html"
	@echo "make sanity       ansible-test sanity, no ignores"
	@echo "make unit         pytest tests/unit"
	@echo "make integration  pytest tests/integration against real servers"
	@echo "make rehearsal    the production rehearsal: inventories/example on six hosts over SSH"
	@echo "make molecule     every Molecule scenario, one after another"
	@echo "make test         all of the above, JOBS (3) at a time"
	@echo "make lab          the local lab: six hosts, site.yml, a deploy, the health report"
	@echo "make lab-down     remove the lab"

setup:
	@$(STAGE) setup bash scripts/setup.sh

# The collection as Ansible looks for it: .cache/collections/ansible_collections/bosun/platform
collection:
	@python3 tests/support/collection.py >/dev/null

lint: collection
	@$(STAGE) lint bash -c 'set -e; yamllint -s . && ruff check . && ruff format --check . && python3 scripts/check_role_specs.py && python3 scripts/check_doc_vars.py && antsibull-changelog lint && python3 scripts/check_changelog_fragment.py && antsibull-docs lint-collection-docs $(DOCS_LINT_FLAGS) $(COLLECTION_DIR) && ansible-inventory -i inventories/example --list > /dev/null && ansible-lint --offline'

# Offline: intersphinx is off, so references to docs.ansible.com pages (other collections,
# common return values) render as plain text instead of failing the build.
docs: collection
	@rm -rf $(DOCSITE) && mkdir -p $(DOCSITE)
	@antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
		--project bosun.platform --title 'bosun.platform' --dest-dir $(DOCSITE) bosun.platform >/dev/null
	@printf '%s\n' 'intersphinx_mapping = {}' \
		"nitpick_ignore = [('std:ref', 'common_return_values'), ('std:ref', 'ansible_configuration_settings')]" \
		"nitpick_ignore_regex = [('std:ref', r'ansible_collections\.(?!bosun\.platform\.).*')]" \
		"import sys; sys.path.insert(0, '$(ROOT)/scripts'); extensions.append('docsite_guides')" >> $(DOCSITE)/conf.py
	@bash $(DOCSITE)/build.sh >$(DOCSITE)/build.log 2>&1 || { cat $(DOCSITE)/build.log; exit 1; }
	@echo "docsite: $(DOCSITE)/build/html/index.html"

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

# One scenario as a stage of its own: `make molecule-redis`.
molecule-%: collection
	@$(STAGE) molecule-$* bash scripts/molecule.sh $*

test:
	@rm -f .cache/stage-times
	@$(MAKE) --no-print-directory setup
	@$(MAKE) --no-print-directory collection
	@python3 scripts/pool.py --jobs $(JOBS) $(TEST_STAGES)

# The collection's main job on a local lab of six containers reached over SSH.
lab: setup collection
	@bash scripts/lab.sh up
	@bash scripts/lab.sh main

lab-down:
	@bash scripts/lab.sh down

clean:
	rm -rf .cache tests/output .pytest_cache .ruff_cache
