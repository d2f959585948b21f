"""What a training run leaves beside its weights, read by the library: `config.yaml` (model, class
count, image size, crop) and `labels.txt`, so `predict` and `export` use a run's weights as trained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


class RunFilesError(ValueError):
    """A run's config.yaml or a labels file that cannot be used (one line)."""


@dataclass(frozen=True)
class RunFiles:
    model: str | None = None
    num_classes: int | None = None
    image_size: int | None = None
    crop_pct: float | None = None
    labels: list[str] | None = None


def read_labels(path: str | Path) -> list[str]:
    """Class names, one per line (blank lines ignored)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RunFilesError(f"labels file {path} does not exist")
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not labels:
        raise RunFilesError(f"labels file {path} is empty: one class name per line")
    return labels


def read_run_files(weights: str | Path | None) -> RunFiles:
    """The run beside a weights file (nothing for "imagenet", None, or a file with no run beside it)."""
    if weights in (None, "imagenet", "none"):
        return RunFiles()
    folder = Path(weights).expanduser().parent
    config, labels = folder / "config.yaml", folder / "labels.txt"
    values: dict = {}
    if config.is_file():
        try:
            values = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as e:
            raise RunFilesError(f"{config} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise RunFilesError(f"{config} must hold a mapping of config fields")
    return RunFiles(model=values.get("model"), num_classes=values.get("num_classes"),
                    image_size=values.get("image_size"), crop_pct=values.get("crop_pct"),
                    labels=read_labels(labels) if labels.is_file() else None)


def check_labels(labels: list[str], num_classes: int | None, where: str) -> None:
    if num_classes is not None and len(labels) != num_classes:
        raise RunFilesError(f"{where} lists {len(labels)} classes but the weights have {num_classes}: "
                            "one class name per line, in training order")
