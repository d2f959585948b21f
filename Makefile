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

# Trains ReXNet 1.0x from scratch on the bundled digits (about 4.5 min on 2 CPU cores), then scores
# best.weights.h5 again from the files alone.
demo: venv
	rm -rf runs/demo
	$(BIN)/keras-models train --model rexnet_100 --data digits --epochs 25 --out runs/demo
	$(BIN)/keras-models eval --weights runs/demo/best.weights.h5

lint: venv
	$(BIN)/ruff check keras_models training tests

test: venv lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
