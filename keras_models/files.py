"""Output hygiene: write-then-rename (nothing half-written at the final path), quiet C++ logs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(target: Path, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):  # mkstemp makes 0600; give the file the permissions open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def quiet_stderr(enabled: bool = True) -> Iterator[None]:
    """Hide what C++ code (TensorFlow start-up, the TFLite converter) writes to fd 2.

    Set KERAS_MODELS_DEBUG=1 to see it.
    """
    if not enabled or os.environ.get("KERAS_MODELS_DEBUG"):
        yield
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
