"""Fixtures and tiers. Tiers go by cost, not by folder: a test that trains, exports, starts a process
or a server, or builds several networks is marked `slow` (`@pytest.mark.slow` where it is written, or
by using a fixture in SLOW_FIXTURES); the rest is the fast tier, `make check` (`-m "not slow"`), which
lists any of its tests that took longer than FAST_LIMIT_S so they get marked. `make test` runs all.
Helpers live in `tests/helpers`; reference fixtures in ../shared/fixtures beside the checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import FIXTURES, run_cli

# Fixtures that train, export, serve or build several models: every test that uses one is slow.
SLOW_FIXTURES = {"digits_run", "run", "exported", "resumed_run", "preempted", "resumed", "finished", "saved",
                 "service", "tuned"}
FAST_LIMIT_S = 3.0

# The longest test files, longest first (`--durations=0` on 2 cores: 490 s down to 140 s), started
# first so that `make test`'s workers (`--dist loadfile --no-loadscope-reorder`: files dealt in
# collection order) end together.
LONGEST_FIRST = ("test_optimize", "test_training", "test_data_service", "test_benchmark", "test_training_jpeg",
                 "test_export", "test_run_safety", "test_jax_backend", "test_keras_files", "test_architecture")


def _start_rank(item) -> int:
    stem = Path(item.fspath).stem
    return LONGEST_FIRST.index(stem) if stem in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=_start_rank)  # stable: the order within a file, and of the rest, is kept


_fast_but_long: list[tuple[float, str]] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and "slow" not in report.keywords and report.duration > FAST_LIMIT_S:
        _fast_but_long.append((report.duration, report.nodeid))


def pytest_terminal_summary(terminalreporter):
    if _fast_but_long:
        terminalreporter.section(f"fast-tier tests over {FAST_LIMIT_S:.0f} s: mark them @pytest.mark.slow")
        for seconds, nodeid in sorted(_fast_but_long, reverse=True):
            terminalreporter.write_line(f"{seconds:6.1f}s {nodeid}")


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
