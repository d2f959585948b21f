"""Per-image RandAugment (timm's ops, drawn per image, only the drawn op computed) and the JPEG fast path."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from helpers import PHOTOS
from PIL import Image, ImageOps

from keras_models.preprocessing import decode_image
from training import augment
from training.data import JPEG_SCALES, crop_window, random_resized_crop, random_resized_crop_encoded

PHOTO = np.asarray(Image.open(PHOTOS / "chelsea.jpg").convert("RGB").resize((64, 48)))


def test_each_image_draws_its_own_ops_and_the_seed_decides():
    x = tf.constant(PHOTO, tf.float32)
    seeds = [tf.constant([5, i], tf.int64) for i in range(8)]
    draws = [tuple(augment.drawn_ops(s)) for s in seeds]
    assert len(set(draws)) > 4  # eight copies of one image, (nearly) eight different op pairs
    outs = [augment.rand_augment(x, s, 9.0).numpy() for s in seeds]
    assert len({o.tobytes() for o in outs}) > 4
    again = augment.rand_augment(x, seeds[3], 9.0).numpy()
    np.testing.assert_array_equal(again, outs[3])  # same (seed, index): same pixels, as a resumed run needs
    for o in outs:
        assert o.shape == PHOTO.shape and o.min() >= 0 and o.max() <= 255 and np.all(o == np.round(o))


@pytest.mark.parametrize("op", augment.OPS, ids=lambda f: f.__name__)
def test_every_op_keeps_shape_and_range(op):
    out = augment._finish(op(tf.constant(PHOTO, tf.float32), tf.constant(9.0), tf.constant(-1.0))).numpy()
    assert out.shape == PHOTO.shape and 0 <= out.min() and out.max() <= 255


@pytest.mark.parametrize("name, ours, pil", [
    ("invert", augment.invert, ImageOps.invert),
    ("equalize", augment.equalize, ImageOps.equalize),
    ("autocontrast", augment.auto_contrast, ImageOps.autocontrast),
    ("posterize m=9 -> 3 bits", augment.posterize, lambda im: ImageOps.posterize(im, 3)),
    ("solarize m=9 -> 230", augment.solarize, lambda im: ImageOps.solarize(im, 230)),
])
def test_pixel_ops_match_pil(name, ours, pil):
    """The ops timm runs through PIL, on a real photo: the same values (autocontrast within 1)."""
    got = augment._finish(ours(tf.constant(PHOTO, tf.float32), tf.constant(9.0), tf.constant(1.0))).numpy()
    want = np.asarray(pil(Image.fromarray(PHOTO)), np.float32)
    assert np.abs(got - want).max() <= 1


@pytest.mark.parametrize("op, transform", [
    (augment.shear_x, lambda m: [1.0, m / 10 * 0.3, 0.0, 0.0, 1.0, 0.0]),
    (augment.shear_y, lambda m: [1.0, 0.0, 0.0, m / 10 * 0.3, 1.0, 0.0]),
    (augment.translate_x, lambda m: [1.0, 0.0, m / 10 * 0.45 * 64, 0.0, 1.0, 0.0]),
    (augment.translate_y, lambda m: [1.0, 0.0, 0.0, 0.0, 1.0, m / 10 * 0.45 * 48]),
], ids=lambda v: getattr(v, "__name__", ""))
def test_fast_geometric_ops_equal_the_projective_transform(op, transform):
    """Shears (a crop_and_resize box per line) and translations (two shifted copies) give the pixels of
    `ImageProjectiveTransformV3` with bilinear taps and the fill beyond the border, to rounding."""
    x = tf.constant(PHOTO, tf.float32)
    for m in (-10.0, -3.3, 2.7, 9.0):
        got = augment._finish(op(x, tf.constant(abs(m)), tf.constant(float(np.sign(m))))).numpy()
        want = augment._finish(augment._affine(x, transform(m))).numpy()
        assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 0.02, m


def test_jpeg_fast_path_crops_the_same_window_as_decoding_whole():
    """At 224 px no window of this 600x400 photo is twice the output, so the JPEG decodes at full
    resolution: the pixels of decoding whole and cropping, but for a few at the window's edge, where
    a cropped decode upsamples the chroma without the rows beyond it."""
    data = (PHOTOS / "coffee.jpg").read_bytes()
    png = io.BytesIO()
    Image.open(PHOTOS / "coffee.jpg").save(png, "PNG")
    for i in range(6):
        seed = tf.constant([3, i], tf.int64)
        fast = random_resized_crop_encoded(tf.constant(data), 224, (0.08, 1.0), seed).numpy()
        whole = random_resized_crop(decode_image(tf.constant(data)), 224, (0.08, 1.0), seed).numpy()
        diff = np.abs(fast - whole)
        assert diff.mean() < 0.01 and np.mean(diff > 1) < 0.002  # the same window
        other = random_resized_crop_encoded(tf.constant(png.getvalue()), 224, (0.08, 1.0), seed).numpy()
        assert other.shape == fast.shape == (224, 224, 3)


def test_large_windows_decode_at_a_dct_scaling_nearer_the_antialiased_resize():
    """A 1600x1200 photo's windows at 64 px decode at 1/2 to 1/8 (`decode_jpeg_window`): on average
    nearer an antialiased resize of the full-resolution window (what PIL gives timm's loader) than
    bilinear taps of the full resolution are, and each far nearer than the window shifted by a tenth."""
    photo = Image.open(PHOTOS / "chelsea.jpg").convert("RGB").resize((1600, 1200), Image.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    data = tf.constant(buffer.getvalue())
    image = decode_image(data)
    scales, errors = set(), []
    for i in range(16):
        seed = tf.constant([4, i], tf.int64)
        begin, crop_size = crop_window(tf.shape(image), (0.08, 1.0), seed)
        scales.add(max(r for r in JPEG_SCALES if min(crop_size.numpy()[:2]) >= 2 * r * 64))

        def smooth(begin, crop_size):
            window = tf.cast(tf.slice(image, begin, crop_size), tf.float32)
            return tf.image.resize(window, [64, 64], antialias=True).numpy()

        taps = random_resized_crop(image, 64, (0.08, 1.0), seed).numpy()
        fast = random_resized_crop_encoded(data, 64, (0.08, 1.0), seed).numpy()
        tenth = crop_size // 10 * [1, 1, 0]
        shifted = smooth(begin + tenth, crop_size - tenth)
        want = smooth(begin, crop_size)
        errors.append((np.abs(fast - want).mean(), np.abs(taps - want).mean()))
        assert max(errors[-1]) < np.abs(shifted - want).mean() / 3  # the same window
    fast_error, taps_error = np.mean(errors, axis=0)
    assert fast_error < 0.9 * taps_error
    assert {2, 4, 8} <= scales
