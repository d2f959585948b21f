"""RandAugment per image, with timm's semantics, as tf.data ops seeded by (seed, element index).

Keras' `RandAugment` layer draws its ops once per call and computes every candidate transform,
selecting with `where`: on a batch every image gets the same two ops, at ~65x the cost of no
augmentation. Here each image draws its own: `num_ops` times, one of timm's 15 `_RAND_TRANSFORMS`
is picked (with replacement) and applied with probability 0.5 at magnitude M (+ N(0, mstd) noise,
clipped to [0, 10]); `tf.switch_case` runs only the op drawn. Ops work on float32 HxWx3 images in
[0, 255] and round to whole values after each op, as PIL's uint8 ops do. Stateless random numbers
from (seed, index) make a resumed run see the same augmentation. Keras' per-image layers take a
seed generator, not a per-element seed, which is why the ops are written here.

Written for TensorFlow's CPU kernels, where the input pipeline runs (measured on 224x224x3, one
core): a broadcasting `tf.where` (SelectV2) costs ~1 ms against 0.13 ms for the same-shape
`Select`; an op broadcasting a per-channel vector ~0.47 ms against ~0.2 ms for a 3x3 `matmul` or
`bias_add`; `ImageProjectiveTransformV3` ~2 ms against ~0.3 ms for a translation as two shifted
copies. Hence `_select`, the channel matrices and `_shift`.
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


def _select(condition: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """`tf.where` for same-shape operands (the non-broadcasting kernel, ~8x faster on CPU)."""
    return tf.raw_ops.Select(condition=condition, x=x, y=y)


def _pixels(x: tf.Tensor) -> tf.Tensor:
    return tf.reshape(x, [-1, 3])


def _channel_map(x: tf.Tensor, matrix: tf.Tensor, bias: tf.Tensor | None = None) -> tf.Tensor:
    """Each pixel's RGB times a 3x3 `matrix` (plus a per-channel `bias`), as one matmul."""
    out = tf.matmul(_pixels(x), matrix)
    if bias is not None:
        out = tf.nn.bias_add(out, bias)
    return tf.reshape(out, tf.shape(x))


def _gray_weights() -> tf.Tensor:
    return tf.constant(GRAY)[:, None]


def _blend_gray(x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """`gray + factor * (x - gray)` per pixel: the matrix factor * I + (1 - factor) * GRAY per column."""
    matrix = factor * tf.eye(3) + (1.0 - factor) * tf.tile(_gray_weights(), [1, 3])
    return _channel_map(x, matrix)


def _blend(degenerate: tf.Tensor, x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    return degenerate + factor * (x - degenerate)


def auto_contrast(x, m, sign):
    """PIL's ImageOps.autocontrast: each channel stretched from its [min, max] to [0, 255]."""
    channels = tf.transpose(_pixels(x))  # the per-channel reductions run along rows
    lo, hi = tf.reduce_min(channels, axis=1), tf.reduce_max(channels, axis=1)
    flat = hi <= lo
    scale = tf.where(flat, 1.0, 255.0 / tf.maximum(hi - lo, 1e-6))
    return _channel_map(x, tf.linalg.diag(scale), tf.where(flat, 0.0, -lo * scale))


def equalize(x, m, sign):
    """PIL's ImageOps.equalize: each channel through the look-up table of its histogram."""
    values = tf.transpose(tf.cast(_pixels(x), tf.int32))  # [3, pixels]
    hist = tf.math.bincount(values, minlength=256, maxlength=256, axis=-1)  # [3, 256]
    last = tf.gather(hist, 255 - tf.argmax(tf.reverse(hist, [1]) > 0, axis=1, output_type=tf.int32),
                     batch_dims=1)  # the count of each channel's highest value
    step = (tf.reduce_sum(hist, axis=1) - last) // 255
    lut = tf.minimum((tf.cumsum(hist, axis=1, exclusive=True) + step[:, None] // 2) // tf.maximum(step, 1)[:, None],
                     255)
    identity = tf.broadcast_to(tf.range(256), [3, 256])
    lut = tf.where(step[:, None] > 0, lut, identity)  # a channel of one value stays as it is
    return tf.reshape(tf.transpose(tf.cast(tf.gather(lut, values, batch_dims=1), tf.float32)), tf.shape(x))


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


def _shear(x: tf.Tensor, factor: tf.Tensor, axis: int) -> tf.Tensor:
    """`_affine` for a shear: output (u, v) takes input at u + factor * v along `axis` (1: x, 0: y), v the
    other coordinate. Each row (column) is one bilinear `crop_and_resize` box (~3x faster), on the image
    padded by one pixel of `FILL` so that the taps at the border blend with the fill as `_affine` does."""
    lines, n = tf.shape(x)[1 - axis], tf.shape(x)[axis]
    pad = [[0, 0], [0, 0], [0, 0]]
    pad[axis] = [1, 1]
    padded = tf.pad(x, pad, constant_values=FILL)
    v = tf.range(tf.cast(lines, tf.float32))
    across = v / tf.maximum(tf.cast(lines, tf.float32) - 1.0, 1.0)  # each box's line, normalised
    span = tf.cast(n + 1, tf.float32)  # the padded length - 1
    start, end = (factor * v + 1.0) / span, (factor * v + tf.cast(n, tf.float32)) / span
    if axis == 1:  # one box per row, crop [1, width]
        boxes, crop = tf.stack([across, start, across, end], axis=1), [1, n]
    else:  # one box per column, crop [height, 1]
        boxes, crop = tf.stack([start, across, end, across], axis=1), [n, 1]
    out = tf.image.crop_and_resize(padded[None], boxes, tf.zeros([lines], tf.int32), crop, extrapolation_value=FILL)
    if axis == 1:
        return tf.reshape(out, tf.shape(x))
    return tf.transpose(tf.reshape(out, [lines, n, 3]), [1, 0, 2])


def shear_x(x, m, sign):
    return _shear(x, sign * m / LEVEL_DENOM * 0.3, axis=1)


def shear_y(x, m, sign):
    return _shear(x, sign * m / LEVEL_DENOM * 0.3, axis=0)


def _shift(x: tf.Tensor, pixels: tf.Tensor, axis: int) -> tf.Tensor:
    """Output (u, v) takes input at u + `pixels` along `axis` (1: x, 0: y), bilinear, filled with `FILL`:
    `_affine` for a translation, as two whole-pixel shifted copies blended by the fraction."""
    n = tf.shape(x)[axis]
    whole = tf.floor(pixels)
    frac = pixels - whole
    along = tf.one_hot(axis, 3, dtype=tf.int32)

    def copy(shift):  # out[u] = x[u + shift], the fill beyond the image
        shift = tf.clip_by_value(shift, -n, n)
        part = tf.slice(x, along * tf.maximum(shift, 0), tf.shape(x) - along * tf.abs(shift))
        return tf.pad(part, along[:, None] * tf.stack([tf.maximum(-shift, 0), tf.maximum(shift, 0)]),
                      constant_values=FILL)

    at = copy(tf.cast(whole, tf.int32))
    return at + frac * (copy(tf.cast(whole, tf.int32) + 1) - at)


def translate_x(x, m, sign):
    return _shift(x, sign * m / LEVEL_DENOM * 0.45 * tf.cast(tf.shape(x)[1], tf.float32), axis=1)


def translate_y(x, m, sign):
    return _shift(x, sign * m / LEVEL_DENOM * 0.45 * tf.cast(tf.shape(x)[0], tf.float32), axis=0)


def posterize(x, m, sign):
    bits = tf.cast(m / LEVEL_DENOM * 4, tf.int32)  # timm: int(level / 10 * 4) bits kept
    shift = tf.cast(8 - bits, tf.uint8)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(tf.cast(x, tf.uint8), shift), shift), tf.float32)


def solarize(x, m, sign):
    threshold = tf.floor(m / LEVEL_DENOM * 256.0)
    return _select(x >= threshold, 255.0 - x, x)


def solarize_add(x, m, sign):
    return _select(x < 128.0, tf.minimum(x + tf.floor(m / LEVEL_DENOM * 110.0), 255.0), x)


def _enhance_factor(m):
    return m / LEVEL_DENOM * 1.8 + 0.1


def color(x, m, sign):
    return _blend_gray(x, _enhance_factor(m))


def contrast(x, m, sign):
    mean = tf.round(tf.reduce_mean(tf.matmul(_pixels(x), _gray_weights())))
    return _blend(mean, x, _enhance_factor(m))


def brightness(x, m, sign):
    return _blend(tf.zeros_like(x), x, _enhance_factor(m))


def sharpness(x, m, sign):
    """PIL's ImageEnhance.Sharpness: blend with the 3x3 smoothed image inside, the border kept."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    smooth = tf.nn.depthwise_conv2d(x[None], tf.tile(kernel[:, :, None, None], [1, 1, 3, 1]), [1, 1, 1, 1], "VALID")[0]
    inner = x[1:-1, 1:-1]
    change = _blend(tf.round(smooth), inner, _enhance_factor(m)) - inner
    return x + tf.pad(change, [[1, 1], [1, 1], [0, 0]])


# timm's `_RAND_TRANSFORMS`, in its order.
OPS = (auto_contrast, equalize, invert, rotate, posterize, solarize, solarize_add, color, contrast, brightness,
       sharpness, shear_x, shear_y, translate_x, translate_y)
WHOLE = (equalize, invert, posterize, solarize, solarize_add)  # give whole values in range: no `_finish`


def rand_augment(image: tf.Tensor, seed: tf.Tensor, magnitude: float, magnitude_std: float = 0.0,
                 num_ops: int = 2) -> tf.Tensor:
    """`num_ops` ops drawn for this image alone (stateless, from `seed`), each applied with p=0.5.
    `image` holds whole values in [0, 255]; so does the float32 result."""
    x = tf.cast(image, tf.float32)
    for s in tf.unstack(tf.random.experimental.stateless_split(seed, num_ops)):
        draws = tf.random.stateless_uniform([3], s)
        op = tf.minimum(tf.cast(draws[0] * len(OPS), tf.int32), len(OPS) - 1)
        m = tf.constant(magnitude, tf.float32)
        if magnitude_std > 0:
            m += magnitude_std * tf.random.stateless_normal([], s + 1)
        m = tf.clip_by_value(m, 0.0, LEVEL_DENOM)
        sign = tf.where(draws[2] < 0.5, -1.0, 1.0)
        branches = [lambda f=f: f(x, m, sign) if f in WHOLE else _finish(f(x, m, sign)) for f in OPS]
        skipped = len(OPS)  # the last branch: this draw is not applied
        x = tf.switch_case(tf.where(draws[1] < OP_PROBABILITY, op, skipped), branches + [lambda: x])
        x = tf.ensure_shape(x, image.shape)
    return x


def drawn_ops(seed: tf.Tensor, num_ops: int = 2) -> list[tuple[int, bool]]:
    """(op index, applied) for each draw of `rand_augment` with this seed, to inspect and test it."""
    out = []
    for s in tf.unstack(tf.random.experimental.stateless_split(seed, num_ops)):
        draws = tf.random.stateless_uniform([3], s).numpy()
        out.append((min(int(draws[0] * len(OPS)), len(OPS) - 1), bool(draws[1] < OP_PROBABILITY)))
    return out
