"""keras-models: ReXNet and EfficientNet for Keras 3, weight-compatible with their references."""

from keras_models import efficientnet as _efficientnet  # noqa: F401  (registers models)
from keras_models import rexnet as _rexnet  # noqa: F401
from keras_models.efficientnet import (
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
    EfficientNetLite3,
    EfficientNetLite4,
    EfficientNetV2B0,
    EfficientNetV2B1,
    EfficientNetV2B2,
    EfficientNetV2B3,
    EfficientNetV2L,
    EfficientNetV2M,
    EfficientNetV2S,
)
from keras_models.imagenet import decode_predictions, imagenet_classes, preprocess_input
from keras_models.layers import PartialResidual
from keras_models.registry import create_model, list_models, model_info
from keras_models.rexnet import ReXNet
from keras_models.spec import feature_extractor, feature_taps

__version__ = "0.1.0"

__all__ = [
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
    "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "EfficientNetLite0", "EfficientNetLite1",
    "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4", "EfficientNetV2B0",
    "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S", "EfficientNetV2M",
    "EfficientNetV2L", "PartialResidual", "ReXNet", "create_model", "decode_predictions",
    "feature_extractor", "feature_taps", "imagenet_classes", "list_models", "model_info",
    "preprocess_input",
]
