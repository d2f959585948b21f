"""One run per `--out` at a time: the chief holds an exclusive lock on `OUT/.lock` while it trains.

The lock is the kernel's (`flock`): it goes with the process, so a killed or crashed run never
leaves it behind, and a second run into the same folder is refused in one line naming the holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_FILE = ".lock"


class RunInUse(RuntimeError):
    """Another process is training into this --out (one line)."""


def hold_run_lock(out: Path) -> IO:
    """Lock `out` for this process (created if absent); keep the returned file open while training."""
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunInUse(f"{out} is in use by another training run ({holder}): wait for it to finish, "
                       "or pass another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle
