"""ImageNet-1k class names (shipped, no network), `decode_predictions` and `preprocess_input`."""

from __future__ import annotations

import numbers
from functools import lru_cache
from importlib import resources

import numpy as np


@lru_cache(maxsize=1)
def imagenet_classes() -> list[tuple[str, str]]:
    """[(wnid, name)] for the 1000 ImageNet-1k classes in the standard index order."""
    text = resources.files("keras_models").joinpath("data/imagenet_classes.tsv").read_text()
    rows = [line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return [(wnid, names.split(",")[0].strip()) for wnid, names in rows]


def decode_predictions(preds, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Like keras.applications: (N, 1000) scores -> per image [(wnid, name, score)] best first."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(f"decode_predictions expects (samples, 1000) ImageNet scores, got {preds.shape}")
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:
        raise ValueError(f"top must be a whole number >= 1, e.g. 5; got {top!r}")
    classes = imagenet_classes()
    out = []
    for row in preds:
        idx = np.argsort(row)[::-1][:top]
        out.append([(classes[i][0], classes[i][1], float(row[i])) for i in idx])
    return out


def preprocess_input(x, model: str = "rexnet_100"):
    """Normalise [0, 255] RGB the way `model` expects, for models built with
    `include_preprocessing=False`. (With the default `include_preprocessing=True` the model
    does this itself and you feed raw pixels.)"""
    from keras_models.models import get_entry

    net = get_entry(model).make_spec()
    x = np.asarray(x, dtype="float32") / 255.0
    return (x - np.asarray(net.mean, "float32")) / np.asarray(net.std, "float32")
