"""ReXNet (Han et al., CVPR 2021): v1 at any width/depth, -lite (clovaai) and -R (timm rounded).

Channels follow the official linear rule exactly, with Python's half-to-even `round`
(1.0x: 38.5 -> 38, 128.5 -> 128). BN epsilon 1e-5 and symmetric stride-2 padding, because
the published weights were trained in PyTorch.
"""

from __future__ import annotations

import math

from keras_models.layers import PYTORCH_STYLE, BlockSpec
from keras_models.models.tags import timm_tags
from keras_models.registry import ModelEntry, register
from keras_models.spec import NetSpec, make_divisible, stage_letter

STAGE_BLOCKS = (1, 2, 2, 3, 3, 5)
STAGE_STRIDES = (1, 2, 2, 2, 1, 2)


def rexnet_spec(
    width: float = 1.0,
    depth: float = 1.0,
    *,
    se: bool = True,
    se_ratio: float = 1 / 12,
    ch_div: int = 1,
    lite: bool = False,
    dropout_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    name: str | None = None,
) -> NetSpec:
    """The block table of ReXNet v1 (`lite=False`) or ReXNet-lite (`lite=True`, no SE, ReLU6)."""
    if width <= 0 or depth <= 0:
        raise ValueError(f"width and depth must be positive, got width={width}, depth={depth}")
    if lite:
        depth, se, ch_div = 1.0, False, 8  # the lite model has no depth multiplier
    repeats = [math.ceil(n * depth) for n in STAGE_BLOCKS]
    n = sum(repeats)
    final_ch, step_den = (164, n - 1) if lite else (180, n)

    def channels(v: float) -> int:
        if lite:
            return make_divisible(int(round(v)), 8)
        return make_divisible(round(v), ch_div) if ch_div > 1 else int(round(v))

    base = 16 / width if width < 1.0 else 16
    stem_ch = channels((32 / width if width < 1.0 else 32) * width)
    outs = []
    for _ in range(n):
        outs.append(channels(base * width))
        base += final_ch / step_den

    act, dw_act = ("relu6", "relu6") if lite else ("swish", "relu6")
    blocks, in_ch, i = [], stem_ch, 0
    for stage, (reps, stage_stride) in enumerate(zip(repeats, STAGE_STRIDES)):
        for j in range(reps):
            stride, out_ch = (stage_stride if j == 0 else 1), outs[i]
            t = 1 if stage == 0 else 6
            exp_ch = in_ch if t == 1 else (in_ch * t if ch_div == 1 else make_divisible(round(in_ch * t), ch_div))
            use_se = se and stage >= 2
            se_ch = (int(exp_ch * se_ratio) if ch_div == 1 else make_divisible(int(exp_ch * se_ratio), ch_div))
            shortcut = stride == 1 and in_ch <= out_ch
            blocks.append(BlockSpec(
                name=f"block{stage + 1}{stage_letter(j)}_", stage=stage, index=j,
                in_ch=in_ch, out_ch=out_ch, exp_ch=exp_ch, kernel=3, stride=stride,
                se_ch=max(1, se_ch) if use_se else 0, act=act, dw_act=dw_act,
                se_act="relu", se_bn=True, act_after_se=True,
                residual="partial" if shortcut else "none",
                drop_rate=drop_path_rate * i / (n - 1) if shortcut else 0.0,
            ))
            in_ch, i = out_ch, i + 1

    if lite:
        head_ch = int(1280 * width) if width > 1.0 else 1280
    else:
        head_ch = make_divisible(1280 * width, ch_div) if ch_div > 1 else int(1280 * width)
    if name is None:
        prefix = "rexnet_lite_" if lite else ("rexnetr_" if ch_div > 1 else "rexnet_")
        name = f"{prefix}{round(width * 100)}" + ("" if depth == 1.0 else f"_d{round(depth * 100)}")
    return NetSpec(
        name=name, stem_ch=stem_ch, blocks=tuple(blocks), head_ch=head_ch,
        act=act, head_hidden=1024 if lite else 0, dropout=dropout_rate,
        style=PYTORCH_STYLE, default_size=224, family="rexnet",
    )


_V1 = {  # width: published top-1, top-5 (the paper's; the weights' own are in their tags)
    100: (77.9, 93.9), 130: (79.5, 94.7), 150: (80.3, 95.2), 200: (81.6, 95.7), 300: (82.8, 96.2),
}
_LITE = {100: (76.2, 92.8), 130: (77.8, 93.8), 150: (78.6, 94.2), 200: (80.2, 95.0)}
_R = {100: None, 130: None, 150: None, 200: (82.6, 96.4), 300: (84.0, 97.0)}

def _make_spec(width: float, name: str, **fixed):
    """The registry's spec factory for one width; stochastic depth answers to both names
    (timm's `drop_path_rate`, keras.applications' `drop_connect_rate`)."""
    def make_spec(dropout_rate: float = 0.2, drop_path_rate: float = 0.0, drop_connect_rate: float | None = None,
                  se: bool = True, se_ratio: float = 1 / 12) -> NetSpec:
        rate = drop_path_rate if drop_connect_rate is None else drop_connect_rate
        return rexnet_spec(width, dropout_rate=dropout_rate, drop_path_rate=rate, se=se, se_ratio=se_ratio,
                           name=name, **fixed)

    return make_spec


for _w, (_top1, _top5) in _V1.items():
    register(ModelEntry(
        name=f"rexnet_{_w}", family="rexnet", make_spec=_make_spec(_w / 100, f"rexnet_{_w}"),
        crop_pct=0.875, interpolation="bicubic", top1=_top1, top5=_top5, tags=timm_tags(f"rexnet_{_w}"),
    ))
for _w, (_top1, _top5) in _LITE.items():
    register(ModelEntry(
        name=f"rexnet_lite_{_w}", family="rexnet", make_spec=_make_spec(_w / 100, f"rexnet_lite_{_w}", lite=True),
        crop_pct=0.875, interpolation="bicubic", top1=_top1, top5=_top5,
    ))
for _w, _acc in _R.items():
    register(ModelEntry(
        name=f"rexnetr_{_w}", family="rexnet",
        make_spec=_make_spec(_w / 100, f"rexnetr_{_w}", ch_div=16 if _w >= 300 else 8),
        crop_pct=0.95 if _acc else 0.875, interpolation="bicubic",
        top1=_acc[0] if _acc else None, top5=_acc[1] if _acc else None, tags=timm_tags(f"rexnetr_{_w}"),
    ))
