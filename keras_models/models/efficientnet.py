"""EfficientNet B0-B8, Lite0-4, EdgeTPU S/M/L and V2 (B0-B3/S/M/L, timm's rw T/S/M), in timm's two families.

timm names EfficientNets by where their weights were trained, and so do we: `tf_efficientnet_*`
(TF SAME padding, BatchNorm eps 1e-3: keras.applications' and the TF ports' weights) and
`efficientnet_*` (PyTorch symmetric padding, eps 1e-5: timm's own weights, keras-hub's presets).
The two have identical state-dict keys, so only the name, or the checkpoint's own config, tells
them apart. The keras.applications constructors (`EfficientNetB0(...)`) are the TF family.

Layer names follow keras.applications exactly, so its `.h5` weights load by name. TF padding is
Keras "same" everywhere, which equals TF SAME for static *and* dynamic input sizes (the
keras.applications ZeroPadding trick breaks at odd sizes with `input_shape=(None, None, 3)`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from keras_models.layers import PYTORCH_STYLE, BlockSpec, NetStyle
from keras_models.models.tags import timm_tags
from keras_models.registry import ModelEntry, Pretrained, register
from keras_models.spec import NetSpec, make_divisible, round_repeats, stage_letter


@dataclass(frozen=True)
class Stage:
    kernel: int
    repeats: int
    in_ch: int
    out_ch: int
    expand: int
    stride: int
    se_ratio: float
    fused: bool = False
    edge: bool = False  # timm's EdgeResidual at ratio 1: k x k conv then 1x1 (not one conv)
    expand_from: int | None = None  # timm `fc`: expansion width counted from this many channels
    skip: bool = True  # timm `noskip`: no residual even where shapes allow


V1_STAGES = (
    Stage(3, 1, 32, 16, 1, 1, 0.25),
    Stage(3, 2, 16, 24, 6, 2, 0.25),
    Stage(5, 2, 24, 40, 6, 2, 0.25),
    Stage(3, 3, 40, 80, 6, 2, 0.25),
    Stage(5, 3, 80, 112, 6, 1, 0.25),
    Stage(5, 4, 112, 192, 6, 2, 0.25),
    Stage(3, 1, 192, 320, 6, 1, 0.25),
)
V2_STAGES = {
    "base": (  # B0-B3 are scaled from this one
        Stage(3, 1, 32, 16, 1, 1, 0, True),
        Stage(3, 2, 16, 32, 4, 2, 0, True),
        Stage(3, 2, 32, 48, 4, 2, 0, True),
        Stage(3, 3, 48, 96, 4, 2, 0.25),
        Stage(3, 5, 96, 112, 6, 1, 0.25),
        Stage(3, 8, 112, 192, 6, 2, 0.25),
    ),
    "s": (
        Stage(3, 2, 24, 24, 1, 1, 0, True),
        Stage(3, 4, 24, 48, 4, 2, 0, True),
        Stage(3, 4, 48, 64, 4, 2, 0, True),
        Stage(3, 6, 64, 128, 4, 2, 0.25),
        Stage(3, 9, 128, 160, 6, 1, 0.25),
        Stage(3, 15, 160, 256, 6, 2, 0.25),
    ),
    "m": (
        Stage(3, 3, 24, 24, 1, 1, 0, True),
        Stage(3, 5, 24, 48, 4, 2, 0, True),
        Stage(3, 5, 48, 80, 4, 2, 0, True),
        Stage(3, 7, 80, 160, 4, 2, 0.25),
        Stage(3, 14, 160, 176, 6, 1, 0.25),
        Stage(3, 18, 176, 304, 6, 2, 0.25),
        Stage(3, 5, 304, 512, 6, 1, 0.25),
    ),
    "l": (
        Stage(3, 4, 32, 32, 1, 1, 0, True),
        Stage(3, 7, 32, 64, 4, 2, 0, True),
        Stage(3, 7, 64, 96, 4, 2, 0, True),
        Stage(3, 10, 96, 192, 4, 2, 0.25),
        Stage(3, 19, 192, 224, 6, 1, 0.25),
        Stage(3, 25, 224, 384, 6, 2, 0.25),
        Stage(3, 7, 384, 640, 6, 1, 0.25),
    ),
}

# EfficientNet-EdgeTPU S/M/L (timm `_gen_efficientnet_edge`): fused stages, ReLU, no SE
EDGE_STAGES = (
    Stage(3, 1, 32, 24, 4, 1, 0, True, expand_from=24, skip=False),
    Stage(3, 2, 24, 32, 8, 2, 0, True),
    Stage(3, 4, 32, 48, 8, 2, 0, True),
    Stage(5, 5, 48, 96, 8, 2, 0),
    Stage(5, 4, 96, 144, 8, 1, 0),
    Stage(5, 2, 144, 192, 8, 2, 0),
)
# timm's own EfficientNetV2 (`efficientnetv2_rw_*`, "rw" = Ross Wightman): V2-S from the paper's figure
RW_STAGES = (
    Stage(3, 2, 24, 24, 1, 1, 0, True, edge=True),
    Stage(3, 4, 24, 48, 4, 2, 0, True),
    Stage(3, 4, 48, 64, 4, 2, 0, True),
    Stage(3, 6, 64, 128, 4, 2, 0.25),
    Stage(3, 9, 128, 160, 6, 1, 0.25),
    Stage(3, 15, 160, 272, 6, 2, 0.25),
)

TF_STYLE = NetStyle(bn_epsilon=1e-3, bn_momentum=0.99, padding="same")
V2_STYLE = NetStyle(bn_epsilon=1e-3, bn_momentum=0.9, padding="same", dw_name="dwconv2")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def efficientnet_spec(
    stages: tuple[Stage, ...],
    width: float,
    depth: float | tuple[float, ...],
    resolution: int,
    dropout_rate: float,
    *,
    name: str,
    variant: str = "v1",  # "v1" | "lite" | "v2" | "edge" | "v2_rw"
    drop_connect_rate: float = 0.2,
    mean: tuple = IMAGENET_MEAN,
    std: tuple = IMAGENET_STD,
    style: NetStyle | None = None,
    head: int = 1280,
) -> NetSpec:
    """Scale a base stage table (compound scaling; `depth` per stage where a tuple) into a block
    list (TF numerics unless `style`)."""
    lite, v2 = variant == "lite", variant == "v2"
    # V1/Lite keep the "never round down by more than 10%" rule (B3 stage 1: 19.2 -> 24); V2 drops it.
    round_limit = 0.0 if v2 else 0.9

    def filters(c: int) -> int:
        return make_divisible(c * width, 8, round_limit=round_limit)

    act = {"lite": "relu6", "edge": "relu"}.get(variant, "swish")
    stem_ch = 32 if lite else filters(stages[0].in_ch)
    depths = depth if isinstance(depth, tuple) else (depth,) * len(stages)
    repeats = [round_repeats(s.repeats, d) for s, d in zip(stages, depths)]
    if lite:  # fix_first_last: the first and last stages are not deepened
        repeats[0], repeats[-1] = stages[0].repeats, stages[-1].repeats
    total, b, blocks, in_ch = sum(repeats), 0, [], stem_ch
    for i, (stage, reps) in enumerate(zip(stages, repeats)):
        out_ch = filters(stage.out_ch)
        for j in range(reps):
            stride = stage.stride if j == 0 else 1
            declared_in = filters(stage.in_ch) if j == 0 else out_ch  # SE width uses the table's input
            se_ch = 0 if lite or not stage.se_ratio else max(1, int(declared_in * stage.se_ratio))
            expand_from = filters(stage.expand_from) if stage.expand_from and j == 0 else in_ch
            blocks.append(BlockSpec(
                name=f"block{i + 1}{stage_letter(j)}_", stage=i, index=j,
                in_ch=in_ch, out_ch=out_ch, exp_ch=make_divisible(expand_from * stage.expand, 8),
                kernel=stage.kernel, stride=stride, se_ch=se_ch,
                act=act, dw_act=act, se_act="swish", fused=stage.fused, edge=stage.edge,
                residual="add" if stride == 1 and in_ch == out_ch and stage.skip else "none",
                drop_rate=drop_connect_rate * b / total,
            ))
            in_ch, b = out_ch, b + 1
    return NetSpec(
        name=name, stem_ch=stem_ch, blocks=tuple(blocks),
        head_ch=1280 if lite else filters(head), act=act, dropout=dropout_rate,
        style=style or (V2_STYLE if v2 else TF_STYLE), default_size=resolution, mean=mean, std=std,
    )


def _register(name: str, keras_name: str, *, stages, width: float, depth, res: int, dropout: float, crop: float,
              variant: str, top1: float | None = None, top5: float | None = None, keras_tag: Pretrained | None = None,
              interpolation: str = "bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD, style: NetStyle | None = None,
              head: int = 1280) -> None:
    """One architecture; its tags are timm's (default first), then keras.applications' file if any."""
    def make_spec(dropout_rate: float = dropout, drop_connect_rate: float = 0.2,
                  drop_path_rate: float | None = None) -> NetSpec:
        """Stochastic depth answers to both names: keras.applications' `drop_connect_rate`, timm's `drop_path_rate`."""
        if drop_path_rate is not None:
            drop_connect_rate = drop_path_rate
        return efficientnet_spec(
            stages, width, depth, res, dropout_rate, name=keras_name, variant=variant,
            drop_connect_rate=drop_connect_rate, mean=mean, std=std, style=style, head=head,
        )

    register(ModelEntry(
        name=name, family="efficientnet", make_spec=make_spec, crop_pct=crop, interpolation=interpolation,
        top1=top1, top5=top5, tags=timm_tags(name) + ((keras_tag,) if keras_tag else ()),
    ))


KERAS_TAG = "keras_in1k"  # keras.applications' .h5 (what `EfficientNetB0(weights="imagenet")` loads)


def _keras_tag(url: str, row: dict, mean, std) -> Pretrained | None:
    """keras.applications' file of a table row (None where it has none)."""
    if not row.get("md5"):
        return None
    return Pretrained(
        tag=KERAS_TAG, source="keras-applications", url=url + ".h5", md5=row["md5"], notop_url=url + "_notop.h5",
        notop_md5=row["md5_notop"], input_size=row["res"], crop_pct=row["crop"], interpolation="bicubic",
        mean=mean, std=std, top1=row["top1"], top5=row["top5"], license="apache-2.0",
    )


def _arch(row: dict, **changes) -> dict:
    """A table row as `_register` options: the keras.applications file and the stage-table key left out."""
    return {**{k: v for k, v in row.items() if k not in ("md5", "md5_notop", "table")}, **changes}


_KERAS_V1 = "https://storage.googleapis.com/keras-applications/"
_KERAS_V2 = "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"

# width, depth, input size, dropout, crop_pct, top-1/top-5, keras.applications' .h5 md5s (top, notop)
_V1 = {
    "b0": dict(width=1.0, depth=1.0, res=224, dropout=0.2, crop=0.875, top1=77.1, top5=93.3,
               md5="902e53a9f72be733fc0bcb005b3ebbac", md5_notop="50bc09e76180e00e4465e1a485ddc09d"),
    "b1": dict(width=1.0, depth=1.1, res=240, dropout=0.2, crop=0.882, top1=79.1, top5=94.4,
               md5="1d254153d4ab51201f1646940f018540", md5_notop="74c4e6b3e1f6a1eea24c589628592432"),
    "b2": dict(width=1.1, depth=1.2, res=260, dropout=0.3, crop=0.89, top1=80.1, top5=94.9,
               md5="b15cce36ff4dcbd00b6dd88e7857a6ad", md5_notop="111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": dict(width=1.2, depth=1.4, res=300, dropout=0.3, crop=0.904, top1=81.6, top5=95.7,
               md5="ffd1fdc53d0ce67064dc6a9c7960ede0", md5_notop="af6d107764bb5b1abb91932881670226"),
    "b4": dict(width=1.4, depth=1.8, res=380, dropout=0.4, crop=0.922, top1=82.9, top5=96.4,
               md5="18c95ad55216b8f92d7e70b3a046e2fc", md5_notop="ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": dict(width=1.6, depth=2.2, res=456, dropout=0.4, crop=0.934, top1=83.6, top5=96.7,
               md5="ace28f2a6363774853a83a0b21b9421a", md5_notop="38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": dict(width=1.8, depth=2.6, res=528, dropout=0.5, crop=0.942, top1=84.0, top5=96.8,
               md5="165f6e37dce68623721b423839de8be5", md5_notop="9ecce42647a20130c1f39a5d4cb75743"),
    "b7": dict(width=2.0, depth=3.1, res=600, dropout=0.5, crop=0.949, top1=84.3, top5=97.0,
               md5="8c03f828fec3ef71311cd463b6759d99", md5_notop="cbcfe4450ddf6f3ad90b1b398090fe4a"),
    "b8": dict(width=2.2, depth=3.6, res=672, dropout=0.5, crop=0.954),
}
# top-1: fp32 from the TF builder (timm's tags evaluate larger)
_LITE = {
    "lite0": dict(width=1.0, depth=1.0, res=224, dropout=0.2, crop=0.875, top1=75.1),
    "lite1": dict(width=1.0, depth=1.1, res=240, dropout=0.2, crop=0.882, top1=76.7),
    "lite2": dict(width=1.1, depth=1.2, res=260, dropout=0.3, crop=0.89, top1=77.6),
    "lite3": dict(width=1.2, depth=1.4, res=280, dropout=0.3, crop=0.904, top1=79.8),
    "lite4": dict(width=1.4, depth=1.8, res=300, dropout=0.3, crop=0.92, top1=81.5),
}
# stage table, width, depth, input size, dropout, crop_pct, top-1/top-5, keras.applications' md5s
_V2 = {
    "b0": dict(table="base", width=1.0, depth=1.0, res=224, dropout=0.2, crop=0.875, top1=78.7, top5=94.3,
               md5="21ecbf6da12460d5c40bb2f29ceb2188", md5_notop="893217f2bb855e2983157299931e43ff"),
    "b1": dict(table="base", width=1.0, depth=1.1, res=240, dropout=0.2, crop=0.882, top1=79.8, top5=95.0,
               md5="069f0534ff22adf035c89e2d9547a9dc", md5_notop="0e80663031ca32d657f9caa404b6ec37"),
    "b2": dict(table="base", width=1.1, depth=1.2, res=260, dropout=0.3, crop=0.89, top1=80.5, top5=95.1,
               md5="424e49f28180edbde1e94797771950a7", md5_notop="1dfe2e7a5d45b6632553a8961ea609eb"),
    "b3": dict(table="base", width=1.2, depth=1.4, res=300, dropout=0.3, crop=0.904, top1=82.0, top5=95.8,
               md5="1f1fc43bd98a6e4fd8fdfd551e02c7a0", md5_notop="f6abf7b5849ac99a89b50dd3fd532856"),
    "s": dict(table="s", width=1.0, depth=1.0, res=384, dropout=0.2, crop=1.0, top1=83.9, top5=96.7,
               md5="e1d88a8495beba45748fedd0cecbe016", md5_notop="af0682fb74e8c54910f2d4393339c070"),
    "m": dict(table="m", width=1.0, depth=1.0, res=480, dropout=0.3, crop=1.0, top1=85.3, top5=97.4,
               md5="a3bf6aa3276309f4fc6a34aa114c95cd", md5_notop="1b8dc055df72dde80d614482840fe342"),
    "l": dict(table="l", width=1.0, depth=1.0, res=480, dropout=0.4, crop=1.0, top1=85.7, top5=97.5,
               md5="27e6d408b53c7ebc868fefa357689935", md5_notop="b0b66b5c863aef5b46e8608fe1711615"),
}

_NATIVE_V2 = dataclasses.replace(PYTORCH_STYLE, dw_name=V2_STYLE.dw_name)  # timm's own V2 blocks
_UNPUBLISHED = dict(top1=None, top5=None)  # a native twin: the published accuracy is the TF weights'
for _k, _r in _V1.items():
    _register(f"tf_efficientnet_{_k}", f"efficientnet{_k}", stages=V1_STAGES, variant="v1", **_arch(_r),
              keras_tag=_keras_tag(f"{_KERAS_V1}efficientnet{_k}", _r, IMAGENET_MEAN, IMAGENET_STD))
    _register(f"efficientnet_{_k}", f"efficientnet{_k}", stages=V1_STAGES, variant="v1", style=PYTORCH_STYLE,
              **_arch(_r, **_UNPUBLISHED))
for _k, _r in _LITE.items():
    _register(f"tf_efficientnet_{_k}", f"efficientnet_{_k}", stages=V1_STAGES, variant="lite", **_arch(_r),
              interpolation="bicubic" if _k in ("lite0", "lite1", "lite2") else "bilinear",
              mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
    _register(f"efficientnet_{_k}", f"efficientnet_{_k}", stages=V1_STAGES, variant="lite", style=PYTORCH_STYLE,
              **_arch(_r, **_UNPUBLISHED))
for _k, _r in _V2.items():
    _mean, _std = (IMAGENET_MEAN, IMAGENET_STD) if _k.startswith("b") else ((128 / 255,) * 3, (128 / 255,) * 3)
    _register(f"tf_efficientnetv2_{_k}", f"efficientnetv2-{_k}", stages=V2_STAGES[_r["table"]], variant="v2",
              **_arch(_r), keras_tag=_keras_tag(f"{_KERAS_V2}efficientnetv2-{_k}", _r, _mean, _std),
              mean=_mean, std=_std)
    if not _k.startswith("b"):  # timm's native V2-S/M/L (untrained in timm)
        _register(f"efficientnetv2_{_k}", f"efficientnetv2-{_k}", stages=V2_STAGES[_r["table"]], variant="v2",
                  style=_NATIVE_V2, **_arch(_r, **_UNPUBLISHED))

# timm `_gen_efficientnet_edge`
_EDGE = {
    "es": dict(width=1.0, depth=1.0, res=224, dropout=0.2, crop=0.875),
    "em": dict(width=1.0, depth=1.1, res=240, dropout=0.2, crop=0.882),
    "el": dict(width=1.2, depth=1.4, res=300, dropout=0.3, crop=0.904),
}
# timm `_gen_efficientnetv2_s`: rw_t is the official V2-S table scaled, rw_s/m timm's own table
# (rw_m's depth is per stage)
_RW = {
    "rw_t": dict(stages=V2_STAGES["s"], head=1280, width=0.8, depth=0.9, res=224, dropout=0.2, crop=1.0),
    "rw_s": dict(stages=RW_STAGES, head=1792, width=1.0, depth=1.0, res=288, dropout=0.2, crop=1.0),
    "rw_m": dict(stages=RW_STAGES, head=1792, width=1.2, depth=(1.2,) * 4 + (1.6,) * 2, res=320, dropout=0.3,
                 crop=1.0),
}
for _k, _r in _EDGE.items():
    _register(f"tf_efficientnet_{_k}", f"efficientnet_{_k}", stages=EDGE_STAGES, variant="edge", **_r,
              mean=(0.5,) * 3, std=(0.5,) * 3)
    _register(f"efficientnet_{_k}", f"efficientnet_{_k}", stages=EDGE_STAGES, variant="edge", style=PYTORCH_STYLE,
              **_r)
for _k, _r in _RW.items():
    _register(f"efficientnetv2_{_k}", f"efficientnetv2_{_k}", variant="v2_rw", style=_NATIVE_V2, **_r)
