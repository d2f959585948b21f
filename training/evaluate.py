"""`keras-models eval`: a weights file's top-1/top-5 on a dataset's validation split."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from training import data as data_lib
from training.config import ConfigError, TrainConfig


@dataclass
class RunSettings:
    """What a weights file was trained on, read from the run's `config.yaml` and overridable."""

    model: str
    source: data_lib.DataSource
    pipeline: data_lib.Pipeline
    run: TrainConfig | None  # the run's config, when there is one beside the weights

    @property
    def image_size(self) -> int:
        return self.pipeline.image_size

    @property
    def crop_pct(self) -> float:
        return self.pipeline.crop_pct


def run_settings(weights: str | None, *, model: str | None = None, data: str | None = None,
                 image_size: int | None = None, crop_pct: float | None = None, val_split: float | None = None,
                 seed: int | None = None, data_dir: str | None = None) -> RunSettings:
    """Settings not given come from the run's `config.yaml` beside the weights, then the defaults,
    so `eval`/`export --weights runs/x/best.weights.h5` use exactly the split and transform training used."""
    from keras_models.models import get_entry

    if weights and weights != "imagenet" and not Path(weights).expanduser().is_file():
        raise ConfigError(f"weights file {weights} does not exist (e.g. runs/digits/best.weights.h5)")
    run_config = Path(weights).expanduser().parent / "config.yaml" if weights and weights != "imagenet" else None
    run = TrainConfig.from_yaml(run_config) if run_config and run_config.is_file() else None
    model = model or (run.model if run else None)
    if model is None:
        raise ConfigError("--model is needed (no config.yaml beside the weights to read it from)")
    defaults = run or TrainConfig()
    data = data or defaults.data
    same_data = run is not None and data == run.data
    seed = defaults.seed if seed is None else seed
    val_split = defaults.val_split if val_split is None else val_split
    try:
        source = data_lib.load(data, val_split=val_split, seed=seed, data_dir=data_dir or defaults.data_dir)
    except data_lib.DataError as e:
        if not same_data:
            raise
        raise data_lib.DataError(f"{e} (the run trained on {run.data}: if the data moved, pass --data with where it "
                                 "is now)") from None
    entry = get_entry(model)
    image_size = image_size or (run.image_size if same_data else None) or source.defaults.get(
        "image_size", entry.make_spec().default_size)
    crop_pct = crop_pct or (run.crop_pct if same_data else None) or source.defaults.get("crop_pct", entry.crop_pct)
    pipeline = data_lib.Pipeline(image_size=image_size, crop_pct=crop_pct, interpolation=entry.interpolation)
    return RunSettings(model, source, pipeline, run)


def evaluate(*, model: str | None = None, weights: str, data: str | None = None, image_size: int | None = None,
             crop_pct: float | None = None, batch_size: int = 128, val_split: float | None = None,
             seed: int | None = None, data_dir: str | None = None, verbose: bool = True) -> dict:
    """Top-1/top-5 of a weights file on a validation split (settings as `run_settings` resolves them)."""
    from keras_models.factory import create_model
    from training.trainer import DistributedEval

    settings = run_settings(weights, model=model, data=data, image_size=image_size, crop_pct=crop_pct,
                            val_split=val_split, seed=seed, data_dir=data_dir)
    model, source, pipeline = settings.model, settings.source, settings.pipeline
    image_size, crop_pct = settings.image_size, settings.crop_pct
    net = create_model(model, weights=weights, num_classes=source.num_classes,
                       input_shape=(image_size, image_size, 3), classifier_activation=None)

    started = time.perf_counter()
    metrics = DistributedEval(tf.distribute.get_strategy(), net, pipeline, source, batch_size)()
    seconds = time.perf_counter() - started
    result = {"model": model, "weights": str(weights), "data": source.name, "image_size": image_size,
              "crop_pct": crop_pct, "top1": metrics["val_top1"], "top5": metrics["val_top5"],
              "loss": metrics["val_loss"], "images": metrics["val_images"], "bad_files": metrics["val_bad_files"],
              "images_per_sec": metrics["val_images"] / seconds}
    if verbose:
        skipped = f", {result['bad_files']} unreadable skipped" if result["bad_files"] else ""
        print(f"{model} {weights} on {source.name} ({result['images']} val images{skipped}, {image_size}px, "
              f"crop {crop_pct}): top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  "
              f"loss {result['loss']:.4f}  {result['images_per_sec']:.0f} img/s")
    return result
