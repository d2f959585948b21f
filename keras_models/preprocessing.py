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

# The formats every path decodes (predict, eval, training, serving), one list: name, file endings, how
# the file starts. Each one's size is read from its header before anything is decoded.
FORMATS = {
    "JPEG": ((".jpg", ".jpeg"), (b"\xff\xd8\xff",)),
    "PNG": ((".png",), (b"\x89PNG",)),
    "GIF": ((".gif",), (b"GIF87a", b"GIF89a")),
    "BMP": ((".bmp",), (b"BM",)),
    "WebP": ((".webp",), (b"RIFF",)),  # and "WEBP" at byte 8
}
IMAGE_FORMATS = "/".join(FORMATS)
IMAGE_EXTENSIONS = tuple(e for endings, _ in FORMATS.values() for e in endings)
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


def is_image_file(path: Path, head: bytes) -> bool:
    """Whether a file is one of `FORMATS` by its ending and its first bytes."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and starts_like_image(head)


def starts_like_image(head: bytes) -> bool:
    """Whether bytes begin as one of `FORMATS` does."""
    return any(head.startswith(magic) for _, starts in FORMATS.values() for magic in starts) and (
        not head.startswith(b"RIFF") or head[8:12] == b"WEBP")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG/PNG/GIF/BMP/WebP header, without decoding; None if it cannot tell."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _webp_size(data)
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


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the key frame's start code
        width, height = struct.unpack("<HH", data[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14-bit sizes minus one, packed after the 0x2f signature
        bits = struct.unpack("<I", data[21:25])[0]
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        return int.from_bytes(data[27:30], "little") + 1, int.from_bytes(data[24:27], "little") + 1
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


def check_pixels(data: bytes, what: str, complete: bool = True) -> None:
    """Refuse an image whose header claims more than `max_pixels()` pixels, naming it; and one that
    is `complete` (the whole file) yet ends before its header tells its size, which libjpeg would
    otherwise report on stderr ("Improper call to JPEG library in state 201") as it fails."""
    size = header_size(data)
    if size is None and complete and starts_like_image(data):
        raise ImageError(f"{what} is truncated or damaged (it ends before its header gives the image size)")
    if size is not None and size[0] * size[1] > max_pixels():
        raise ImageError(f"{what} is {size[1]} x {size[0]} pixels, over the limit of {max_pixels():,} "
                         f"(a decompression bomb?); raise {MAX_PIXELS_ENV} to allow it")


def header_pixels(data):
    """Height x width from an encoded image's header, in-graph and before decoding (0 when the
    format is unknown): the graph twin of `header_size`, for the serving signature and tf.data."""
    import tensorflow as tf

    def number(start: int, length: int, big_endian: bool = False):
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8), tf.int64)
        weights = tf.constant([256 ** k for k in range(length)][::-1 if big_endian else 1], tf.int64)
        return tf.reduce_sum(raw * weights)

    def signed32(value):
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

    def webp():
        chunk, bits = tf.strings.substr(data, 12, 4), number(21, 4)
        return tf.case([
            (tf.equal(chunk, b"VP8 "), lambda: tf.bitwise.bitwise_and(number(26, 2), 0x3FFF)
             * tf.bitwise.bitwise_and(number(28, 2), 0x3FFF)),
            (tf.equal(chunk, b"VP8L"), lambda: (tf.bitwise.bitwise_and(bits, 0x3FFF) + 1)
             * (tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 14), 0x3FFF) + 1)),
            (tf.equal(chunk, b"VP8X"), lambda: (number(24, 3) + 1) * (number(27, 3) + 1)),
        ], default=lambda: tf.constant(0, tf.int64))

    magic = tf.strings.substr(data, 0, 4)
    return tf.case([
        (tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8"),
         lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64))),
        (tf.equal(magic, b"\x89PNG"), lambda: number(16, 4, True) * number(20, 4, True)),
        (tf.equal(magic, b"GIF8"), lambda: number(6, 2) * number(8, 2)),
        (tf.equal(tf.strings.substr(data, 0, 2), b"BM"), lambda: signed32(number(18, 4)) * signed32(number(22, 4))),
        (tf.logical_and(tf.equal(magic, b"RIFF"), tf.equal(tf.strings.substr(data, 8, 4), b"WEBP")), webp),
    ], default=lambda: tf.constant(0, tf.int64))


def pixel_limit_check(pixels, limit: int | None = None):
    """The in-graph refusal of an image of `pixels` (height x width, int64) over `limit` (default
    `max_pixels()`): a decode made to depend on it never allocates a bomb."""
    import tensorflow as tf

    limit = max_pixels() if limit is None else limit
    return tf.debugging.assert_less_equal(pixels, tf.constant(limit, tf.int64),
                                          message=f"image over the pixel limit of {limit:,} ({MAX_PIXELS_ENV})")


def decode_image(encoded, limit: int | None = None):
    """Encoded JPEG/PNG/GIF/BMP/WebP bytes -> uint8 HxWx3 (the first frame of an animation). An image
    whose header claims more than `limit` (default `max_pixels()`) pixels fails before it is decoded:
    the decode depends on the check, so memory stays bounded by the limit, not by the file."""
    import tensorflow as tf

    check = pixel_limit_check(header_pixels(encoded), limit)
    is_webp = tf.equal(tf.strings.substr(encoded, 8, 4), b"WEBP")
    with tf.control_dependencies([check]):  # WebP is RGB or RGBA, and TF will not drop its alpha itself
        image = tf.cond(is_webp, lambda: tf.io.decode_image(encoded, channels=0, expand_animations=False)[..., :3],
                        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
    return tf.ensure_shape(image, [None, None, 3])


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
        image, shape = _visible_part(image, shape, scale, size)
        new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    image = tf.image.resize(image, new, method=interpolation, antialias=True)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return tf.clip_by_value(image[..., top:top + size, left:left + size, :], 0.0, 255.0)


def _visible_part(image, shape, scale, size: int):
    """Where the resized image would exceed the pixel limit (an extreme aspect ratio: a 1 x 8000
    strip resized to 256 x 2,048,000 takes 6 GB), only the central part of the source the crop can
    see is resized (plus the filter's reach); any other image passes whole, so its pixels are
    exactly as before."""
    import tensorflow as tf

    too_big = tf.reduce_prod(tf.round(shape * scale)) > float(max_pixels())
    reach = tf.math.ceil(size / scale) + 2.0 * (tf.math.ceil(2.0 / tf.minimum(scale, 1.0)) + 2.0)
    keep = tf.where(too_big, tf.minimum(shape, reach), shape)
    begin = tf.cast((shape - keep) // 2, tf.int32)
    end = begin + tf.cast(keep, tf.int32)
    return image[..., begin[0]:end[0], begin[1]:end[1], :], keep


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
