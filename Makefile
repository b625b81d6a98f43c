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

test: lint typecheck chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The performance suite against DBOS and the database floor (docs/performance.md):
# prints one table, writes bench/results/perf.json. Needs the PostgreSQL of `make test`.
# make bench BENCH_ARGS='--quick --only sqlite' for a short run.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_perf.py $(BENCH_ARGS)

# The older, narrower benchmarks (CEL candidates, determinism, worker pool, memory, SSE delivery; the last needs PostgreSQL).
bench-extra: $(STAMP)
	$(BIN)/python bench/cel_candidates.py
	$(BIN)/python bench/bench_determinism.py
	$(BIN)/python bench/bench_workers.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_sse.py

clean:
	rm -rf $(VENV) cerebelum-demo.db* .pytest_cache .mypy_cache .ruff_cache
