"""Output hygiene: write-then-rename (nothing half-written at the final path), file hashes, quiet C++ logs."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def owned_temp_prefix(name: str) -> str:
    """The prefix of a temporary sibling this process makes for `name`: `.{name}.{pid}.`"""
    return f".{name}.{os.getpid()}."


def remove_stale(folder: Path, name: str) -> int:
    """Remove what killed processes left beside `name` (`.{name}.{pid}.*` of pids no longer running)."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.glob(f".{name}.*.*"):
        pid = path.name[len(name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class NoSpace(OSError):
    """Not enough free space for a file about to be written (one line, nothing written)."""

    exit_code = 1  # the machine's state, not the command line (2)


def disk_full(error: BaseException) -> NoSpace | None:
    """The one-line `NoSpace` for an error that a full disk caused (an OSError or a TensorFlow
    writer's error, "No space left on device"), naming the folder it was writing to; else None."""
    text = str(error)
    if isinstance(error, NoSpace) or not (getattr(error, "errno", None) == errno.ENOSPC
                                          or "No space left on device" in text):
        return None
    paths = re.findall(r"(/[^\s;:'\"]+)", re.sub(r"\{\{.*?\}\}", "", text))  # not TF's op names
    where = f" to {_existing_folder(Path(paths[0]))}" if paths else ""
    return NoSpace(f"the disk filled up while writing{where} (nothing was published there): free some space "
                   "or write elsewhere")


def _existing_folder(path: Path) -> Path:
    """The deepest folder of `path` that still exists (what a failed write cleaned up is gone)."""
    path = path.parent
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def ensure_space(folder: Path, needed_bytes: int, what: str) -> None:
    """Refuse, before writing, when `folder`'s filesystem has less room than `what` needs: HDF5
    (h5py, Keras' `.weights.h5`) crashes the whole process when the disk fills mid-write."""
    folder = _existing_folder(Path(folder) / "file")
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise NoSpace(f"not enough space for {what} in {folder}: it needs about {needed_bytes / 1e6:.1f} MB and "
                      f"{free / 1e6:.1f} MB are free; free some space or write elsewhere")


def h5_bytes(raw_bytes: int) -> int:
    """What an HDF5 file of `raw_bytes` of arrays takes on disk, its own structure included (an upper estimate)."""
    return int(raw_bytes * 1.05) + (1 << 20)


def weights_bytes(model) -> int:
    """What a model's `.weights.h5` takes on disk (`h5_bytes` of its variables)."""
    import numpy as np

    return h5_bytes(sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights))


@contextmanager
def atomic_output(target: Path, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    What an earlier, killed writer of the same target left behind is removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, target.name)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=owned_temp_prefix(target.name), suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):  # mkstemp makes 0600; give the file the permissions open() would
            os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


# What libjpeg itself prints to fd 2 as TensorFlow decodes a damaged JPEG (TF then raises, and the
# file is counted as unreadable): how its error and first-warning lines start, for `filtered_stderr`.
LIBJPEG_NOISE = (b"Improper call to JPEG library in state ", b"Premature end of JPEG file", b"Corrupt JPEG data: ",
                 b"Invalid JPEG file structure: ", b"Not a JPEG file: ", b"Bogus ", b"Unsupported marker type ",
                 b"JPEG datastream contains no image", b"Huffman table 0x", b"Quantization table 0x",
                 b"Input file read error", b"Premature end of input file", b"Unsupported JPEG process",
                 b"Invalid SOS parameters", b"Empty JPEG image")


@contextmanager
def filtered_stderr(noise: tuple[bytes, ...] = LIBJPEG_NOISE) -> Iterator[None]:
    """Pass everything written to fd 2 (Python's and C++'s) through, except whole lines that one of
    `noise` begins: fd 2 becomes a pipe that a small child process (`stderr_filter.py`, no
    TensorFlow) copies to the real stderr. A process, not a thread: C++ code that writes while it
    holds the GIL cannot block it. Off with KERAS_MODELS_DEBUG=1."""
    if os.environ.get("KERAS_MODELS_DEBUG"):
        yield
        return
    sys.stderr.flush()
    copier = subprocess.Popen([sys.executable, "-I", str(Path(__file__).with_name("stderr_filter.py")),
                               *(n.hex() for n in noise)], stdin=subprocess.PIPE, stdout=2)
    saved = os.dup(2)
    os.dup2(copier.stdin.fileno(), 2)
    copier.stdin.close()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes this process's writer: the copier ends when the last one has
        os.close(saved)
        with contextlib.suppress(subprocess.TimeoutExpired):
            copier.wait(timeout=2)  # a child process still holding the pipe keeps it going
