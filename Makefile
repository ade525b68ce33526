# Two commands do all set-up on a fresh machine (Python 3.11, no GPU, no model hub):
#   make repro   install into .venv, then run the default pipeline (dvc repro)
#   make test    install into .venv, then run the test suite
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup browser repro test bench clean-venv

# Source archives read as data (SPEC §3: VADER's rated sentiment sets), pinned by hash;
# downloaded, never installed. pip replaces a file whose hash does not match.
SOURCES = .cache/sources/vaderSentiment-3.3.2.tar.gz
# The page of `dvc plots show` / `dvc plots diff` (.dvc/config: plots.html_template) with vega,
# vega-lite and vega-embed inline, so plots render offline: built from their npm tarballs
# (`npm pack`), pinned by SHA-512 in requirements/npm.txt and read as data, never installed.
PLOT_TEMPLATE = .cache/plots/offline.html

setup: $(STAMP) $(SOURCES) $(PLOT_TEMPLATE)

$(SOURCES): requirements/sources.txt | $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --require-hashes -r requirements/sources.txt -d $(@D)
	touch $@

$(STAMP): requirements/base.txt requirements/assets.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel; a bare or newer torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements/base.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements/assets.txt
	touch $(STAMP)

$(PLOT_TEMPLATE): requirements/npm.txt mtkd/plot_template.py | $(STAMP)
	$(BIN)/python -m mtkd.plot_template

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# Headless Chromium (Debian's package) for tests/test_report_browser.py: the report is tested in a real browser.
browser:
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

test: setup browser
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)

bench: setup
	$(BIN)/python -m bench.run
