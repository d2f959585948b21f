"""Publishing to the Hugging Face Hub: a timm repo or a keras-models preset, with a model card, in one commit.

timm users share with `push_to_hub`, keras-hub users with `upload_preset`; here
`km.push_to_hub(model, "hf://ORG/NAME")` (or `keras-models push`) writes the folder `save_timm` or
`save_preset` writes, adds a `README.md` model card (architecture, data, metrics and settings of the
run, licence of the starting weights) and uploads it through huggingface_hub in one commit. The
files carry the stamps the loaders check: the Hub's sha256 ETags, the preset's weights sha256 and
the safetensors' architecture.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import keras
import yaml

from keras_models import hub
from keras_models.files import file_digest
from keras_models.models import eval_settings
from keras_models.presets import WEIGHTS as PRESET_WEIGHTS
from keras_models.presets import save_preset
from keras_models.registry import build_record
from keras_models.timm_format import WEIGHTS as TIMM_WEIGHTS
from keras_models.timm_format import save_timm

FORMATS = ("timm", "preset")
# run settings the card reports, in this order
CARD_SETTINGS = ("data", "weights", "epochs", "batch_size", "image_size", "optimizer", "lr", "weight_decay",
                 "label_smoothing", "randaugment", "mixup", "cutmix", "drop_path_rate", "precision", "seed")


def push_to_hub(model: keras.Model, repo: str, *, format: str = "timm", labels: list[str] | None = None,
                run: str | os.PathLike | None = None, crop_pct: float | None = None,
                interpolation: str | None = None, private: bool = False, message: str | None = None) -> str:
    """Publish `model` to `hf://ORG/NAME` (created if absent) as a timm repo (loads in timm and
    in `create_model`) or a preset (`format="preset"`); `run`: the training run folder whose
    config.yaml and metrics.csv the model card reports. Returns the commit's URL."""
    if format not in FORMATS:
        raise ValueError(f"format {format!r}: choose one of {', '.join(FORMATS)}")
    repo_id, revision = hub.parse(repo)
    record = build_record(model)
    with tempfile.TemporaryDirectory(prefix="keras-models-push-") as tmp:
        folder = Path(tmp) / "repo"
        if format == "timm":
            save_timm(model, folder, labels=labels)
        else:
            save_preset(model, folder, labels=labels, crop_pct=crop_pct, interpolation=interpolation)
        weights = folder / (TIMM_WEIGHTS if format == "timm" else PRESET_WEIGHTS)
        (folder / "README.md").write_text(model_card(model, repo_id, format, weights, labels, run))
        return hub.upload(repo_id, folder, private=private, revision=revision,
                          message=message or f"{record['model']} ({format}), published with keras-models")


def model_card(model: keras.Model, repo_id: str, format: str, weights: Path, labels: list[str] | None,
               run: str | os.PathLike | None) -> str:
    """The repo's README.md: metadata block, what the model is, how it was trained, how to load it."""
    record = build_record(model)
    settings, best = _run_summary(Path(run) if run else None)
    name = record["model"] + (f".{record['tag']}" if record.get("tag") else "")
    _, tag, net, _, _ = eval_settings(name)
    started = settings.get("weights") or (f"{name} (ImageNet)" if record.get("tag") else None)
    licence = tag.license if tag and started else None
    classes = int(model.output_shape[-1])
    lines = [
        "---",
        f"library_name: {'timm' if format == 'timm' else 'keras-models'}",
        f"license: {licence or 'other'}",
        "pipeline_tag: image-classification",
        "tags: [image-classification, keras-models" + (", timm]" if format == "timm" else "]"),
        "---",
        "",
        f"# {repo_id}",
        "",
        f"`{record['model']}` ({net.style.describe()}) with {classes} classes, {model.count_params():,} weights, "
        f"input {model.input_shape[1] or net.default_size} px RGB, trained with keras-models (Keras 3).",
        "",
        "## Starting weights",
        "",
        f"{started} (licence: {licence or 'see its source'})" if started else "None: trained from scratch.",
        "",
    ]
    if labels:
        shown = ", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else "")
        lines += ["## Classes", "", shown, ""]
    if settings:
        lines += ["## Training", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {settings[k]} |" for k in CARD_SETTINGS if settings.get(k) is not None]
        lines += [""]
    if best:
        lines += ["## Metrics (held-out split of the run)", "", "| epoch | val top-1 | val top-5 |", "|---|---|---|",
                  f"| {best['epoch']} | {float(best['val_top1']):.2f} | {float(best['val_top5']):.2f} |", ""]
    lines += ["## Use", "", "```python"]
    if format == "timm":
        lines += ["import timm", f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()', ""]
    lines += ["import keras_models as km", f'model = km.create_model("hf://{repo_id}")', "```", "",
              "## Integrity", "", f"`{weights.name}` sha256: `{file_digest(weights)}`", ""]
    return "\n".join(lines)


def _run_summary(run: Path | None) -> tuple[dict, dict | None]:
    """(config.yaml settings, the best epoch's row of metrics.csv) of a training run, if any."""
    if run is None:
        return {}, None
    folder = run if run.is_dir() else run.parent
    settings = {}
    if (folder / "config.yaml").is_file():
        settings = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    best = None
    if (folder / "metrics.csv").is_file():
        with open(folder / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("val_top1")]
        best = max(rows, key=lambda r: float(r["val_top1"])) if rows else None
    return settings, best
