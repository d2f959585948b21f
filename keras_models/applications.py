"""keras.applications-style constructors: `ReXNet(width=1.3)`, `EfficientNetB0(weights="imagenet")`.

Thin doors onto `keras_models.factory`: each builds a registered architecture (a ReXNet of any
width builds its own spec) and stamps the same build record `create_model` does.
"""

from __future__ import annotations

import keras

from keras_models.factory import create_from_entry, same_classes
from keras_models.models import find_entry, get_entry
from keras_models.models.efficientnet import KERAS_TAG
from keras_models.models.rexnet import rexnet_spec
from keras_models.registry import ModelEntry


def ReXNet(
    width: float = 1.0,
    depth: float = 1.0,
    *,
    lite: bool = False,
    rounded: bool = False,
    se: bool = True,
    se_ratio: float = 1 / 12,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    dropout_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    classifier_activation: str | None = "softmax",
    include_preprocessing: bool = True,
    features_only: bool = False,
    name: str | None = None,
) -> keras.Model:
    """ReXNet v1 / -lite / -R. Inputs are RGB in [0, 255] unless `include_preprocessing=False`.

    `weights`: None, "imagenet" (published weights for the registry widths) or a file path
    (`.weights.h5`, keras `.h5`, timm/official `.safetensors`/`.pth`).
    """
    ch_div = (16 if width >= 3.0 else 8) if rounded else 1
    net = rexnet_spec(
        width, depth, se=se, se_ratio=se_ratio, ch_div=ch_div, lite=lite,
        dropout_rate=dropout_rate, drop_path_rate=drop_path_rate,
    )
    # A registered width (rexnet_130, ...) brings its published weights and evaluation settings.
    entry = find_entry(net.name) or ModelEntry(name=net.name, family="rexnet", make_spec=lambda **_: net)
    return create_from_entry(
        entry, net=net, weights=weights, num_classes=num_classes, include_top=include_top,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classifier_activation=classifier_activation, include_preprocessing=include_preprocessing,
        features_only=features_only, name=name,
    )


def _constructor(registry_name: str, public_name: str):
    def constructor(
        include_top: bool = True,
        weights: str | None = None,
        input_tensor=None,
        input_shape: tuple | None = None,
        pooling: str | None = None,
        classes: int | None = None,
        classifier_activation: str | None = "softmax",
        name: str | None = None,
        *,
        num_classes: int | None = None,
        dropout_rate: float | None = None,
        drop_connect_rate: float = 0.2,
        include_preprocessing: bool = True,
        features_only: bool = False,
    ) -> keras.Model:
        entry = get_entry(registry_name)
        tag = KERAS_TAG if any(t.tag == KERAS_TAG for t in entry.tags) else None  # keras.applications' file
        spec_options = {"drop_connect_rate": drop_connect_rate}
        if dropout_rate is not None:
            spec_options["dropout_rate"] = dropout_rate
        return create_from_entry(
            entry, weights=weights, tag=tag, num_classes=same_classes(classes, num_classes), name=name,
            spec_options=spec_options, include_top=include_top, input_tensor=input_tensor,
            input_shape=input_shape, pooling=pooling, classifier_activation=classifier_activation,
            include_preprocessing=include_preprocessing, features_only=features_only,
        )

    constructor.__name__ = constructor.__qualname__ = public_name
    constructor.__doc__ = (
        f"{public_name} ({registry_name}), keras.applications-compatible signature.\n\n"
        "Also exposes what keras.applications hides: `dropout_rate`, `drop_connect_rate`,\n"
        "`include_preprocessing` (inputs are RGB in [0, 255] when True) and `features_only`.\n"
        "`weights`: None (default), 'imagenet', or a weights file path."
    )
    return constructor


EfficientNetB0 = _constructor("tf_efficientnet_b0", "EfficientNetB0")
EfficientNetB1 = _constructor("tf_efficientnet_b1", "EfficientNetB1")
EfficientNetB2 = _constructor("tf_efficientnet_b2", "EfficientNetB2")
EfficientNetB3 = _constructor("tf_efficientnet_b3", "EfficientNetB3")
EfficientNetB4 = _constructor("tf_efficientnet_b4", "EfficientNetB4")
EfficientNetB5 = _constructor("tf_efficientnet_b5", "EfficientNetB5")
EfficientNetB6 = _constructor("tf_efficientnet_b6", "EfficientNetB6")
EfficientNetB7 = _constructor("tf_efficientnet_b7", "EfficientNetB7")
EfficientNetLite0 = _constructor("tf_efficientnet_lite0", "EfficientNetLite0")
EfficientNetLite1 = _constructor("tf_efficientnet_lite1", "EfficientNetLite1")
EfficientNetLite2 = _constructor("tf_efficientnet_lite2", "EfficientNetLite2")
EfficientNetLite3 = _constructor("tf_efficientnet_lite3", "EfficientNetLite3")
EfficientNetLite4 = _constructor("tf_efficientnet_lite4", "EfficientNetLite4")
EfficientNetV2B0 = _constructor("tf_efficientnetv2_b0", "EfficientNetV2B0")
EfficientNetV2B1 = _constructor("tf_efficientnetv2_b1", "EfficientNetV2B1")
EfficientNetV2B2 = _constructor("tf_efficientnetv2_b2", "EfficientNetV2B2")
EfficientNetV2B3 = _constructor("tf_efficientnetv2_b3", "EfficientNetV2B3")
EfficientNetV2S = _constructor("tf_efficientnetv2_s", "EfficientNetV2S")
EfficientNetV2M = _constructor("tf_efficientnetv2_m", "EfficientNetV2M")
EfficientNetV2L = _constructor("tf_efficientnetv2_l", "EfficientNetV2L")
