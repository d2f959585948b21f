"""Deployment (TensorFlow backend): SavedModels for TF Serving, TFLite/LiteRT for Android, ONNX.

    import keras_models as km
    from keras_models import export

    model = km.create_model("rexnet_100", weights="runs/digits/best.weights.h5", num_classes=10,
                            input_shape=(32, 32, 3))
    export.saved_model(model, "saved_models", "rexnet_100", labels=names)   # -> saved_models/rexnet_100/1
    export.tflite(model, "rexnet_100_int8.tflite", "int8", labels=names, calibration=images)

`export.export_model(model, repository, ExportPlan(...), images)` writes every format at once into
one version, each measured against the Keras model; `export.verify(version_dir)` re-checks a
version (serving contract in a fresh process, TFLite, ONNX). `keras-models export` (the trainer's
command) feeds `export_model` from a training run's files and data.
"""

from keras_models.export.lite import QUANTIZATIONS, ExportError, LiteModel, tflite
from keras_models.export.release import FORMATS, ExportPlan, Row, export_model
from keras_models.export.serving import saved_model
from keras_models.export.verify import verify

__all__ = ["FORMATS", "QUANTIZATIONS", "ExportError", "ExportPlan", "LiteModel", "Row", "export_model",
           "saved_model", "tflite", "verify"]
