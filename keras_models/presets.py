"""Preset folders in keras-hub's layout: `save_preset(model, dir)` writes one, `read_preset(dir)` reads it back.

A preset is `config.json` (what to build), `model.weights.h5`, `metadata.json` (versions,
parameter count, the weights' sha256) and `preprocessor.json` (the evaluation transform: size,
crop, interpolation, mean/std), plus `labels.txt` when the classes have names. It is written to
a temporary folder and renamed, and a preset whose weights no longer match their sha256 is
refused. `create_model(dir)` (keras_models.factory) builds the model a preset describes.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import warnings
from pathlib import Path

import keras

from keras_models import hub
from keras_models.files import ensure_space, file_digest, owned_temp_prefix, remove_stale, weights_bytes
from keras_models.models import eval_settings, find_entry
from keras_models.registry import build_record
from keras_models.state_dicts import CheckpointError

CONFIG, WEIGHTS, METADATA, PREPROCESSOR, LABELS = (
    "config.json", "model.weights.h5", "metadata.json", "preprocessor.json", "labels.txt")


def from_hub(repo: str, revision: str | None = None) -> Path:
    """A preset pushed to the Hub (`push --format preset`), downloaded and verified: its local folder."""
    return hub.snapshot(repo, (CONFIG, WEIGHTS, METADATA), (PREPROCESSOR, LABELS), revision)


def is_preset(name: str | os.PathLike) -> bool:
    """Whether `name` means a preset folder rather than a registry name: written as a path (`./x`,
    `~/x`, `a/b`, a PathLike) and a folder; or a bare word no registry name matches whose folder
    holds a preset's config.json. A registry name stays one (a warning says so) even where a
    folder of that name is in the working directory: a run's `--out rexnet_100` hides nothing."""
    text = os.fspath(name)
    if isinstance(name, os.PathLike) or text.startswith((".", "~")) or os.sep in text or "/" in text:
        return Path(text).expanduser().is_dir()
    holds_preset = (Path(text) / CONFIG).is_file()
    if find_entry(text) is not None:
        if holds_preset:
            warnings.warn(f"{text!r} is taken as the registry name; for the preset folder of that name write "
                          f"./{text}", stacklevel=3)
        return False
    return holds_preset


def save_preset(model: keras.Model, preset_dir: str | os.PathLike, *, labels: list[str] | None = None,
                crop_pct: float | None = None, interpolation: str | None = None) -> Path:
    """Write `model` as a preset folder (replacing nothing: the folder must not exist yet)."""
    config = build_record(model)
    target = Path(os.fspath(preset_dir)).expanduser()
    if target.exists():
        raise FileExistsError(f"{target} already exists: choose a new preset folder")
    if labels is not None and len(labels) != config["num_classes"]:
        raise ValueError(f"{len(labels)} labels for {config['num_classes']} classes")
    name = config["model"] + (f".{config['tag']}" if config.get("tag") else "")
    _, tag, net, default_crop, default_interp = eval_settings(name)
    size = model.input_shape[1] or net.default_size
    target.parent.mkdir(parents=True, exist_ok=True)
    ensure_space(target.parent, weights_bytes(model), f"preset {target.name}")
    remove_stale(target.parent, target.name)
    staging = target.parent / f"{owned_temp_prefix(target.name)}{os.getpid()}"
    staging.mkdir()
    try:
        model.save_weights(staging / WEIGHTS)
        _write_json(staging / CONFIG, {"module": "keras_models", "class_name": "create_model",
                                       "registered_name": "keras_models>create_model", "config": config})
        _write_json(staging / PREPROCESSOR, {
            "image_size": [size, size], "crop_pct": crop_pct or default_crop,
            "interpolation": interpolation or default_interp, "input_range": [0, 255],
            "crop_mode": tag.crop_mode if tag and crop_pct is None else "center",
            "mean": [m * 255 for m in net.mean], "std": [s * 255 for s in net.std],
        })
        _write_json(staging / METADATA, {
            "keras_version": keras.__version__, "keras_models_version": _version(),
            "parameter_count": model.count_params(), "weights_sha256": file_digest(staging / WEIGHTS),
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"), "tasks": ["ImageClassifier"],
        })
        if labels is not None:
            (staging / LABELS).write_text("".join(f"{label}\n" for label in labels))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_preset(preset_dir: str | os.PathLike) -> tuple[dict, dict, list[str] | None]:
    """(build config, preprocessor config, labels) of a preset, its weights checked."""
    folder = Path(os.fspath(preset_dir)).expanduser()
    for required in (CONFIG, WEIGHTS, METADATA):
        if not (folder / required).is_file():
            raise CheckpointError(f"{folder} is not a keras-models preset: it has no {required}")
    config, metadata = _read_json(folder / CONFIG), _read_json(folder / METADATA)
    if config.get("module") != "keras_models" or not isinstance(config.get("config"), dict):
        raise CheckpointError(f"{folder}/{CONFIG} is not a keras-models preset config "
                              f"(module {config.get('module')!r}); keras-hub presets load with keras_hub")
    if metadata.get("weights_sha256") and file_digest(folder / WEIGHTS) != metadata["weights_sha256"]:
        raise CheckpointError(f"{folder}/{WEIGHTS} does not match the sha256 in {METADATA}: damaged or changed")
    preprocessor = _read_json(folder / PREPROCESSOR) if (folder / PREPROCESSOR).is_file() else {}
    labels = (folder / LABELS).read_text().splitlines() if (folder / LABELS).is_file() else None
    return config["config"], preprocessor, labels


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras-models")
    except PackageNotFoundError:
        return "unknown"


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data
