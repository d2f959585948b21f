"""Copies stdin to stdout without the lines that one of the given byte strings (hex, argv) begins.

Run as a child process by `files.filtered_stderr`, with the standard library only: the CLI's fd 2
is its stdin, the real stderr its stdout.
"""

from __future__ import annotations

import os
import re
import sys


def copy_without(read_end: int, out: int, noise: tuple[bytes, ...]) -> None:
    """Copy read_end to out as it comes, without the lines that one of `noise` begins, wherever it
    begins (libjpeg writes straight after a progress bar's text); the unfinished tail is held back
    from where such a line may be beginning."""
    lines = re.compile(rb"(?:%s)[^\n]*\n" % b"|".join(map(re.escape, noise)))
    held = b""
    while chunk := os.read(read_end, 65536):
        text = lines.sub(b"", held + chunk)
        cut = noise_may_begin(text, noise)
        os.write(out, text[:cut])
        held = text[cut:]
    os.write(out, held)


def noise_may_begin(text: bytes, noise: tuple[bytes, ...]) -> int:
    """Where, in the text after its last newline, a line of `noise` may have begun (len(text): nowhere)."""
    tail = text.rfind(b"\n") + 1
    cut = len(text)
    for start in noise:
        if (found := text.find(start, tail)) >= 0:
            cut = min(cut, found)
        cut = min([cut] + [len(text) - k for k in range(1, len(start)) if text.endswith(start[:k])])
    return cut


if __name__ == "__main__":
    copy_without(0, 1, tuple(bytes.fromhex(h) for h in sys.argv[1:]))
