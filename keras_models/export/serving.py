"""SavedModels for TF Serving: versioned, with in-graph preprocessing, labels and warm-up.

`saved_models/<name>/<version>/` holds `saved_model.pb`, `variables/`, `assets/labels.txt`,
`assets.extra/tf_serving_warmup_requests` and `model_card.json`. A version is written under a
hidden temporary name and renamed into place, so a server polling the folder never loads half
of one; `saved_models/models.config` lists every model for `--model_config_file`.

Signatures (all return `probabilities`, top-k `classes`, `scores` and `labels`):
- `serving_default`: `image_bytes`, a batch of encoded JPEG/PNG/GIF/BMP/WebP images (b64 over REST),
  decoded, resized and centre-cropped in-graph exactly as `keras-models eval` does;
- `serve_images` / `serve_images_uint8`: NHWC RGB images of any size, 0-255, same transform.

A keras_models network is served as its inference graph (`keras_models.inference_model`: BatchNorm
folded into the convs, fused depthwise/SE units), which gives the same outputs, faster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_models.export.lite import ExportError, ensure_probabilities, image_size_of
from keras_models.files import atomic_output, owned_temp_prefix, quiet_stderr, remove_stale, umask
from keras_models.inference import serving_graph
from keras_models.preprocessing import IMAGE_FORMATS, center_crop, decode_image, max_pixels

WARMUP_FILE = "tf_serving_warmup_requests"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # one folder in the repository, TF Serving's name


def check_model_name(name: str) -> str:
    """A model name is one plain folder name inside the repository: no '/', no '..', no hidden names."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or ".." in name:
        raise ExportError(f"model name {name!r} is not allowed: use letters, digits, '.', '_' and '-' "
                         "(one folder inside the repository, e.g. rexnet_100)")
    return name
CARD_FILE = "model_card.json"
BAD_IMAGE = f"is not a readable {IMAGE_FORMATS} image"


def serving_module(model: keras.Model, labels_path: str, *, crop_pct: float, interpolation: str,
                   top_k: int = 5) -> tuple[tf.Module, dict]:
    """A module holding the model's variables and labels table, and its three signatures.

    Labels come from the `labels_path` asset at load time. The module tracks the plain TF
    variables once (keras' ExportArchive stores every variable twice: 28.6 MB for ReXNet 1.0x's
    14.3 MB of weights).
    """
    size, limit = image_size_of(model), max_pixels()
    probabilities = ensure_probabilities(model)
    k = min(top_k, model.output_shape[-1])
    module = tf.Module()
    module.model_variables = [v.value for v in model.weights]
    module.labels_asset = tf.saved_model.Asset(labels_path)
    module.labels_table = table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(module.labels_asset, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                                      tf.string, tf.lookup.TextFileIndex.WHOLE_LINE), default_value="")

    def outputs(images: tf.Tensor) -> dict[str, tf.Tensor]:
        p = probabilities(images)
        top = tf.math.top_k(p, k)
        classes = tf.cast(top.indices, tf.int64)
        return {"probabilities": p, "classes": classes, "scores": top.values, "labels": table.lookup(classes)}

    def transform(images: tf.Tensor) -> tf.Tensor:
        return center_crop(images, size, crop_pct, interpolation)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        # Each image has its own size, so decode and crop one by one inside tf.data; a bad one is
        # dropped by ignore_errors and then named, instead of failing the batch anonymously.
        n = tf.shape(image_bytes, out_type=tf.int64)[0]
        nonempty = tf.debugging.Assert(n > 0, ["image_bytes is empty: send at least one image"])

        def decode(i, data):  # refused from its header before decoding (`decode_image`)
            return i, transform(decode_image(data, limit))

        ds = tf.data.Dataset.from_tensor_slices((tf.range(n), image_bytes)).map(decode)
        # An empty batch behind the decoded one: when every image is bad, the check below names the
        # first of them (instead of "Dataset was empty").
        none = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int64), tf.zeros([0, size, size, 3], tf.float32)))
        index, images = ds.ignore_errors().batch(tf.maximum(n, 1)).concatenate(none).take(1).get_single_element()
        decoded = tf.reduce_any(tf.equal(tf.range(n)[:, None], index[None, :]), axis=1)
        named = tf.debugging.Assert(tf.reduce_all(decoded),
                                    ["image_bytes element", tf.argmin(tf.cast(decoded, tf.int32)),
                                     f"{BAD_IMAGE} of at most {limit:,} pixels"])
        with tf.control_dependencies([nonempty, named]):  # before the model: no empty batch reaches a conv
            return outputs(tf.identity(images))

    def pixels(dtype):
        return tf.function(lambda images: outputs(transform(images)),
                           input_signature=[tf.TensorSpec([None, None, None, 3], dtype, name="images")])

    signatures = {"serving_default": serve_bytes, "serve_images": pixels(tf.float32),
                  "serve_images_uint8": pixels(tf.uint8)}
    module.signature_functions = signatures
    return module, signatures


def write_warmup(version_dir: Path, name: str, images: Sequence[bytes]) -> int:
    """`assets.extra/tf_serving_warmup_requests`: PredictionLog records TF Serving replays on load."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    requests = [("serving_default", "image_bytes", np.array(images[:1], dtype=object)),
                ("serving_default", "image_bytes", np.array(images[:8], dtype=object))]
    pixels = decode_image(images[0]).numpy()
    requests.append(("serve_images_uint8", "images", pixels[None]))
    requests.append(("serve_images", "images", pixels[None].astype(np.float32)))
    path = version_dir / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, key, value in requests:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(requests)


def sample_image() -> bytes:
    """A smooth synthetic JPEG, the warm-up request when no real images are given."""
    y, x = np.mgrid[0:96, 0:128]
    rgb = np.stack([x * 2, y * 2, (x + y)], axis=-1).clip(0, 255).astype(np.uint8)
    return tf.io.encode_jpeg(rgb).numpy()


def write_saved_model(model: keras.Model, version_dir: Path, *, name: str, labels: Sequence[str],
                      crop_pct: float, interpolation: str, top_k: int = 5,
                      warmup_images: Sequence[bytes] | None = None, card: dict | None = None) -> Path:
    """Write the SavedModel, its labels asset, warm-up records and model card into `version_dir`."""
    classes = model.output_shape[-1]
    if len(labels) != classes:
        raise ValueError(f"{len(labels)} labels for a model with {classes} outputs")
    if any("\n" in label or not label for label in labels):
        raise ValueError("labels must be non-empty single lines")
    with tempfile.TemporaryDirectory() as tmp:
        labels_path = os.path.join(tmp, "labels.txt")
        Path(labels_path).write_text("".join(f"{label}\n" for label in labels))
        module, signatures = serving_module(serving_graph(model), labels_path, crop_pct=crop_pct,
                                            interpolation=interpolation, top_k=top_k)
        with quiet_stderr():
            tf.saved_model.save(module, str(version_dir), signatures=signatures)
    write_warmup(version_dir, name, list(warmup_images or [sample_image()]))
    size = image_size_of(model)
    info = {
        "model": name,
        "num_classes": classes,
        "top_k": min(top_k, classes),
        "labels": "assets/labels.txt",
        "input": {"image_size": size, "crop_pct": crop_pct, "interpolation": interpolation,
                  "max_pixels": max_pixels(),
                  "pixels": "RGB 0-255; resized so the short side is image_size/crop_pct, centre-cropped, "
                            "normalised in-graph"},
        "signatures": {
            "serving_default": {"inputs": {"image_bytes": f"string [batch], encoded {IMAGE_FORMATS}"}},
            "serve_images": {"inputs": {"images": "float32 [batch, height, width, 3], 0-255"}},
            "serve_images_uint8": {"inputs": {"images": "uint8 [batch, height, width, 3]"}},
            "outputs": {"probabilities": f"float32 [batch, {classes}]",
                        "classes": f"int64 [batch, {min(top_k, classes)}]",
                        "scores": "float32 top-k probabilities", "labels": "string top-k class names"},
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        **(card or {}),
    }
    (version_dir / CARD_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return version_dir


def versions(model_dir: Path) -> list[int]:
    """The numeric version folders TF Serving would see, sorted."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name))


STAGING = "staging"


def staging_dir(model_dir: Path) -> Path:
    """A hidden folder beside the versions (TF Serving ignores non-numeric names) to build one in;
    staging folders of exporters that were killed are removed first."""
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(model_dir, STAGING)
    return Path(tempfile.mkdtemp(dir=model_dir, prefix=owned_temp_prefix(STAGING)))


def publish(staging: Path, model_dir: Path, servable: bool = True) -> Path:
    """Rename a finished staging folder to the next version number; returns the version folder.

    `servable` versions (holding a SavedModel) are listed in the repository's models.config.
    """
    for _ in range(100):  # another exporter may take a number first: rename fails, try the next
        target = model_dir / str((versions(model_dir) or [0])[-1] + 1)
        try:
            os.rename(staging, target)
        except OSError:
            if target.exists():
                continue
            raise
        os.chmod(target, 0o755 & ~umask())  # mkdtemp made it 0700
        if servable:
            write_models_config(model_dir.parent)
        return target
    raise RuntimeError(f"could not find a free version number in {model_dir}")


def write_models_config(repository: Path, base_path: str = "/models") -> Path:
    """`models.config` for `tensorflow_model_server --model_config_file`, one entry per model folder.

    Paths are as the docker image mounts the repository (`-v $PWD/saved_models:/models`).
    """
    names = sorted(p.name for p in repository.iterdir() if p.is_dir() and versions(p))
    entries = "".join(f'  config {{\n    name: "{n}"\n    base_path: "{base_path}/{n}"\n'
                      f'    model_platform: "tensorflow"\n  }}\n' for n in names)
    target = repository / "models.config"
    with atomic_output(target) as tmp:
        Path(tmp).write_text(f"model_config_list {{\n{entries}}}\n")
    return target


def saved_model(model: keras.Model, repository: str | Path = "saved_models", name: str | None = None, *,
                labels: Sequence[str] | None = None, crop_pct: float = 0.875, interpolation: str = "bicubic",
                top_k: int = 5, warmup_images: Sequence[bytes] | None = None, card: dict | None = None) -> Path:
    """Export `model` as the next version of `repository/name`; returns the version folder."""
    name = check_model_name(name or model.name)
    model_dir = Path(repository) / name
    labels = list(labels) if labels is not None else [str(i) for i in range(model.output_shape[-1])]
    staging = staging_dir(model_dir)
    try:
        write_saved_model(model, staging, name=name, labels=labels, crop_pct=crop_pct, interpolation=interpolation,
                          top_k=top_k, warmup_images=warmup_images, card=card)
        return publish(staging, model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
