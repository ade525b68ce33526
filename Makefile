# Two commands do all set-up on a fresh machine (Python 3.11, no GPU, no model hub):
#   make repro   install into .venv, then run the default pipeline (dvc repro)
#   make test    install into .venv, then run the test suite
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup repro test bench clean-venv

setup: $(STAMP)

$(STAMP): requirements/base.txt requirements/assets.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel; a bare or newer torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements/base.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements/assets.txt
	touch $(STAMP)

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)

bench: setup
	$(BIN)/python -m bench.run
