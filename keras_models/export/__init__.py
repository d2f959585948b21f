"""Deployment (TensorFlow backend): SavedModels for TF Serving, TFLite/LiteRT for Android, ONNX.

    import keras_models as km
    from keras_models import export

    model = km.create_model("rexnet_100", weights="runs/digits/best.weights.h5", num_classes=10,
                            input_shape=(32, 32, 3))
    export.saved_model(model, "saved_models", "rexnet_100", labels=names)   # -> saved_models/rexnet_100/1
    export.tflite(model, "rexnet_100_int8.tflite", "int8", labels=names, calibration=images)

`keras-models export` does all formats at once, measured against the Keras model; `keras-models
verify` re-checks a version (serving contract in a fresh process, TFLite, ONNX).
"""

from keras_models.export.command import export, verify
from keras_models.export.lite import QUANTIZATIONS, ExportError, LiteModel, tflite
from keras_models.export.serving import saved_model

__all__ = ["QUANTIZATIONS", "ExportError", "LiteModel", "export", "saved_model", "tflite", "verify"]
