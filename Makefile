# Two commands on a fresh machine: `make demo` and `make test`. Both (re)create .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint bench venv clean

$(STAMP): requirements.txt setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# Trains ReXNet 1.0x from scratch on the bundled digits (about 4.5 min on 2 CPU cores), scores
# best.weights.h5 again from the files alone, exports it as the next version in saved_models/
# (SavedModel for TF Serving, float32 and int8 TFLite, each measured against Keras; about 1.5 min)
# and verifies that version in a fresh process (REST and gRPC on 127.0.0.1; about 40 s), ending
# with the export table.
demo: venv
	rm -rf runs/demo
	$(BIN)/keras-models train --model rexnet_100 --data digits --epochs 25 --out runs/demo
	$(BIN)/keras-models eval --weights runs/demo/best.weights.h5
	$(BIN)/keras-models export --weights runs/demo/best.weights.h5 --formats saved_model,tflite \
		--tflite-quant float32,int8 --out saved_models
	$(BIN)/keras-models verify saved_models/rexnet_100

lint: venv
	$(BIN)/ruff check keras_models training benchmarks tests

# The fast tier for every edit: ruff + every test not marked `slow` (tests/conftest.py), under 2 min.
check: venv lint
	$(BIN)/python -m pytest -m "not slow"

# Everything: both tiers (README and CI), in TEST_WORKERS processes, a test file each at a time
# (its module fixtures built once). Most of the suite runs on one thread (model building, tracing,
# TFLite conversion, child processes), so two workers on 2 cores take ~0.55x the serial time.
TEST_WORKERS ?= 2
test: venv lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Speed against the peers (keras.applications in-process, timm/PyTorch in a child), results and
# charts into benchmarks/results/. Installs PyTorch + timm (requirements-bench.txt) first.
bench: venv
	$(BIN)/python -m pip install -q -r requirements-bench.txt
	BIN=$(BIN) benchmarks/run.sh

clean:
	rm -rf $(VENV) .pytest_cache
