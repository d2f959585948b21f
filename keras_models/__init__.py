"""keras-models: ReXNet and EfficientNet for Keras 3, weight-compatible with their references."""

import importlib
import os
import sys
from typing import TYPE_CHECKING

# Lazy exports (PEP 562): attribute access imports the module that defines the name.
_EXPORTS = {
    **{n: "keras_models.applications" for n in (
        "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
        "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "EfficientNetLite0", "EfficientNetLite1",
        "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4", "EfficientNetV2B0",
        "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S",
        "EfficientNetV2M", "EfficientNetV2L")},
    "ReXNet": "keras_models.applications",
    "PartialResidual": "keras_models.layers",
    "load_model": "keras_models.factory",
    "create_model": "keras_models.factory",
    "list_models": "keras_models.models",
    "model_info": "keras_models.factory",
    "decode_predictions": "keras_models.imagenet",
    "imagenet_classes": "keras_models.imagenet",
    "preprocess_input": "keras_models.imagenet",
    "feature_extractor": "keras_models.spec",
    "feature_taps": "keras_models.spec",
    "inference_model": "keras_models.inference",
    "save_preset": "keras_models.presets",
    "load_preset": "keras_models.factory",
    "save_timm": "keras_models.timm_format",
    "push_to_hub": "keras_models.publish",
}


_SUBMODULES = ("export",)  # TensorFlow-only: imported on first use, `km.export.saved_model(...)`


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_models.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS) + list(_SUBMODULES))


def _cli_process() -> bool:
    """`keras-models ...` or `python -m keras_models`: the CLI silences TensorFlow's start-up
    logging before it imports Keras, on the first command that needs it (`--help` never does)."""
    argv = getattr(sys, "argv", None) or [""]
    return os.path.basename(argv[0]) == "keras-models" or argv[0] == "-m"


if not _cli_process():
    # Registers the custom layers with Keras, so `keras.saving.load_model("m.keras")` works in a
    # new process after `import keras_models`.
    importlib.import_module("keras_models.layers")

if TYPE_CHECKING:
    from keras_models.applications import *  # noqa: F403
    from keras_models.factory import create_model, load_model, load_preset, model_info  # noqa: F401
    from keras_models.imagenet import decode_predictions, imagenet_classes, preprocess_input  # noqa: F401
    from keras_models.inference import inference_model  # noqa: F401
    from keras_models.models import list_models  # noqa: F401
    from keras_models.presets import save_preset  # noqa: F401
    from keras_models.publish import push_to_hub  # noqa: F401
    from keras_models.spec import feature_extractor, feature_taps  # noqa: F401
    from keras_models.timm_format import save_timm  # noqa: F401

__version__ = "0.1.0"

__all__ = [  # noqa: F822
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
    "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "EfficientNetLite0", "EfficientNetLite1",
    "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4", "EfficientNetV2B0",
    "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S", "EfficientNetV2M",
    "EfficientNetV2L", "PartialResidual", "ReXNet", "create_model", "decode_predictions",
    "feature_extractor", "feature_taps", "imagenet_classes", "inference_model", "list_models", "load_model",
    "load_preset", "model_info", "preprocess_input", "push_to_hub", "save_preset", "save_timm",
]
