# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates its own virtual environment on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench serve clean services

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aiecs-tracing demo $(ARGS)

serve: $(STAMP)
	$(BIN)/aiecs-tracing serve $(ARGS)

services:
	bash scripts/ensure_services.sh

test: $(STAMP) services
	bash scripts/ensure_chromium.sh || true
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) build *.egg-info
