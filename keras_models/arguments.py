"""Command-line argument types every subcommand shares, and a parser whose errors are one line.

A bad value is refused by argparse itself, before TensorFlow starts, as
`keras-models: error: argument --top: must be a whole number >= 1, got '0'` (exit 2).
"""

from __future__ import annotations

import argparse
import math
import sys

MIN_IMAGE_SIZE = 32  # the nets downsample 32x


class OneLineParser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (`--help` still prints the usage)."""

    def error(self, message: str):
        print(f"keras-models: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def at_least(minimum: int):
    """A whole number >= minimum."""
    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


positive_int = at_least(1)
nonnegative_int = at_least(0)
image_size = at_least(MIN_IMAGE_SIZE)


def fraction(text: str) -> float:
    """A crop fraction in (0, 1]."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], e.g. 0.875, got {text!r}")
    return value


def nonempty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def ints(text: str) -> list[int]:
    """Comma-separated whole numbers >= 1, e.g. 1,8,32."""
    values = [positive_int(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")
    return values


def words(text: str) -> list[str]:
    """A non-empty comma list of names."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return values
