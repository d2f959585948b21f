"""The serving contract: how an image file becomes model input (`eval`, `predict`, every export).

Short side resized to `image_size / crop_pct` (aspect kept, antialiased), then the central
`image_size` square, RGB kept in [0, 255]: the models normalise in-graph. TensorFlow ops, because
the SavedModel signatures run exactly this graph; TensorFlow is imported on first use.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

IMAGE_FORMATS = "JPEG/PNG/GIF/BMP"
# Decoding a 775 KB PNG of 16000 x 16000 takes 768 MB (and `predict` reached 4.8 GB): images above
# this many pixels are refused from their header, before any decoding. PIL's default limit.
DEFAULT_MAX_PIXELS = 89_478_485
MAX_PIXELS_ENV = "KERAS_MODELS_MAX_IMAGE_PIXELS"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageError(ValueError):
    """An image file that cannot be read, named, with what is wrong (one line)."""


def max_pixels() -> int:
    """The pixel limit: `KERAS_MODELS_MAX_IMAGE_PIXELS` (a whole number), else `DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ImageError(f"{MAX_PIXELS_ENV} must be a whole number of pixels >= 1, got {text!r}")
    return int(text)


def header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG/PNG/GIF/BMP header, without decoding; None if it cannot tell."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return height, width
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(height), abs(width)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return height, width
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def check_pixels(data: bytes, what: str) -> None:
    """Refuse an image whose header claims more than `max_pixels()` pixels, naming it."""
    size = header_size(data)
    if size is not None and size[0] * size[1] > max_pixels():
        raise ImageError(f"{what} is {size[1]} x {size[0]} pixels, over the limit of {max_pixels():,} "
                         f"(a decompression bomb?); raise {MAX_PIXELS_ENV} to allow it")


def decode_image(encoded):
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 HxWx3 (the first frame of an animation)."""
    import tensorflow as tf

    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


CROP_MODES = ("center", "squash")  # timm's eval crop modes


def center_crop(image, size: int, crop_pct: float, interpolation: str = "bilinear", mode: str = "center"):
    """Evaluation: short side to size/crop_pct (aspect kept), then the central size x size; timm's
    "squash" resizes both sides to size/crop_pct (aspect not kept) before the same central crop.

    Takes one HxWx3 image or an NxHxWx3 batch, any dtype; returns float32 in [0, 255].
    """
    import tensorflow as tf

    if mode not in CROP_MODES:
        raise ValueError(f"crop mode {mode!r} is not one of {', '.join(CROP_MODES)}")
    image = tf.cast(image, tf.float32)
    shape = tf.cast(tf.shape(image)[-3:-1], tf.float32)
    if mode == "squash":
        new = tf.fill([2], max(size, int(size / crop_pct)))  # timm: Resize((int(size / crop_pct),) * 2)
    else:
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
    crop_mode: str = "center"

    def eval_image(self, image):
        """A decoded HxWx3 (or NxHxWx3) image -> float32 image_size x image_size x 3 in [0, 255]."""
        return center_crop(image, self.image_size, self.crop_pct, self.interpolation, self.crop_mode)

    def load(self, path: str | Path):
        """An image file -> numpy float32 model input; `ImageError` naming the file if it is unreadable."""
        import tensorflow as tf

        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"image {path} does not exist") from None
        except OSError as e:
            raise ImageError(f"cannot read image {path}: {e.strerror}") from None
        check_pixels(data, f"image {path}")
        try:
            image = decode_image(data)
        except tf.errors.InvalidArgumentError:
            known = header_size(data) is not None
            raise ImageError(f"cannot read image {path}: " + ("truncated or damaged" if known else
                                                               f"not a {IMAGE_FORMATS} image")) from None
        return self.eval_image(image).numpy()
