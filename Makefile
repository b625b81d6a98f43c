# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_ARGS ?=
DEMO_DB ?= sqlite:///cerebelum-demo.db

.PHONY: install chromium demo test lint typecheck unit bench bench-extra clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) chromium

# Debian's Chromium, driven headless by the web console's browser tests (Playwright never downloads a browser).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: $(STAMP)
	$(BIN)/cerebelum --db $(DEMO_DB) run examples/order/workflow.json \
	    --handlers examples/order/handlers.py --input @examples/order/input.json

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy src

# The suite in two processes, one per core: the tests that spawn CLI and worker
# processes (faults, e2e through the CLI) beside the in-process ones (unit,
# integration, hostile, HTTP through ASGI, browser). Each process has its own
# PostgreSQL database; the first's report is printed when the second is done,
# and either failing fails the target. The PostgreSQL restart test runs last,
# alone: it takes the server away from everything else.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider
OUTAGE := tests/faults/test_database_outage.py
test: lint typecheck chromium
	@$(PYTEST) tests/faults tests/e2e --ignore=$(OUTAGE) --ignore-glob='tests/e2e/test_http_*' > .pytest-processes.log 2>&1 & pid=$$!; \
	$(PYTEST) tests/unit tests/integration tests/hostile tests/browser tests/e2e/test_http_*.py; inproc=$$?; \
	wait $$pid; procs=$$?; echo "== tests/faults tests/e2e (CLI and processes)"; cat .pytest-processes.log; rm -f .pytest-processes.log; \
	$(PYTEST) $(OUTAGE); outage=$$?; \
	test $$inproc -eq 0 -a $$procs -eq 0 -a $$outage -eq 0

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The performance suite against DBOS and the database floor (docs/performance.md):
# prints one table, writes bench/results/perf.json. Needs the PostgreSQL of `make test`.
# make bench BENCH_ARGS='--quick --only sqlite' for a short run.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_perf.py $(BENCH_ARGS)

# The narrower benchmarks: CEL candidates, determinism, worker pool, memory, SSE delivery,
# signal latency, children, queues, schedules (most need the PostgreSQL of `make test`).
# bench/bench_ab.py compares commits (docs/performance.md, session 6).
bench-extra: $(STAMP)
	$(BIN)/python bench/cel_candidates.py
	$(BIN)/python bench/bench_determinism.py
	$(BIN)/python bench/bench_workers.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_sse.py
	$(BIN)/python bench/bench_signals.py
	$(BIN)/python bench/bench_children.py
	$(BIN)/python bench/bench_queues.py
	$(BIN)/python bench/bench_schedules.py

clean:
	rm -rf $(VENV) cerebelum-demo.db* .pytest_cache .mypy_cache .ruff_cache
