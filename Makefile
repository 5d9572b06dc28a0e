# make run   set up (venv, pinned dependencies, migrations) and run the whole service
# make test  set up and run every test (unit, integration on the real stack, browser)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test install install-dev browser migrate bench train screenshot clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt $(VENV)/bin/python
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(VENV)/.installed
	$(PIP) install -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) -m scripts.stack

# Debian's chromium for the browser tests (Playwright's own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: install-dev browser
	$(PY) -m pytest

bench: install
	$(PY) bench/e2e.py --clients 1 && $(PY) bench/e2e.py --clients 50

train: install
	$(PY) -m digits.train

clean:
	rm -rf $(VENV) .pytest_cache staticfiles .test-db.sqlite3

screenshot: install-dev browser
	$(PY) -m scripts.screenshot
