"""`create_model` (timm-style), `model_info`, `load_model`: registry entries into Keras models.

Importing this module imports `keras_models.models` first, which registers every family.
"""

from __future__ import annotations

import dataclasses
import inspect

import keras

from keras_models.registry import ModelEntry, Pretrained, find_entry, get_entry, list_models, resolve
from keras_models.spec import NetSpec, build

# Options that reach the spec (architecture); everything else goes to `build`.
SPEC_OPTIONS = ("dropout_rate", "drop_path_rate", "drop_connect_rate", "se", "se_ratio")
RATE_OPTIONS = ("dropout_rate", "drop_path_rate", "drop_connect_rate")  # probabilities in [0, 1)
# Build options a preset records (input_tensor cannot be written down; name is the model's own)
PRESET_BUILD_OPTIONS = ("include_top", "input_shape", "pooling", "classifier_activation", "include_preprocessing",
                        "features_only")
PRESET_CONFIG_ATTR = "_keras_models_config"

__all__ = ["create_from_entry", "create_model", "eval_settings", "get_entry", "list_models", "load_model", "make_spec",
           "model_info", "with_tag"]


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


def create_from_entry(
    entry: ModelEntry,
    *,
    weights: str | None = None,
    tag: str | None = None,
    num_classes: int = 1000,
    name: str | None = None,
    spec_options: dict | None = None,
    net: NetSpec | None = None,
    **build_options,
) -> keras.Model:
    """Build a registered architecture (or `net`, a spec made from it) and load weights: None,
    "imagenet" (the pretrained `tag`, default timm's default) or a path."""
    net = net or make_spec(entry, spec_options)
    if tag is not None and weights != "imagenet":  # timm: a tag without its weights still evaluates as it
        net = with_tag(net, entry.tag(tag))
    if weights == "imagenet":
        if not entry.tags:
            twins = [n for n in list_models(f"*{entry.name}", pretrained=True, include_tags=False) if n != entry.name]
            hint = f" ({', '.join(twins)} has them)" if twins else ""
            raise ValueError(f"no published ImageNet weights are known for {entry.name!r}{hint}; "
                             f"use weights=None or a converted file (`keras-models convert`).")
        pretrained = entry.tag(tag)
        net = with_tag(net, pretrained)
        if num_classes == 1000 and pretrained.num_classes != 1000:
            num_classes = pretrained.num_classes
    model = build(net, num_classes=num_classes, name=name, **build_options)
    if weights is not None:
        from keras_models.weights import load_weights

        load_weights(model, weights, entry=entry, net=net, tag=tag)
    if find_entry(entry.name) is entry:  # registered: a preset can build it again by name
        used = entry.tag(tag).tag if weights == "imagenet" else tag
        setattr(model, PRESET_CONFIG_ATTR, {
            "model": entry.name, "tag": used, "num_classes": num_classes, "spec_options": dict(spec_options or {}),
            "build": {k: v for k, v in build_options.items() if k in PRESET_BUILD_OPTIONS},
        })
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

    `name`: a registry name, `name.tag` (a timm pretrained tag: `rexnet_130.nav_in1k`; with
    weights="imagenet" or pretrained=True that tag's weights, a bare name takes timm's default
    tag), `hf://org/repo` (a timm repo on the Hugging Face Hub) or a preset folder (`save_preset`).
    Spec options: dropout_rate, drop_path_rate (= drop_connect_rate), se, se_ratio.
    Build options: include_top, input_shape, input_tensor, pooling, classifier_activation,
    include_preprocessing, features_only, name.
    """
    from keras_models import hub, presets

    if str(name).startswith(hub.HF_PREFIX):
        return hub.create(name, weights=weights, num_classes=num_classes, pretrained=pretrained, **kwargs)
    if presets.is_preset(name):
        return presets.load_preset(name, weights=weights, num_classes=num_classes, **kwargs)
    entry, default_tag = resolve(name)
    tag = default_tag.tag if default_tag and "." in name else None
    if pretrained and weights is None:
        weights = "imagenet"
    spec_options = {k: kwargs.pop(k) for k in SPEC_OPTIONS if k in kwargs}
    num_classes = same_classes(kwargs.pop("classes", None), num_classes)
    return create_from_entry(entry, weights=weights, tag=tag, num_classes=num_classes, spec_options=spec_options,
                             **kwargs)


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


def eval_settings(name: str) -> tuple[ModelEntry, Pretrained | None, NetSpec, float, str]:
    """(entry, tag, spec, crop_pct, interpolation) as `name` (bare: its default tag) evaluates."""
    entry, tag = resolve(name)
    net = with_tag(entry.make_spec(), tag)
    crop = tag.crop_pct if tag and tag.crop_pct else entry.crop_pct
    interpolation = tag.interpolation if tag and tag.interpolation else entry.interpolation
    return entry, tag, net, crop, interpolation


def model_info(name: str) -> dict:
    """Input size, crop_pct, interpolation, mean/std, params, MACs and published accuracy of a name
    or `name.tag` (a bare name: its default tag's, like timm's pretrained_cfg)."""
    from keras_models.cost import count_macs, count_params

    entry, tag, net, crop, interpolation = eval_settings(name)
    size = net.default_size
    classes = tag.num_classes if tag else 1000
    model = build(net, input_shape=(size, size, 3), num_classes=classes, include_preprocessing=False,
                  classifier_activation=None)
    return {
        "name": f"{entry.name}.{tag.tag}" if tag else entry.name,
        "architecture": entry.name,
        "family": entry.family,
        "tag": tag.tag if tag else None,
        "tags": [t.tag for t in entry.tags],
        "input_size": (size, size, 3),
        "train_input_size": (tag.train_input_size,) * 2 + (3,) if tag and tag.train_input_size else None,
        "crop_pct": crop,
        "crop_mode": tag.crop_mode if tag else "center",
        "interpolation": interpolation,
        "renders": net.style.describe(),
        "mean": tuple(round(m * 255, 3) for m in net.mean),
        "std": tuple(round(s * 255, 3) for s in net.std),
        "input_range": "RGB in [0, 255] (the model normalises in-graph unless include_preprocessing=False)",
        "num_classes": classes,
        "params": count_params(model, trainable_only=True),
        "params_with_bn_stats": count_params(model),
        "macs": count_macs(model),
        "top1": tag.top1 if tag else entry.top1,
        "top5": tag.top5 if tag else entry.top5,
        "license": tag.license if tag else None,
        "weights": tag.where() if tag else None,
        "hf_hub_id": tag.hf_hub_id if tag else None,
    }
