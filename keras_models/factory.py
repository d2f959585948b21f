"""The one place models are built: `create_model` (timm-style), `load_model`, `model_info`.

A name (`rexnet_130`, `rexnet_130.nav_in1k`), an `hf://org/repo` handle or a preset folder is
resolved to an entry and options (sources return data: `hub` a repo's config and weights file,
`presets` a folder's config and weights), the spec is rendered by `spec.build`, the weights are
assigned by `sources.load_weights`, and the build record is stamped once, here.
"""

from __future__ import annotations

import numbers
import os
import zipfile
from pathlib import Path

import keras

from keras_models import hub, presets
from keras_models.cost import spec_cost
from keras_models.models import find_entry, list_models, resolve
from keras_models.registry import BUILD_RECORD, ModelEntry, eval_settings, make_spec, with_tag
from keras_models.sources import load_weights
from keras_models.spec import NetSpec, build
from keras_models.weights import assign

# Options that reach the spec (architecture); everything else goes to `build`.
SPEC_OPTIONS = ("dropout_rate", "drop_path_rate", "drop_connect_rate", "se", "se_ratio")
# Build options the record keeps (input_tensor cannot be written down; name is the model's own)
RECORDED_BUILD_OPTIONS = ("include_top", "input_shape", "pooling", "classifier_activation", "include_preprocessing",
                          "features_only")

__all__ = ["create_from_entry", "create_model", "load_model", "load_preset", "model_info", "same_classes"]


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
        tag = pretrained.tag
    model = build(net, num_classes=num_classes, name=name, **build_options)
    if weights is not None:
        load_weights(model, weights, entry=entry, net=net, tag=tag)
    if find_entry(entry.name) is entry:  # registered: a preset can build it again by name
        _stamp(model, entry, tag, num_classes, spec_options, build_options)
    return model


def _stamp(model: keras.Model, entry: ModelEntry, tag: str | None, num_classes: int, spec_options: dict | None,
           build_options: dict) -> None:
    """The build record (`registry.build_record` reads it): written here and nowhere else."""
    setattr(model, BUILD_RECORD, {
        "model": entry.name, "tag": tag, "num_classes": num_classes, "spec_options": dict(spec_options or {}),
        "build": {k: v for k, v in build_options.items() if k in RECORDED_BUILD_OPTIONS},
    })


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
    if str(name).startswith(hub.HF_PREFIX):
        return _from_hub(name, weights=weights, num_classes=num_classes, **kwargs)
    if presets.is_preset(name):
        return load_preset(name, weights=weights, num_classes=num_classes, **kwargs)
    entry, default_tag = resolve(name)
    tag = default_tag.tag if default_tag and "." in name else None
    if pretrained and weights is None:
        weights = "imagenet"
    spec_options = _spec_options(kwargs)
    num_classes = same_classes(kwargs.pop("classes", None), num_classes)
    return create_from_entry(entry, weights=weights, tag=tag, num_classes=num_classes, spec_options=spec_options,
                             **kwargs)


def _spec_options(kwargs: dict) -> dict:
    """Takes the architecture options out of `kwargs` (what is left goes to `build`)."""
    return {k: kwargs.pop(k) for k in SPEC_OPTIONS if k in kwargs}


def _brings_own_weights(where: str, kwargs: dict) -> None:
    """A Hub repo or a preset carries its weights: `weights=` other than None/"imagenet" is one line."""
    kwargs.pop("pretrained", None)
    if kwargs.pop("weights", None) not in (None, "imagenet"):
        raise ValueError(f"{where} brings its own weights: drop weights=")


def _from_hub(handle: str, *, num_classes: int | None = None, **kwargs) -> keras.Model:
    """`hf://timm/rexnet_130.nav_in1k`: the repo's architecture with its weights (a timm repo, or a
    keras-models preset pushed to the Hub); `num_classes` other than the checkpoint's keeps the
    backbone and starts a new classifier."""
    repo, revision = hub.parse(handle)
    config = hub.read_config(repo, revision)
    if hub.is_preset_config(config):  # pushed with --format preset: a preset folder on the Hub
        return load_preset(presets.from_hub(repo, revision), num_classes=num_classes, **kwargs)
    architecture = config["architecture"].split(".")[0]
    entry = find_entry(architecture)
    if entry is None:
        raise hub.HubError(f"hf://{repo} is a {architecture}, which keras-models does not build "
                           "(see `keras-models list`)")
    _brings_own_weights(handle, kwargs)
    tag = hub.pretrained_from_config(config)
    spec_options = _spec_options(kwargs)
    net = with_tag(make_spec(entry, spec_options), tag)
    classes = same_classes(kwargs.pop("classes", None), num_classes if num_classes is not None else tag.num_classes)
    model = build(net, num_classes=classes, **kwargs)
    load_weights(model, str(hub.weights_file(repo, revision)), entry=entry, net=net, source="timm")
    known = any(t.tag == tag.tag for t in entry.tags)  # a registry tag: a preset rebuilds it by name
    _stamp(model, entry, tag.tag if known else None, classes, spec_options, kwargs)
    return model


def load_preset(preset_dir: str | os.PathLike, **overrides) -> keras.Model:
    """`create_model(dir)`: build what the preset says and load its weights (`num_classes` other
    than the preset's starts a new classifier on its backbone)."""
    config, _, _ = presets.read_preset(preset_dir)
    weights = str(Path(os.fspath(preset_dir)).expanduser() / presets.WEIGHTS)
    _brings_own_weights(str(preset_dir), overrides)
    options = {**config.get("build", {}), **config.get("spec_options", {})}
    name = config["model"] + (f".{config['tag']}" if config.get("tag") else "")
    classes = overrides.pop("num_classes", None) or config["num_classes"]
    options.update(overrides)
    if classes == config["num_classes"]:
        model = create_model(name, num_classes=classes, **options)
        load_weights(model, weights)
        return model
    source = create_model(name, num_classes=config["num_classes"], **options)
    load_weights(source, weights)
    model = create_model(name, num_classes=classes, **options)
    named = {layer.name: [(w.path, keras.ops.convert_to_numpy(w), "id") for w in layer.weights]
             for layer in source.layers if layer.weights}
    assign(model, named, new_head_ok=True)
    return model


def same_classes(classes: int | None, num_classes: int | None) -> int:
    """keras.applications' `classes` and timm's `num_classes` are one setting: both given must agree."""
    if classes is not None and num_classes is not None and classes != num_classes:
        raise ValueError(f"classes={classes} and num_classes={num_classes} disagree: pass one of them")
    value = num_classes if num_classes is not None else (classes if classes is not None else 1000)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:  # numpy's ints too
        raise ValueError(f"num_classes must be a whole number >= 1; got {value!r}")
    return int(value)


def load_model(path, **kwargs) -> keras.Model:
    """`keras.models.load_model`; plain `keras.saving.load_model` works as well once `keras_models`
    is imported (it registers this package's layers)."""
    file = Path(os.fspath(path)).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    if file.suffix == ".keras" and not zipfile.is_zipfile(file):
        raise ValueError(f"{file} is not a readable .keras file: it is truncated or damaged (not a zip archive)")
    return keras.models.load_model(file, **kwargs)


def model_info(name: str) -> dict:
    """Input size, crop_pct, interpolation, mean/std, params, MACs and published accuracy of a name
    or `name.tag` (a bare name: its default tag's, like timm's pretrained_cfg)."""
    entry, tag, net, crop, interpolation = eval_settings(name)
    size = net.default_size
    classes = tag.num_classes if tag else 1000
    cost = spec_cost(net, size, classes)  # from the block table: nothing is built
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
        "params": cost.trainable,
        "params_with_bn_stats": cost.params,
        "macs": cost.macs,
        "top1": tag.top1 if tag else entry.top1,
        "top5": tag.top5 if tag else entry.top5,
        "license": tag.license if tag else None,
        "weights": tag.where() if tag else None,
        "hf_hub_id": tag.hf_hub_id if tag else None,
    }
