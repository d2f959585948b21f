"""Watchdog process for a multi-worker start: `python -m training.cluster_watch PID TIMEOUT PEERS`.

While `MultiWorkerMirroredStrategy()` waits for the other workers, TensorFlow holds the GIL in C++:
no thread of the trainer's own can print or stop anything. This small process can. It says after 2 s, then
every 30 s, who is awaited; after TIMEOUT seconds it prints one line and ends the trainer; if the trainer
dies first (Ctrl-C, SIGTERM) it says so. The trainer writes "joined" to its stdin once the cluster
is up, and it exits quietly.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

FIRST_NOTE_S, NOTE_EVERY_S = 2.0, 30.0


def main(pid: int, timeout_s: float, peers: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the trainer too: it reports that
    started = time.monotonic()
    noted = started - NOTE_EVERY_S + FIRST_NOTE_S
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if ready:
            line = sys.stdin.readline()
            if line.strip() == "joined":
                return 0
            if not line:  # the trainer is gone without joining
                _say(f"interrupted while waiting {time.monotonic() - started:.0f} s for the other workers ({peers})")
                return 0
        waited = time.monotonic() - started
        if waited > timeout_s:
            _say(f"the other workers ({peers}) did not all join within {timeout_s:g} s: start the same command on "
                 f"each with its own TF_CONFIG task index, or raise --worker-timeout")
            _end(pid)
            return 0
        if time.monotonic() - noted >= NOTE_EVERY_S:
            noted = time.monotonic()
            print(f"waiting for the other workers ({peers}): {waited:.0f} s of {timeout_s:g} (--worker-timeout)",
                  file=sys.stderr, flush=True)


def _say(message: str) -> None:
    print(f"keras-models: error: {message}", file=sys.stderr, flush=True)


def _end(pid: int) -> None:
    """SIGTERM (the trainer waits with the default action: exit 143), SIGKILL if it outlives that."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(2.0)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]))
