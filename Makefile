# divtransforms: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed-stamp

export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: demo test test-fast test-latest test-faults bench bench-peers lint venv clean lock \
	beam-version image fresh-clone

venv: $(STAMP)

# Installs come from the lock file (requirements.lock, every extra, with hashes), so a fresh clone
# gets exactly what CI tested; `make lock` refreshes it, `make test-latest` tries the newest versions
# that pyproject.toml's ranges allow (docs/development.md).
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or run make PYTHON=python3)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install -qq --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The newest versions pyproject.toml's ranges allow, in a venv of their own, on the fast suite:
# the check to run before `make lock`, so an upstream release is seen before users see it.
LATEST ?= .venv-latest
test-latest:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -qq --upgrade pip
	$(LATEST)/bin/python -m pip install -qq --upgrade --upgrade-strategy eager -e '.[all]'
	$(LATEST)/bin/python -m pip list --format=freeze > $(LATEST)/versions.txt
	@$(LATEST)/bin/python -c "import sys; from importlib.metadata import version as v; \
	  print('newest allowed:', ', '.join(f'{p} {v(p)}' for p in sys.argv[1:]))" \
	  apache-beam prefect pyarrow numpy scipy pydantic
	$(LATEST)/bin/python -m pytest $(TEST_OPTS) -m 'not slow and not browser'

# Refreshes requirements.lock from pyproject.toml's ranges (every extra but the benchmark peers',
# with hashes, for every platform), with uv from PyPI in the project venv. Run `make test-latest`
# first; commit the lock with what changed (docs/development.md).
lock: $(STAMP)
	$(PY) -m pip install -qq uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra all --universal --python-version 3.11 \
	  --generate-hashes --no-emit-index-url --no-emit-find-links --upgrade -o requirements.lock

# The apache-beam version of the lock: the Dockerfile's BEAM_VERSION (`make image`).
BEAM_VERSION = $(shell sed -n 's/^apache-beam==\([^ ;]*\).*/\1/p' requirements.lock)
beam-version:
	@echo $(BEAM_VERSION)

IMAGE_TARGET ?= worker
IMAGE ?= divmon-$(IMAGE_TARGET)
image:
	docker build --target $(IMAGE_TARGET) --build-arg BEAM_VERSION=$(BEAM_VERSION) -t $(IMAGE) .

# The README's two commands on a fresh clone of HEAD in a temporary folder, with no pip cache.
fresh-clone:
	bash .ci/fresh-clone

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
	  tests/flows/monitor/test_state.py tests/flows/cli/test_serve.py::test_sigkilled_divmon_run_leaves_no_prefect_server_behind

bench: $(STAMP)
	$(PIP) install -qq -e '.[all,bench]'
	$(PY) -m benchmarks

# Peers in venvs of their own (pyproject extras bench-<peer>; a failed install is skipped by the
# benchmark with a message). TFDV needs Python 3.11 and may not install offline.
bench-peers:
	@for peer in evidently whylogs tfdv; do \
	  test -x .venv-$$peer/bin/python || $(PYTHON) -m venv .venv-$$peer; \
	  .venv-$$peer/bin/pip install -qq --upgrade pip; \
	  $(PY) -c "import tomllib; \
	    print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench-'+'$$peer']))" \
	    > .venv-$$peer/requirements.txt; \
	  .venv-$$peer/bin/pip install -qq -r .venv-$$peer/requirements.txt \
	    || { echo "$$peer: install failed; bench_peers will skip it"; rm -rf .venv-$$peer; }; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check divtransforms pipelines flows tests benchmarks
	$(VENV)/bin/ruff format --check divtransforms pipelines flows tests benchmarks
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .prefect build *.egg-info .pytest_cache .hypothesis
