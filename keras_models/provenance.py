"""What a checkpoint says about itself: the architecture it was saved from, so none loads silently wrong.

timm's PyTorch-native EfficientNets (`efficientnet_b0`) and their TF ports (`tf_efficientnet_b0`)
have the same state-dict keys and shapes but other padding and BatchNorm epsilon: converted under
the wrong name, they load without a single error and give other logits. The checkpoint often
names its architecture: timm's `config.json` beside it (`architecture`, or `pretrained_cfg`), a
keras-hub `config.json`, or the safetensors header's metadata. When it does and the name differs
from the model asked for, loading stops in one line naming both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras_models.models  # noqa: F401  (every family registered before names are matched)
from keras_models.registry import find_entry, list_models
from keras_models.state_dicts import CheckpointError


def declared_architecture(path: Path) -> str | None:
    """The registry-style architecture name a checkpoint declares (tag dropped), or None."""
    for name in (_from_config(path.parent / "config.json"), _from_safetensors(path)):
        if name:
            return name.split(".")[0]
    return None


def _from_config(config: Path) -> str | None:
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    cfg = data.get("pretrained_cfg") if isinstance(data.get("pretrained_cfg"), dict) else {}
    for value in (data.get("architecture"), cfg.get("architecture"), data.get("model_name")):
        if isinstance(value, str) and value:
            return value
    return None


def _from_safetensors(path: Path) -> str | None:
    """An `architecture` entry, else the one registered model name the metadata mentions as a word."""
    if path.suffix != ".safetensors":
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
    except Exception:  # an unreadable header is read_checkpoint's error to report
        return None
    if meta.get("architecture"):
        return meta["architecture"]
    text = " ".join(str(v) for v in meta.values())
    named = {n for n in list_models() if re.search(rf"(?<![\w.-]){re.escape(n)}(?![\w-])", text)}
    return named.pop() if len(named) == 1 else None


def check_architecture(path: Path, model: str) -> None:
    """Refuse a checkpoint that declares another architecture than `model`, in one line."""
    declared = declared_architecture(path)
    if declared is None or declared == model:
        return
    entry = find_entry(declared)
    wanted = find_entry(model)
    theirs = f" ({entry.make_spec().style.describe()})" if entry else ", which keras-models does not have"
    ours = f" ({wanted.make_spec().style.describe()})" if wanted else ""
    hint = f"; pass --model {declared}" if entry else ""
    raise CheckpointError(f"{path.name} was saved from {declared}{theirs}, not {model}{ours}{hint}")
