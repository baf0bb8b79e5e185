# The two commands (README "The two commands"):
#   make demo   install what is needed into .venv (first use, or after requirements.txt or setup.py
#               changed), then run the main job on the bundled sample: `fusanet demo --out out/demo`
#   make test   the same install, then the test suite (what .ci/run runs)
#
# Variables: PYTHON (the interpreter .venv is made from, default python3), VENV (default .venv),
# PIP_ARGS (extra pip options for the requirements install, e.g. PyTorch's CPU index:
# PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"), DEMO_ARGS (extra
# `fusanet demo` options, e.g. DEMO_ARGS="--device cuda"), PYTEST_ARGS (default -q).

PYTHON ?= python3
VENV ?= .venv
PIP_ARGS ?=
DEMO_ARGS ?=
PYTEST_ARGS ?= -q
# The install stamp: newer than requirements.txt and setup.py once they are installed.
STAMP := $(VENV)/.fusanet-installed

.PHONY: demo test install clean-venv

demo: $(STAMP)
	$(VENV)/bin/fusanet demo --out out/demo $(DEMO_ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

# Installs only what requirements.txt / setup.py name; a re-run with nothing changed does nothing.
# `pip install --no-deps -e .` never touches torch: the one torch is the pin in requirements.txt.
$(STAMP): requirements.txt setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q $(PIP_ARGS) -r requirements.txt
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

clean-venv:
	rm -rf $(VENV)
