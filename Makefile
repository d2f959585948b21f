# Two commands on a fresh machine: `make demo` and `make test`. Both (re)create .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): requirements.txt setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/keras-models predict --model efficientnet_lite0 --weights imagenet --crop-pct 1.0 examples/photos/*.jpg

lint: venv
	$(BIN)/ruff check keras_models tests

test: venv lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
