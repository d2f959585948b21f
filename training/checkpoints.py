"""Which checkpoint a run resumes from: the newest readable one, never a silent restart.

`tf.train.latest_checkpoint` trusts the `checkpoint` state file: garbage there reads as "no
checkpoint" (the run restarted at step 0 and deleted its intact ones), and a damaged newest
checkpoint failed every rerun. Here the `ckpt-<step>` files themselves decide: the newest one
whose every tensor reads is chosen, broken newer ones are set aside in `broken/`, the state file is
rewritten, and what a killed save left behind (`*_temp` folders) is removed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

_INDEX = re.compile(r"ckpt-(\d+)\.index")
BROKEN = "broken"


class CheckpointStateError(RuntimeError):
    """Checkpoints exist but none can be read (one line, with what to do)."""


def clean_leftovers(ckpt_dir: Path) -> int:
    """Remove the temporary folders of saves that were killed half-way; returns how many."""
    leftovers = [p for p in ckpt_dir.glob("*_temp*")] if ckpt_dir.is_dir() else []
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(leftovers)


def _prefixes(ckpt_dir: Path) -> list[Path]:
    """`ckpt-<step>` prefixes with an index file, newest (highest step) first."""
    found = [(int(m.group(1)), ckpt_dir / f"ckpt-{m.group(1)}") for p in ckpt_dir.glob("ckpt-*.index")
             if (m := _INDEX.fullmatch(p.name))] if ckpt_dir.is_dir() else []
    return [p for _, p in sorted(found, reverse=True)]


def unreadable(prefix: Path) -> str | None:
    """Why a checkpoint cannot be restored (its first error), or None when every tensor reads."""
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # TF raises several types for truncated or foreign files
        return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return None


def _set_aside(prefix: Path) -> Path:
    target = prefix.parent / BROKEN
    target.mkdir(exist_ok=True)
    for path in prefix.parent.glob(prefix.name + ".*"):
        path.replace(target / path.name)
    return target


def resume_point(ckpt_dir: Path, log: Callable[[str], None], chief: bool = True) -> str | None:
    """The checkpoint to restore (a prefix), None for a fresh run; broken ones are set aside (chief)."""
    prefixes = _prefixes(ckpt_dir)
    for i, prefix in enumerate(prefixes):
        reason = unreadable(prefix)
        if reason is None:
            if i:
                log(f"note: resuming from {prefix.name}, the newest readable checkpoint "
                    f"(newer ones are unreadable{', kept in ' + str(ckpt_dir / BROKEN) if chief else ''})")
            if chief:  # the state file the CheckpointManager reads, rebuilt from the files
                kept = [str(p) for p in reversed(prefixes[i:])]
                tf.compat.v1.train.update_checkpoint_state(str(ckpt_dir), str(prefix), kept)
            return str(prefix)
        log(f"warning: checkpoint {prefix.name} is unreadable ({reason})")
        if chief:
            _set_aside(prefix)
    if prefixes:
        raise CheckpointStateError(f"no checkpoint in {ckpt_dir} can be read (the unreadable ones are in "
                                   f"{ckpt_dir / BROKEN}); pass another --out to start over")
    return None
