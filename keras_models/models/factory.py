"""`create_model` (timm-style), `model_info`, `load_model`: registry entries into Keras models.

Importing this module imports `keras_models.models` first, which registers every family.
"""

from __future__ import annotations

import inspect

import keras

from keras_models.registry import ModelEntry, get_entry, list_models
from keras_models.spec import NetSpec, build

# Options that reach the spec (architecture); everything else goes to `build`.
SPEC_OPTIONS = ("dropout_rate", "drop_path_rate", "drop_connect_rate", "se", "se_ratio")
RATE_OPTIONS = ("dropout_rate", "drop_path_rate", "drop_connect_rate")  # probabilities in [0, 1)

__all__ = ["create_from_entry", "create_model", "get_entry", "list_models", "load_model", "make_spec", "model_info"]


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


def create_from_entry(
    entry: ModelEntry,
    *,
    weights: str | None = None,
    num_classes: int = 1000,
    name: str | None = None,
    spec_options: dict | None = None,
    net: NetSpec | None = None,
    **build_options,
) -> keras.Model:
    """Build a registered architecture (or `net`, a spec made from it) and load weights
    (None, "imagenet" or a path)."""
    net = net or make_spec(entry, spec_options)
    if weights == "imagenet" and not entry.pretrained:
        twins = [n for n in list_models(f"*{entry.name}", pretrained=True) if n != entry.name]
        hint = f" ({', '.join(twins)} has them)" if twins else ""
        raise ValueError(
            f"no published ImageNet weights are known for {entry.name!r}{hint}; "
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
    num_classes: int | None = None,
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
    num_classes = same_classes(kwargs.pop("classes", None), num_classes)
    return create_from_entry(entry, weights=weights, num_classes=num_classes, spec_options=spec_options, **kwargs)


def same_classes(classes: int | None, num_classes: int | None) -> int:
    """keras.applications' `classes` and timm's `num_classes` are one setting: both given must agree."""
    if classes is not None and num_classes is not None and classes != num_classes:
        raise ValueError(f"classes={classes} and num_classes={num_classes} disagree: pass one of them")
    value = num_classes if num_classes is not None else (classes if classes is not None else 1000)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"num_classes must be a whole number >= 1; got {value!r}")
    return value


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
    net = entry.make_spec()
    size = net.default_size
    model = build(net, input_shape=(size, size, 3), include_preprocessing=False, classifier_activation=None)
    return {
        "name": entry.name,
        "family": entry.family,
        "input_size": (size, size, 3),
        "crop_pct": entry.crop_pct,
        "interpolation": entry.interpolation,
        "renders": net.style.describe(),
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
