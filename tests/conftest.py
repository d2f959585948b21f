"""Shared test helpers. Reference fixtures live in ../shared/fixtures beside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
PHOTOS = ROOT / "examples" / "photos"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not (FIXTURES / "README.md").is_file():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (CI has shared/ beside the checkout)")
    return FIXTURES


def load_fixture(fixtures: Path, stem: str):
    data = np.load(fixtures / f"{stem}.npz")
    return data["x"], data["logits"]


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "keras_models", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT,
    )
