"""Fixtures and tiers. `tests/unit` is the fast tier (`make check`, marker `unit`); everything else
is marked `integration` (real training, exports, processes) and runs in `make test` with the rest.
Helpers live in `tests/helpers`; reference fixtures in ../shared/fixtures beside the checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import FIXTURES, run_cli

UNIT_DIR = Path(__file__).parent / "unit"


# The longest test files, longest first (`--durations=0` on 2 cores: 610 s down to 185 s), started
# first so that `make test`'s workers (`--dist loadfile --no-loadscope-reorder`: files dealt in
# collection order) end together.
LONGEST_FIRST = ("test_optimize", "test_training", "test_benchmark", "test_export", "test_run_safety",
                 "test_jax_backend", "test_architecture", "test_training_jpeg", "test_presets")


def _start_rank(item) -> int:
    stem = Path(item.fspath).stem
    return LONGEST_FIRST.index(stem) if stem in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items):
    for item in items:
        tier = "unit" if UNIT_DIR in Path(item.fspath).parents else "integration"
        item.add_marker(getattr(pytest.mark, tier))
    items.sort(key=_start_rank)  # stable: the order within a file, and of the rest, is kept


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not (FIXTURES / "README.md").is_file():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (CI has shared/ beside the checkout)")
    return FIXTURES


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, worker_id) -> Path:
    """A real (short) training run on digits, shared by the export, optimize and preset tests (and by
    `make test`'s workers: the first trains it, the others wait and reuse it; ~110 s once):
    best.weights.h5, config.yaml, labels.txt, metrics.csv. Tests read it and write elsewhere."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # this session's, for all its workers
    out, done = shared / "digits_run", shared / "digits_run.done"
    with FileLock(str(shared / "digits_run.lock")):
        if not done.is_file():
            shutil.rmtree(out, ignore_errors=True)  # a worker's run that failed
            r = run_cli("train", "--model", "rexnet_100", "--data", "digits", "--epochs", "4", "--out", str(out))
            assert r.returncode == 0, r.stderr
            done.touch()
    return out
