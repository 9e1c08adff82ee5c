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

# While the demo runs, DEMO_ENV_FILE holds its servers' addresses; the example
# site's settings read it, so a manage.py command in another terminal reaches the
# same emulator and gets its callbacks on the same port. Removed when the demo stops.
DEMO_ENV_FILE ?= example_project/.env.demo
SITE_URL := http://$(HOST):$(PORT)
EMULATOR_URL := http://$(HOST):$(EMULATOR_PORT)

demo: $(STAMP)  ## Set up and run the example site on the local emulator (PORT, EMULATOR_PORT)
	$(BIN)/pybabel --quiet compile --domain django --directory example_project/example_project/locale
	$(MANAGE) migrate --noinput
	$(MANAGE) demo_admin
	@printf '%s\n' "# Written by make demo while it runs, removed when it stops." \
		"VOICEPASSWORD_API_URL=$(EMULATOR_URL)/api/voice-password/" \
		"VOICEPASSWORD_CALLBACK_BASE_URL=$(SITE_URL)" > $(DEMO_ENV_FILE)
	@echo
	@echo "  Site:      $(SITE_URL)/"
	@echo "  Admin:     $(SITE_URL)/admin/"
	@echo "  Emulator:  $(EMULATOR_URL)/   (the phone: calls show up here)"
	@echo "  Stop both with Ctrl-C."
	@echo
# Both servers run in the background, where a non-interactive shell ignores SIGINT
# for them; the shell itself takes Ctrl-C (or a server's exit), stops both with
# SIGTERM, waits for them, and then dies of the SIGINT it got, so that make reports
# an interrupt. Each handler first clears the traps: `kill 0` in a trap, as before,
# signalled the shell itself and re-entered the trap until bash crashed. A server
# still running 5 s after SIGTERM (one stuck in its exit handlers) is killed, so
# that Ctrl-C always ends the demo.
	@emulator=; site=; \
	stop() { trap - EXIT INT TERM; kill $$emulator $$site 2>/dev/null || true; \
		for _ in 1 2 3 4 5 6 7 8 9 10; do \
			kill -0 $$emulator 2>/dev/null || kill -0 $$site 2>/dev/null || break; sleep 0.5; \
		done; \
		kill -KILL $$emulator $$site 2>/dev/null || true; \
		wait || true; rm -f $(DEMO_ENV_FILE); }; \
	trap stop EXIT; \
	trap 'stop; kill -INT $$$$' INT; \
	trap 'stop; kill -TERM $$$$' TERM; \
	$(BIN)/python -m django_voicepassword.emulator --host $(HOST) --port $(EMULATOR_PORT) \
		--callback-delay 3 & emulator=$$!; \
	VOICEPASSWORD_API_URL=$(EMULATOR_URL)/api/voice-password/ \
	VOICEPASSWORD_CALLBACK_BASE_URL=$(SITE_URL) \
		$(MANAGE) runserver $(HOST):$(PORT) & site=$$!; \
	while kill -0 $$emulator 2>/dev/null && kill -0 $$site 2>/dev/null; do sleep 1; done; \
	echo "A server stopped; stopping the other." >&2; exit 1

# make dist: what a release uploads, checked the way a user meets it. The wheel is
# installed alone into a fresh environment, where a new project with the app added
# (README's set-up) must pass `manage.py check` and find every migration and the
# compiled Russian catalog. That environment takes Django and the rest from the
# package index; DIST_DEPS=.venv borrows them from .venv instead (offline; the test
# suite does that), the package itself still coming only from the wheel.
DIST_DIR ?= dist
DIST_CHECK ?= $(VENV)/dist-check
DIST_DEPS ?= index
DIST_PY := $(DIST_CHECK)/bin/python
PURELIB := import sysconfig; print(sysconfig.get_path("purelib"))

.PHONY: dist
# The fresh project's settings, whatever the caller's environment names.
dist: export DJANGO_SETTINGS_MODULE := mysite.settings
dist: $(STAMP)  ## Build the sdist and wheel into dist/; check them with twine and in a fresh environment
	rm -rf $(DIST_DIR) $(DIST_CHECK)
	$(BIN)/python -m build --no-isolation --outdir $(DIST_DIR) .
	$(BIN)/twine check --strict $(DIST_DIR)/*
	$(BIN)/python -m venv $(DIST_CHECK)
ifeq ($(DIST_DEPS),.venv)
	$(DIST_PY) -m pip install --quiet --no-deps $(DIST_DIR)/*.whl
	$(BIN)/python -c '$(PURELIB)' > "$$($(DIST_PY) -c '$(PURELIB)')/dependencies-from-dev.pth"
else
	$(DIST_PY) -m pip install --quiet $(DIST_DIR)/*.whl
endif
	mkdir $(DIST_CHECK)/project
	$(DIST_PY) -m django startproject mysite $(DIST_CHECK)/project
	printf '%s\n' 'INSTALLED_APPS += ["rest_framework", "django_voicepassword"]' \
		'VOICEPASSWORD = {"API_KEY": "emulator-key",' \
		'                 "API_URL": "http://127.0.0.1:8765/api/voice-password/"}' \
		'DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}' \
		>> $(DIST_CHECK)/project/mysite/settings.py
	cd $(DIST_CHECK)/project && ../bin/python -c 'import sys, django_voicepassword as app; \
		from importlib.resources import files; \
		assert app.__file__.startswith(sys.prefix), f"{app.__file__}: not the wheel"; \
		assert files(app).joinpath("locale/ru/LC_MESSAGES/django.mo").is_file(), "no catalog"'
	cd $(DIST_CHECK)/project && ../bin/python manage.py check --fail-level WARNING
	cd $(DIST_CHECK)/project && ../bin/python manage.py makemigrations --check --dry-run voicepassword
	@echo "Built and checked:" && ls $(DIST_DIR)

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
bench: $(STAMP)  ## Run the micro benchmarks (PostgreSQL and Redis on 127.0.0.1); fail on any miss
	@failed=""; for script in client reconcile callbacks admin fraud login limits; do \
		echo "==== bench/$$script.py"; \
		$(BIN)/python bench/$$script.py || failed="$$failed bench/$$script.py"; \
	done; \
	if [ -n "$$failed" ]; then echo "make bench: did not pass:$$failed" >&2; exit 1; fi

clean:  ## Remove the environments and caches
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage test-output \
		docs/_build
