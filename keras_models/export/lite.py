"""TFLite / LiteRT models for Android: builtin ops only, labels and normalisation inside.

LiteRT on Android (and `ai_edge_litert` here) cannot run Flex (select TF) ops, so conversion
allows builtin ops only and fails naming the ops that are not, instead of emitting a model
that loads on a laptop and crashes on a phone.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_models.export.metadata import ClassifierMetadata, populate
from keras_models.files import atomic_output, quiet_stderr

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


class ExportError(RuntimeError):
    """An export that cannot produce a deployable model, with what to change."""


def ends_in_logits(model: keras.Model) -> bool:
    """Whether the model's last layer has no activation (a training run's weights: logits out)."""
    return getattr(getattr(model.layers[-1], "activation", None), "__name__", "") == "linear"


def ensure_probabilities(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """`x -> probabilities`, adding a softmax when the model ends in logits (a training run's weights)."""
    logits = ends_in_logits(model)

    def probabilities(x: tf.Tensor) -> tf.Tensor:
        y = tf.cast(model(x, training=False), tf.float32)
        return tf.nn.softmax(y) if logits else y

    return probabilities


def image_size_of(model: keras.Model) -> int:
    h, w = model.input_shape[1:3]
    if h is None or h != w:
        raise ExportError(f"export needs a square, fixed input size; the model takes {model.input_shape}: "
                          "build it with input_shape=(S, S, 3)")
    return int(h)


@contextmanager
def inference_saved_model(model: keras.Model, batch_size: int = 1) -> Iterator[str]:
    """A temporary SavedModel of `image -> probabilities` at a static batch, the converter's input.

    Converting several quantizations from one directory saves writing it each time.
    """
    size = image_size_of(model)
    probabilities = ensure_probabilities(model)
    spec = tf.TensorSpec([batch_size, size, size, 3], tf.float32, name="image")
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", lambda x: {"probabilities": probabilities(x)}, input_signature=[spec])
        archive.write_out(tmp, verbose=False)
        yield tmp


def convert(model: keras.Model, quantization: str = "float32", *,
            calibration: Iterable[np.ndarray] | None = None, batch_size: int = 1,
            saved_model_dir: str | None = None) -> bytes:
    """The model as a builtin-ops-only flatbuffer taking RGB 0-255 images of a static batch.

    `int8` quantizes weights and activations, with uint8 input (raw pixels) and output; it needs
    `calibration`, real images (HxWx3, 0-255) like those the model will see.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown TFLite quantization {quantization!r}; use one of {', '.join(QUANTIZATIONS)}")
    if saved_model_dir is None:
        with inference_saved_model(model, batch_size) as tmp:
            return convert(model, quantization, calibration=calibration, batch_size=batch_size, saved_model_dir=tmp)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    # Float kernels with pruned zeros are stored sparse, expanded by builtin DENSIFY ops: a
    # 75%-pruned ReXNet's float32 file is 3.05x smaller before any gzip, at the same batch-1 latency
    # (measured at 224 px); dense kernels are stored as before. Not for integer kernels: XNNPACK
    # fails to prepare a QAT model's sparse int8 FULLY_CONNECTED, and gzip packed them no smaller.
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if quantization in ("float32", "float16") else []
    if quantization in ("float16", "dynamic", "int8"):
        converter.optimizations.append(tf.lite.Optimize.DEFAULT)
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if calibration is None:
            raise ExportError("int8 needs calibration images: pass --calibration DATA (e.g. the training data)")
        samples = [np.asarray(x, np.float32)[None] for x in calibration]
        if not samples:
            raise ExportError("the calibration set is empty")
        converter.representative_dataset = lambda: ([np.repeat(s, batch_size, 0)] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    try:
        with quiet_stderr():
            flatbuffer = converter.convert()
    except Exception as e:  # ConverterError; its text lists the ops
        raise ExportError(_conversion_failure(str(e), quantization)) from None
    nonbuiltin = custom_ops(flatbuffer)
    if nonbuiltin:  # belt and braces: nothing the Android runtime lacks may slip through
        raise ExportError(f"the {quantization} TFLite model uses non-builtin ops {', '.join(nonbuiltin)}")
    return flatbuffer


def _conversion_failure(message: str, quantization: str) -> str:
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op", message)) | set(re.findall(r"TF Select ops: ([\w, ]+)", message)))
    if ops:
        return (f"{quantization} TFLite conversion needs ops outside the TFLite builtins ({', '.join(ops)}), "
                "which LiteRT on Android cannot run; remove them from the model (e.g. antialiased resizing)")
    lines = [line.strip() for line in message.splitlines() if "error" in line.lower()]
    return f"{quantization} TFLite conversion failed: {(lines or [message.strip() or 'no reason given'])[0]}"


def custom_ops(flatbuffer: bytes) -> list[str]:
    """Names of the custom (non-builtin) ops in a TFLite model, e.g. Flex ones."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            names.append(code.CustomCode().decode())
    return sorted(names)


def builtin_ops(flatbuffer: bytes) -> list[str]:
    """The builtin op names a TFLite model uses (for reports and GPU-delegate checks)."""
    from ai_edge_litert import schema_py_generated as schema

    by_code = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    codes = {max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())}
    return sorted(by_code.get(c, str(c)) for c in codes)


def tflite(model: keras.Model, path: str | Path, quantization: str = "float32", *,
           labels: list[str] | None = None, calibration: Iterable[np.ndarray] | None = None,
           name: str | None = None, version: str = "1", batch_size: int = 1,
           saved_model_dir: str | None = None, flatbuffer: bytes | None = None) -> Path:
    """Write a `.tflite` with labels and normalisation metadata; returns its path. `flatbuffer`: the
    model already converted (`convert`), to write with the metadata instead of converting again.

    The model takes RGB pixels 0-255 (uint8 for int8, float32 otherwise) and normalises in-graph,
    so the metadata tells the app to feed raw pixels (mean 0, std 1).
    """
    path = Path(path)
    if path.suffix != ".tflite":
        raise ExportError(f"{path} must end with .tflite")
    classes = model.output_shape[-1]
    labels = list(labels) if labels is not None else [str(i) for i in range(classes)]
    if len(labels) != classes:
        raise ExportError(f"{len(labels)} labels for a model with {classes} outputs")
    if flatbuffer is None:
        flatbuffer = convert(model, quantization, calibration=calibration, batch_size=batch_size,
                             saved_model_dir=saved_model_dir)
    meta = ClassifierMetadata(
        name=name or model.name, version=version, image_size=image_size_of(model),
        description=f"{name or model.name} image classifier ({quantization}); input RGB 0-255, "
                    f"{'uint8' if quantization == 'int8' else 'float32'}, batch {batch_size}",
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), labels=tuple(labels))
    with atomic_output(path, suffix=".tflite") as tmp:
        Path(tmp).write_bytes(populate(flatbuffer, meta))
    return path


class LiteModel:
    """A `.tflite` run with `ai_edge_litert` (XNNPACK on CPU): images in, float probabilities out."""

    def __init__(self, path: str | Path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads or os.cpu_count())
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """images: NxHxWx3 RGB 0-255, run one batch of the model's static size at a time."""
        batch = self.input["shape"][0]
        outs = []
        for i in range(0, len(images), batch):
            x = images[i:i + batch]
            n = len(x)
            if n < batch:  # a static batch: pad the last one
                x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
            if self.input["dtype"] == np.uint8:
                x = np.clip(np.round(x), 0, 255).astype(np.uint8)
            self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])
            if self.output["dtype"] != np.float32:
                scale, zero = self.output["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            outs.append(y[:n].copy())
        return np.concatenate(outs)
