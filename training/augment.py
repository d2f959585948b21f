"""RandAugment per image, with timm's semantics, as tf.data ops seeded by (seed, element index).

Keras' `RandAugment` layer draws its ops once per call and computes every candidate transform,
selecting with `where`: on a batch every image gets the same two ops, at ~65x the cost of no
augmentation. Here each image draws its own: `num_ops` times, one of timm's 15 `_RAND_TRANSFORMS`
is picked (with replacement) and applied with probability 0.5 at magnitude M (+ N(0, mstd) noise,
clipped to [0, 10]); `tf.switch_case` runs only the op drawn. Ops work on float32 HxWx3 images in
[0, 255] and round to whole values after each op, as PIL's uint8 ops do. Stateless random numbers
from (seed, index) make a resumed run see the same augmentation. Keras' per-image layers take a
seed generator, not a per-element seed, which is why the ops are written here.
"""

from __future__ import annotations

import math

import tensorflow as tf

LEVEL_DENOM = 10.0  # timm: magnitudes are 0-10
FILL = 128.0  # timm's fill for geometric ops
OP_PROBABILITY = 0.5  # timm's RandAugment applies each drawn op with this probability
GRAY = (0.299, 0.587, 0.114)  # PIL's RGB -> L weights


def _finish(x: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(tf.round(x), 0.0, 255.0)


def _gray(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(x * tf.constant(GRAY), axis=-1, keepdims=True)


def _blend(degenerate: tf.Tensor, x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    return degenerate + factor * (x - degenerate)


def auto_contrast(x, m, sign):
    lo, hi = tf.reduce_min(x, axis=(0, 1)), tf.reduce_max(x, axis=(0, 1))
    scale = tf.where(hi > lo, 255.0 / tf.maximum(hi - lo, 1e-6), 1.0)
    return tf.where(hi > lo, (x - lo) * scale, x)


def _equalize_channel(c: tf.Tensor) -> tf.Tensor:
    """PIL's ImageOps.equalize for one channel."""
    values = tf.cast(c, tf.int32)
    hist = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)
    last = tf.gather(hist, tf.reduce_max(tf.where(hist > 0)))
    step = (tf.reduce_sum(hist) - last) // 255
    lut = tf.minimum((tf.cumsum(hist, exclusive=True) + step // 2) // tf.maximum(step, 1), 255)
    return tf.where(step > 0, tf.cast(tf.gather(lut, values), tf.float32), c)


def equalize(x, m, sign):
    return tf.stack([_equalize_channel(x[..., i]) for i in range(3)], axis=-1)


def invert(x, m, sign):
    return 255.0 - x


def _affine(x: tf.Tensor, transform: list) -> tf.Tensor:
    """Output pixel (u, v) takes input (a0 u + a1 v + a2, b0 u + b1 v + b2), filled with `FILL`."""
    shape = tf.shape(x)[:2]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None], transforms=tf.cast(tf.stack(transform + [0.0, 0.0])[None], tf.float32), output_shape=shape,
        fill_value=FILL, interpolation="BILINEAR", fill_mode="CONSTANT")
    return out[0]


def rotate(x, m, sign):
    angle = sign * m / LEVEL_DENOM * 30.0 * math.pi / 180.0
    h, w = tf.cast(tf.shape(x)[0], tf.float32), tf.cast(tf.shape(x)[1], tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    c, s = tf.cos(angle), tf.sin(angle)
    return _affine(x, [c, s, cx - c * cx - s * cy, -s, c, cy + s * cx - c * cy])


def shear_x(x, m, sign):
    return _affine(x, [1.0, sign * m / LEVEL_DENOM * 0.3, 0.0, 0.0, 1.0, 0.0])


def shear_y(x, m, sign):
    return _affine(x, [1.0, 0.0, 0.0, sign * m / LEVEL_DENOM * 0.3, 1.0, 0.0])


def translate_x(x, m, sign):
    pixels = sign * m / LEVEL_DENOM * 0.45 * tf.cast(tf.shape(x)[1], tf.float32)
    return _affine(x, [1.0, 0.0, pixels, 0.0, 1.0, 0.0])


def translate_y(x, m, sign):
    pixels = sign * m / LEVEL_DENOM * 0.45 * tf.cast(tf.shape(x)[0], tf.float32)
    return _affine(x, [1.0, 0.0, 0.0, 0.0, 1.0, pixels])


def posterize(x, m, sign):
    bits = tf.cast(m / LEVEL_DENOM * 4, tf.int32)  # timm: int(level / 10 * 4) bits kept
    shift = tf.cast(8 - bits, tf.uint8)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(tf.cast(x, tf.uint8), shift), shift), tf.float32)


def solarize(x, m, sign):
    threshold = tf.floor(m / LEVEL_DENOM * 256.0)
    return tf.where(x >= threshold, 255.0 - x, x)


def solarize_add(x, m, sign):
    return tf.where(x < 128.0, tf.minimum(x + tf.floor(m / LEVEL_DENOM * 110.0), 255.0), x)


def _enhance_factor(m):
    return m / LEVEL_DENOM * 1.8 + 0.1


def color(x, m, sign):
    return _blend(_gray(x), x, _enhance_factor(m))


def contrast(x, m, sign):
    return _blend(tf.round(tf.reduce_mean(_gray(x))), x, _enhance_factor(m))


def brightness(x, m, sign):
    return _blend(tf.zeros_like(x), x, _enhance_factor(m))


def sharpness(x, m, sign):
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    smooth = tf.nn.depthwise_conv2d(x[None], tf.tile(kernel[:, :, None, None], [1, 1, 3, 1]), [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(tf.round(smooth), [[1, 1], [1, 1], [0, 0]])
    inner = tf.pad(tf.ones_like(smooth[1:-1, 1:-1]), [[1, 1], [1, 1], [0, 0]])  # PIL keeps the border
    degenerate = inner * smooth + (1.0 - inner) * x
    return _blend(degenerate, x, _enhance_factor(m))


# timm's `_RAND_TRANSFORMS`, in its order.
OPS = (auto_contrast, equalize, invert, rotate, posterize, solarize, solarize_add, color, contrast, brightness,
       sharpness, shear_x, shear_y, translate_x, translate_y)


def rand_augment(image: tf.Tensor, seed: tf.Tensor, magnitude: float, magnitude_std: float = 0.0,
                 num_ops: int = 2) -> tf.Tensor:
    """`num_ops` ops drawn for this image alone (stateless, from `seed`), each applied with p=0.5."""
    x = tf.cast(image, tf.float32)
    for s in tf.unstack(tf.random.experimental.stateless_split(seed, num_ops)):
        draws = tf.random.stateless_uniform([3], s)
        op = tf.cast(draws[0] * len(OPS), tf.int32)
        m = tf.constant(magnitude, tf.float32)
        if magnitude_std > 0:
            m += magnitude_std * tf.random.stateless_normal([], s + 1)
        m = tf.clip_by_value(m, 0.0, LEVEL_DENOM)
        sign = tf.where(draws[2] < 0.5, -1.0, 1.0)
        branches = [lambda f=f: _finish(f(x, m, sign)) for f in OPS]
        x = tf.cond(draws[1] < OP_PROBABILITY, lambda: tf.switch_case(tf.minimum(op, len(OPS) - 1), branches),
                    lambda: x)
        x = tf.ensure_shape(x, image.shape)
    return x


def drawn_ops(seed: tf.Tensor, num_ops: int = 2) -> list[tuple[int, bool]]:
    """(op index, applied) for each draw of `rand_augment` with this seed, to inspect and test it."""
    out = []
    for s in tf.unstack(tf.random.experimental.stateless_split(seed, num_ops)):
        draws = tf.random.stateless_uniform([3], s).numpy()
        out.append((min(int(draws[0] * len(OPS)), len(OPS) - 1), bool(draws[1] < OP_PROBABILITY)))
    return out
