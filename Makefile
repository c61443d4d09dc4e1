# The two commands of the README: `make demo` and `make test`. Both create .venv on first use and
# reuse it afterwards (the stamp file is redone only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

.PHONY: demo test test-fast lint format venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (log: $(VENV)/install.log)"
	@# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	@$(PY) -m pip install $(TORCH) > $(VENV)/install.log 2>&1 || (tail -n 30 $(VENV)/install.log; exit 1)
	@$(PY) -m pip install -e '.[dev,server]' >> $(VENV)/install.log 2>&1 || (tail -n 30 $(VENV)/install.log; exit 1)
	@touch $(STAMP)

# Start the local tracking server, then train -> promote -> serve -> predict through `mlflow run`.
demo: $(STAMP)
	$(VENV)/bin/mlops demo

# The whole suite, slow end-to-end tests included.
test: $(STAMP)
	$(VENV)/bin/pytest

# Everything but the slow end-to-end tests, for a quick loop while coding.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
