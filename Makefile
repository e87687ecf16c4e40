# MaskTalk: two commands for a fresh Debian 12 machine (as root):
#   make test   install what is missing, then run the quick checks and every test headless
#   make demo   install what is missing, then run the engine on the demo scene
# Also: make check (Python 3.9 / Qt6 / tr / import checks, seconds), make package (the
# plugins.qgis.org zip, refused on any finding of the site's checks), make i18n (template).
# Re-running either when everything is installed takes seconds: each install step
# is a stamp file that only a change of its requirements file makes stale.

SHELL := /bin/bash
SYSPY := /usr/bin/python3
VENV := .venv
VENV_QGIS := .venv-qgis
STAMPS := .stamps
DEBS := python3-qgis qgis-providers qgis xvfb python3-venv python3-pip qttools5-dev-tools
# rasterio and fiona ship their own PROJ; a system PROJ_DATA/PROJ_LIB breaks them.
ENGINE_ENV := env -u PROJ_DATA -u PROJ_LIB PYTHONDONTWRITEBYTECODE=1
QGIS_ENV := env -u PROJ_DATA -u PROJ_LIB QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE=1 XDG_RUNTIME_DIR=/tmp/runtime-$(shell id -u)
PYTEST_ARGS ?=
DEMO_OUT ?= demo-output

.PHONY: test demo setup check test-engine test-plugin bench package i18n install-plugin screenshots clean

setup: $(STAMPS)/debs $(STAMPS)/venv $(STAMPS)/venv-qgis

$(STAMPS)/debs:
	@mkdir -p $(STAMPS)
	@if ! dpkg -s $(DEBS) >/dev/null 2>&1; then \
	  echo "Installing Debian packages: $(DEBS)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS); \
	fi
	@touch $@

$(STAMPS)/venv: requirements.txt requirements-dev.txt | $(STAMPS)/debs
	@test -x $(VENV)/bin/python || $(SYSPY) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@touch $@

$(STAMPS)/venv-qgis: requirements-qgis-test.txt | $(STAMPS)/debs
	@test -x $(VENV_QGIS)/bin/python || $(SYSPY) -m venv --system-site-packages $(VENV_QGIS)
	$(VENV_QGIS)/bin/python -m pip install -q --disable-pip-version-check -r requirements-qgis-test.txt
	@touch $@

# Engine tests run in the engine environment; plugin tests run in QGIS's own Python
# (system numpy, no torch) and call the engine as a child process, as in real use.
test: setup
	$(MAKE) --no-print-directory check test-engine test-plugin

# What runs inside QGIS works on Python 3.9 (vermin, runtime unions) and on Qt5 and Qt6
# (flake8-qgis, Qt5-only forms), tr() takes literals, the plugin has no import cycle.
check: $(STAMPS)/venv-qgis
	$(QGIS_ENV) $(VENV_QGIS)/bin/python scripts/check_compat.py

test-engine: $(STAMPS)/venv
	$(ENGINE_ENV) $(VENV)/bin/python -m pytest tests/engine $(PYTEST_ARGS)

test-plugin: $(STAMPS)/venv-qgis $(STAMPS)/venv
	$(QGIS_ENV) MASKTALK_ENGINE_PYTHON=$(CURDIR)/$(VENV)/bin/python $(VENV_QGIS)/bin/python -m pytest tests/plugin $(PYTEST_ARGS)

demo: $(STAMPS)/debs $(STAMPS)/venv
	$(ENGINE_ENV) $(VENV)/bin/python -m engine demo --out $(DEMO_OUT)

bench: $(STAMPS)/venv
	$(ENGINE_ENV) $(VENV)/bin/python bench/model_speed.py
	$(ENGINE_ENV) $(VENV)/bin/python bench/predict_speed.py

clean:
	rm -rf $(STAMPS) $(DEMO_OUT) dist .pytest_cache

# Plugin zip for plugins.qgis.org (dist/masktalk-VERSION.zip): translations compiled
# (lrelease), then the site's upload checks and security scanners (bandit, detect-secrets).
package: $(STAMPS)/debs $(STAMPS)/venv-qgis
	$(VENV_QGIS)/bin/python scripts/package.py --out dist

# Translation template i18n/masktalk.ts (and the translations) from the code's tr() calls
i18n:
	$(SYSPY) scripts/i18n.py update

# Link this checkout into the default QGIS profile for development
QGIS_PROFILE ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
install-plugin:
	mkdir -p $(QGIS_PROFILE)/python/plugins
	ln -sfn $(CURDIR) $(QGIS_PROFILE)/python/plugins/masktalk
	@echo "Linked $(CURDIR) as $(QGIS_PROFILE)/python/plugins/masktalk; enable MaskTalk in Plugins > Manage and Install Plugins."

# Screenshots of the QGIS desktop (Xvfb) with the dock over the demo scene, for the README
screenshots: $(STAMPS)/debs $(STAMPS)/venv
	$(SYSPY) scripts/screenshots.py --engine-python $(CURDIR)/$(VENV)/bin/python --out docs/screenshots
