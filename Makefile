# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_DB ?= sqlite:///cerebelum-demo.db

.PHONY: install demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cerebelum --db $(DEMO_DB) run examples/order/workflow.json \
	    --handlers examples/order/handlers.py --input @examples/order/input.json

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/cel_candidates.py
	$(BIN)/python bench/bench_determinism.py
	$(BIN)/python bench/bench_workers.py

clean:
	rm -rf $(VENV) cerebelum-demo.db* .pytest_cache .mypy_cache .ruff_cache
