"""Image headers and the evaluation crop: one list of formats, sizes read before decoding, and a resize
bounded by the pixel limit whatever the aspect ratio."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import PHOTOS
from PIL import Image

from keras_models.preprocessing import (
    FORMATS,
    MAX_PIXELS_ENV,
    center_crop,
    decode_image,
    header_pixels,
    header_size,
    is_image_file,
)

# (PIL format, save options, image mode): every format and WebP's three header layouts
ENCODINGS = {"JPEG": ("JPEG", {}, "RGB"), "PNG": ("PNG", {}, "RGB"), "GIF": ("GIF", {}, "RGB"),
             "BMP": ("BMP", {}, "RGB"), "WebP lossy": ("WEBP", {}, "RGB"),
             "WebP lossless": ("WEBP", {"lossless": True}, "RGB"), "WebP extended": ("WEBP", {}, "RGBA")}


def encode(kind: str, width: int, height: int) -> bytes:
    fmt, options, mode = ENCODINGS[kind]
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", sorted(ENCODINGS))
def test_python_and_graph_headers_agree_on_every_format(kind):
    data = encode(kind, 301, 77)
    assert header_size(data) == (77, 301)
    assert int(header_pixels(tf.constant(data))) == 301 * 77
    assert decode_image(data).shape == (77, 301, 3)


def test_webp_is_in_the_one_list_of_formats():
    from pathlib import Path

    assert "WebP" in FORMATS
    assert is_image_file(Path("a.webp"), encode("WebP lossy", 8, 8))
    assert not is_image_file(Path("a.webp"), b"RIFF\x00\x00\x00\x00WAVEfmt ")  # a RIFF that is no WebP


@pytest.mark.parametrize("kind", ["PNG", "WebP lossless"])
def test_an_image_over_the_limit_fails_before_it_is_decoded(kind, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000000")
    with pytest.raises(tf.errors.InvalidArgumentError, match="over the pixel limit of 1,000,000"):
        decode_image(encode(kind, 2000, 2000))


def test_normal_photos_keep_their_exact_pixels():
    """The bound changes nothing below the limit: the old transform (resize whole, then crop) exactly."""
    image = tf.io.decode_image((PHOTOS / "grace_hopper.jpg").read_bytes(), channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.maximum(tf.cast(tf.round(shape * (256 / tf.reduce_min(shape))), tf.int32), 224)
    old = tf.image.resize(tf.cast(image, tf.float32), new, method="bicubic", antialias=True)
    top, left = (new[0] - 224) // 2, (new[1] - 224) // 2
    old = tf.clip_by_value(old[top:top + 224, left:left + 224], 0, 255)
    assert np.array_equal(center_crop(image, 224, 0.875, "bicubic").numpy(), old.numpy())


def test_a_strip_resizes_only_what_the_crop_sees():
    """#34: a 1 x 8000 strip became 256 x 2,048,000 before the crop (6 GB); now a few hundred pixels."""
    strip = tf.cast(tf.tile(tf.range(8000, dtype=tf.float32)[None, :, None] % 255, [1, 1, 3]), tf.uint8)
    out = center_crop(strip, 224, 0.875, "bicubic")
    assert out.shape == (224, 224, 3)
    # the centre of the strip, stretched: the middle column holds the strip's middle value
    assert abs(float(out[112, 112, 0]) - 4000 % 255) <= 2


def test_libjpegs_own_lines_are_filtered_from_stderr_and_nothing_else(capfd):
    """#34: TensorFlow's libjpeg prints its own lines to fd 2 for a JPEG cut before its tables
    ("Input file read error", then "Improper call to JPEG library in state 201"). The CLI filters
    such lines and keeps every other byte in order, progress bars without a newline included."""
    from keras_models.files import filtered_stderr

    data = (PHOTOS / "coffee.jpg").read_bytes()
    no_tables = data[: data.index(b"\xff\xc4")]
    with filtered_stderr():
        os.write(2, b"\rbar 1/2")
        with pytest.raises(tf.errors.InvalidArgumentError):
            decode_image(no_tables)
        os.write(2, b"\rbar 2/2\nImproper call to JPEG library in state 201\n")
        os.write(2, b"Premature end of JPEG")  # a noise line in two writes
        os.write(2, b" file\nkept\n")
    assert capfd.readouterr().err == "\rbar 1/2\rbar 2/2\nkept\n"
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_image(no_tables)
    assert "Input file read error" in capfd.readouterr().err  # libjpeg's line: what the filter is for
