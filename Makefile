# django-voicepassword: `make demo` runs the example site on the emulator,
# `make test` runs every gate and test. Both set up what they need in .venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The interpreter of a version: pyenv's when pyenv has it, else the PATH's.
python_for = $(shell p=$$(pyenv prefix $(1) 2>/dev/null) && [ -x "$$p/bin/python$(1)" ] \
	&& echo "$$p/bin/python$(1)" || command -v python$(1) 2>/dev/null || true)
PY313 := $(call python_for,3.13)
PY311 := $(call python_for,3.11)
# The development environment uses the newest interpreter there is.
PYTHON ?= $(or $(PY313),$(call python_for,3.12),$(PY311),python3)
# nox finds the matrix's interpreters on PATH.
export PATH := $(if $(PY313),$(dir $(PY313)):)$(if $(PY311),$(dir $(PY311)):)$(PATH)

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANAGE := $(BIN)/python example_project/manage.py

HOST ?= 127.0.0.1
PORT ?= 8000
EMULATOR_PORT ?= 8765

# SERVICES=1 switches on the service tier: PostgreSQL, Redis and Chromium.
SERVICES ?= $(VOICEPASSWORD_TEST_SERVICES)
export VOICEPASSWORD_TEST_SERVICES := $(SERVICES)

.PHONY: help demo test lint types migrations-check docs matrix service-packages bench clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

# The install compiles the translations too, so a changed catalog reinstalls.
$(STAMP): pyproject.toml hatch_build.py $(wildcard django_voicepassword/locale/*/LC_MESSAGES/*.po)
	@[ -n "$(PYTHON)" ] || { echo "No Python 3.11+ found: install one (pyenv works)." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $@

demo: $(STAMP)  ## Set up and run the example site on the local emulator
	$(BIN)/pybabel --quiet compile --domain django --directory example_project/example_project/locale
	$(MANAGE) migrate --noinput
	$(MANAGE) demo_admin
	@echo
	@echo "  Site:      http://$(HOST):$(PORT)/"
	@echo "  Admin:     http://$(HOST):$(PORT)/admin/"
	@echo "  Emulator:  http://$(HOST):$(EMULATOR_PORT)/   (the phone: calls show up here)"
	@echo "  Stop both with Ctrl-C."
	@echo
	@trap 'kill 0' EXIT INT TERM; \
	$(BIN)/python -m django_voicepassword.emulator --host $(HOST) --port $(EMULATOR_PORT) \
		--callback-delay 3 & \
	VOICEPASSWORD_API_URL=http://$(HOST):$(EMULATOR_PORT)/api/voice-password/ \
	VOICEPASSWORD_CALLBACK_BASE_URL=http://$(HOST):$(PORT) \
		$(MANAGE) runserver $(HOST):$(PORT)

test: lint types migrations-check docs service-packages matrix  ## Run every gate, the docs build and the test suite on both ends of the version matrix

lint: $(STAMP)  ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)  ## mypy with django-stubs
	$(BIN)/mypy django_voicepassword tests example_project bench noxfile.py hatch_build.py docs/conf.py

migrations-check: $(STAMP)  ## Fail when a model change has no migration
	$(MANAGE) makemigrations --check --dry-run

docs: $(STAMP)  ## Build the documentation site into docs/_build/html (warnings are errors)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The service tier's system packages: Debian's Chromium for the browser tests,
# GNU gettext for the catalog test (makemessages). Installed with apt as root.
SYSTEM_PACKAGES := chromium:chromium gettext:xgettext
service-packages:
	@if [ -n "$(SERVICES)" ] && [ "$(SERVICES)" != 0 ]; then \
		missing=; for entry in $(SYSTEM_PACKAGES); do \
			command -v "$${entry#*:}" >/dev/null || missing="$$missing $${entry%%:*}"; done; \
		if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
		elif [ -n "$$missing" ]; then echo "The service tier needs:$$missing (apt-get install)" >&2; fi; \
	fi

# Locally a missing interpreter skips its session; in CI (CI=true) it fails the run.
matrix: $(STAMP)  ## The test suite on Python 3.11 + Django 5.2 and Python 3.13 + Django 6.1
	$(BIN)/nox --reuse-existing-virtualenvs \
		$(if $(filter true 1 yes,$(CI)),--error-on-missing-interpreters,--no-error-on-missing-interpreters)

# Each script exits 1 on a miss (work not done, a target missed) and 2 when it
# cannot run here; all of them run, and the target fails if any did not pass.
bench: $(STAMP)  ## Run the micro benchmarks (PostgreSQL on 127.0.0.1:5432); fail on any miss
	@failed=""; for script in client reconcile callbacks admin; do \
		echo "==== bench/$$script.py"; \
		$(BIN)/python bench/$$script.py || failed="$$failed bench/$$script.py"; \
	done; \
	if [ -n "$$failed" ]; then echo "make bench: did not pass:$$failed" >&2; exit 1; fi

clean:  ## Remove the environments and caches
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage test-output \
		docs/_build
