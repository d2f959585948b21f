"""The serving contract: how an image file becomes model input (`eval`, `predict`, every export).

Short side resized to `image_size / crop_pct` (aspect kept, antialiased), then the central
`image_size` square, RGB kept in [0, 255]: the models normalise in-graph. TensorFlow ops, because
the SavedModel signatures run exactly this graph; TensorFlow is imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_FORMATS = "JPEG/PNG/GIF/BMP"


class ImageError(ValueError):
    """An image file that cannot be read, named, with what is wrong (one line)."""


def decode_image(encoded):
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 HxWx3 (the first frame of an animation)."""
    import tensorflow as tf

    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def center_crop(image, size: int, crop_pct: float, interpolation: str = "bilinear"):
    """Evaluation: short side to size/crop_pct (aspect kept), then the central size x size.

    Takes one HxWx3 image or an NxHxWx3 batch, any dtype; returns float32 in [0, 255].
    """
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    shape = tf.cast(tf.shape(image)[-3:-1], tf.float32)
    scale = (size / crop_pct) / tf.reduce_min(shape)
    new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    image = tf.image.resize(image, new, method=interpolation, antialias=True)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return tf.clip_by_value(image[..., top:top + size, left:left + size, :], 0.0, 255.0)


@dataclass(frozen=True)
class EvalTransform:
    """The evaluation transform of one model: what `eval`, `predict` and the exports all run."""

    image_size: int
    crop_pct: float
    interpolation: str = "bilinear"

    def eval_image(self, image):
        """A decoded HxWx3 (or NxHxWx3) image -> float32 image_size x image_size x 3 in [0, 255]."""
        return center_crop(image, self.image_size, self.crop_pct, self.interpolation)

    def load(self, path: str | Path):
        """An image file -> numpy float32 model input; `ImageError` naming the file if it is unreadable."""
        import tensorflow as tf

        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"image {path} does not exist") from None
        except OSError as e:
            raise ImageError(f"cannot read image {path}: {e.strerror}") from None
        try:
            image = decode_image(data)
        except tf.errors.InvalidArgumentError:
            raise ImageError(f"cannot read image {path}: not a {IMAGE_FORMATS} image") from None
        return self.eval_image(image).numpy()
