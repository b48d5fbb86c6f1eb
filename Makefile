# divtransforms: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed-stamp

export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: demo test test-fast test-faults bench bench-peers lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or run make PYTHON=python3)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -qq --upgrade pip
	$(PIP) install -qq -e '.[all]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m flows.demo

# Two workers (pytest-xdist): most of the suite's time is spent waiting on servers, Beam and
# timed kills, so two workers use a 2-core machine fully. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
TEST_OPTS := -q -n $(TEST_WORKERS) --dist worksteal --durations=15

test: $(STAMP)
	$(PY) -m pytest $(TEST_OPTS)

test-fast: $(STAMP)
	$(PY) -m pytest $(TEST_OPTS) -m 'not slow and not beam and not prefect and not browser'

# The full fault-injection campaign (docs/reliability.md): 33 SIGKILL trials of the real
# `divmon run`, 5 rounds of overlapping runs, the lock race at 500 rounds and the lock stress at
# 40 kills. `make test` runs a bounded set of the same tests. It took 35 min on the shared
# 2-core machine under load (docs/reliability.md).
test-faults: $(STAMP)
	DIVMON_FAULT_TRIALS=33 $(PY) -m pytest -q -s tests/flows/test_fault_injection.py \
	  tests/flows/test_state.py tests/flows/test_serve.py::test_sigkilled_divmon_run_leaves_no_prefect_server_behind

bench: $(STAMP)
	$(PIP) install -qq -e '.[all,bench]'
	$(PY) -m benchmarks

# Peers in venvs of their own (pyproject extras bench-<peer>; a failed install is skipped by the
# benchmark with a message). TFDV needs Python 3.11 and may not install offline.
bench-peers:
	@for peer in evidently whylogs tfdv; do \
	  test -x .venv-$$peer/bin/python || $(PYTHON) -m venv .venv-$$peer; \
	  .venv-$$peer/bin/pip install -qq --upgrade pip; \
	  .venv-$$peer/bin/pip install -qq $$($(PY) -c "import tomllib; \
	    print(' '.join(repr(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench-'+'$$peer']))") \
	    || { echo "$$peer: install failed; bench_peers will skip it"; rm -rf .venv-$$peer; }; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check divtransforms pipelines flows tests benchmarks
	$(VENV)/bin/ruff format --check divtransforms pipelines flows tests benchmarks

clean:
	rm -rf $(VENV) .prefect build *.egg-info .pytest_cache .hypothesis
