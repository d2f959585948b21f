"""Back to timm: a Keras model as `config.json` + `model.safetensors` in timm's key names and layouts.

`timm.create_model("hf-hub:ORG/NAME", pretrained=True)` loads such a folder from the Hub, and
`timm.create_model(NAME, pretrained=True, num_classes=N, pretrained_cfg_overlay=dict(file=F, num_classes=N))`
from disk (without num_classes in the overlay timm drops a head of another size than 1000);
`keras_models.create_model("hf://ORG/NAME")` loads it back here. The key map is the one
the converters read with (`weights.source_mapping`), run backwards.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
from safetensors.numpy import save_file

from keras_models.files import owned_temp_prefix, remove_stale
from keras_models.models import eval_settings, find_entry
from keras_models.registry import build_record
from keras_models.spec import rendered_spec
from keras_models.state_dicts import CheckpointError
from keras_models.weights import to_state_dict

CONFIG, WEIGHTS = "config.json", "model.safetensors"
# timm has no module for these families: a checkpoint in its layout could not be built there
NOT_IN_TIMM = ("rexnet_lite_",)


def timm_config(model: keras.Model, labels: list[str] | None = None) -> dict:
    """timm's `config.json` for `model`: architecture, classes, and the pretrained_cfg it evaluates with."""
    record = build_record(model)
    name = record["model"] + (f".{record['tag']}" if record.get("tag") else "")
    entry, tag, net, crop, interpolation = eval_settings(name)
    if entry.name.startswith(NOT_IN_TIMM) or find_entry(entry.name) is None:
        raise ValueError(f"timm has no architecture for {entry.name}: it cannot be written in timm's layout "
                         "(save it as a preset or a .keras file instead)")
    classes = int(model.output_shape[-1])
    if labels is not None and len(labels) != classes:
        raise ValueError(f"{len(labels)} labels for {classes} classes")
    size = model.input_shape[1] or net.default_size
    pretrained_cfg = {
        "tag": record.get("tag") or "keras_models", "input_size": [3, size, size], "interpolation": interpolation,
        "crop_pct": crop, "crop_mode": tag.crop_mode if tag else "center",
        "mean": list(net.mean), "std": list(net.std), "num_classes": classes,
    }
    if tag and tag.license:
        pretrained_cfg["license"] = tag.license
    config = {"architecture": entry.name, "num_classes": classes, "num_features": net.head_ch,
              "global_pool": "avg", "pretrained_cfg": pretrained_cfg}
    if labels is not None:
        config["label_names"] = list(labels)
    return config


def save_timm(model: keras.Model, out_dir: str | os.PathLike, *, labels: list[str] | None = None) -> Path:
    """Write `model` (built by `create_model`, a family constructor or a preset, with its classifier)
    as a timm checkpoint folder; the folder must not exist yet (written aside, then renamed)."""
    config = timm_config(model, labels)
    rendered = rendered_spec(model)
    if rendered is None or rendered[1].get("features_only") or not rendered[1].get("include_top", True):
        raise CheckpointError(f"{model.name} has no classifier as timm builds it: create it with include_top=True "
                              "(a features_only or include_top=False model cannot be written for timm)")
    state_dict = to_state_dict(model, rendered[0], "timm")
    target = Path(os.fspath(out_dir)).expanduser()
    if target.exists():
        raise FileExistsError(f"{target} already exists: choose a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, target.name)
    staging = target.parent / f"{owned_temp_prefix(target.name)}{os.getpid()}"
    staging.mkdir()
    try:
        save_file(state_dict, str(staging / WEIGHTS), metadata={"format": "pt", "architecture": config["architecture"]})
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
