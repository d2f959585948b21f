"""keras-models: ReXNet and EfficientNet for Keras 3, weight-compatible with their references."""

import importlib
from typing import TYPE_CHECKING

# Lazy exports (PEP 562): `import keras_models.cli` must not start TensorFlow before the CLI
# can silence its start-up logging. First attribute access imports Keras and registers models.
_EXPORTS = {
    **{n: "keras_models.models.efficientnet" for n in (
        "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
        "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "EfficientNetLite0", "EfficientNetLite1",
        "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4", "EfficientNetV2B0",
        "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S",
        "EfficientNetV2M", "EfficientNetV2L")},
    "ReXNet": "keras_models.models.rexnet",
    "PartialResidual": "keras_models.layers",
    "load_model": "keras_models.models",
    "create_model": "keras_models.models",
    "list_models": "keras_models.models",
    "model_info": "keras_models.models",
    "decode_predictions": "keras_models.imagenet",
    "imagenet_classes": "keras_models.imagenet",
    "preprocess_input": "keras_models.imagenet",
    "feature_extractor": "keras_models.spec",
    "feature_taps": "keras_models.spec",
    "inference_model": "keras_models.inference",
    "save_preset": "keras_models.presets",
    "load_preset": "keras_models.presets",
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


if TYPE_CHECKING:
    from keras_models.imagenet import decode_predictions, imagenet_classes, preprocess_input  # noqa: F401
    from keras_models.inference import inference_model  # noqa: F401
    from keras_models.models import create_model, list_models, load_model, model_info  # noqa: F401
    from keras_models.models.efficientnet import *  # noqa: F403
    from keras_models.models.rexnet import ReXNet  # noqa: F401
    from keras_models.presets import load_preset, save_preset  # noqa: F401
    from keras_models.spec import feature_extractor, feature_taps  # noqa: F401

__version__ = "0.1.0"

__all__ = [  # noqa: F822
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
    "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "EfficientNetLite0", "EfficientNetLite1",
    "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4", "EfficientNetV2B0",
    "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S", "EfficientNetV2M",
    "EfficientNetV2L", "PartialResidual", "ReXNet", "create_model", "decode_predictions",
    "feature_extractor", "feature_taps", "imagenet_classes", "inference_model", "list_models", "load_model",
    "load_preset", "model_info", "preprocess_input", "save_preset",
]
