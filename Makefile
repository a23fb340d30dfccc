# The two commands a newcomer needs: `make demo` (an audit end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test

$(BIN)/lilaw-audit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/lilaw-audit

demo: install
	$(BIN)/lilaw-audit demo

test: install
	$(BIN)/pytest -q
