"""Pretrained tags as timm names them: defaults, per-tag evaluation settings, where each lives."""

from __future__ import annotations

import pytest

import keras_models as km
from keras_models.models import eval_settings
from keras_models.registry import resolve


@pytest.mark.parametrize("name, default", [
    ("rexnet_130", "nav_in1k"), ("rexnetr_200", "sw_in12k_ft_in1k"), ("tf_efficientnet_b0", "ns_jft_in1k"),
    ("efficientnet_b0", "ra_in1k"), ("efficientnet_b5", "sw_in12k_ft_in1k"), ("tf_efficientnet_lite0", "in1k"),
    ("efficientnet_es", "ra_in1k"), ("efficientnetv2_rw_s", "ra2_in1k"), ("tf_efficientnetv2_s", "in21k_ft_in1k"),
])
def test_a_bare_name_takes_timms_default_tag(name, default):
    assert resolve(name)[1].tag == default


@pytest.mark.slow
def test_each_tag_evaluates_as_published():
    info = km.model_info("efficientnet_b0.ra4_e3600_r224_in1k")
    assert (info["input_size"], info["train_input_size"], info["crop_pct"]) == ((256, 256, 3), (224, 224, 3), 1.0)
    assert info["mean"] == (127.5,) * 3 and info["top1"] == 78.6 and info["license"] == "apache-2.0"
    assert km.model_info("rexnet_130")["name"] == "rexnet_130.nav_in1k"
    _, tag, ap, _, _ = eval_settings("tf_efficientnet_b0.ap_in1k")  # AdvProp: 0.5/0.5, not the spec's ImageNet
    assert ap.mean == (0.5,) * 3 and tag.top1 == 77.09
    _, _, lite, _, _ = eval_settings("tf_efficientnet_lite0")  # timm's 0.5/0.5 is TF's 127/128 within a level
    assert lite.mean == (127 / 255,) * 3 and lite.std == (128 / 255,) * 3
    assert resolve("rexnetr_200.sw_in12k")[1].num_classes == 11821
    assert resolve("rexnet_300")[1].where() == "hf://timm/rexnet_300.nav_in1k"  # only the Hub has it
    _, tag, _, crop, interpolation = eval_settings("tf_efficientnetv2_m.in1k")
    assert (tag.crop_mode, crop, interpolation) == ("squash", 1.0, "bicubic")
    assert km.create_model("efficientnet_b0.ra4_e3600_r224_in1k").input_shape == (None, 256, 256, 3)


def test_tags_in_listings_and_one_line_for_an_unknown_tag():
    tagged = km.list_models("rexnet_1*", pretrained=True)
    assert tagged == ["rexnet_100.nav_in1k", "rexnet_130.nav_in1k", "rexnet_150.nav_in1k"]
    assert "efficientnet_b0.ra4_e3600_r224_in1k" in km.list_models("efficientnet_b0*", pretrained=True)
    with pytest.raises(ValueError, match=r"unknown pretrained tag rexnet_130\.foo; known: rexnet_130\.nav_in1k"):
        km.create_model("rexnet_130.foo")
    with pytest.raises(ValueError, match="no published ImageNet weights are known for 'rexnetr_100'"):
        km.create_model("rexnetr_100", pretrained=True)


def test_every_tag_says_where_it_lives_and_how_it_scores():
    for name in km.list_models(pretrained=True):
        entry, tag = resolve(name)
        assert tag.hf_hub_id == f"timm/{name}" or tag.tag == "keras_in1k", name
        assert tag.license and tag.input_size and tag.crop_pct and tag.interpolation, name
        if tag.url and tag.source == "timm":
            assert tag.url.rsplit("-", 1)[-1].startswith(tag.hash_prefix), name
        if tag.num_classes == 1000 and name != "efficientnet_b1.ra4_e3600_r240_in1k":
            assert tag.top1 and tag.top5 or name == "efficientnet_b0.ra4_e3600_r224_in1k", name


@pytest.mark.slow
def test_keras_applications_constructors_keep_keras_weights(monkeypatch, tmp_path):
    """`EfficientNetB0(weights="imagenet")` is keras.applications' file, `create_model` timm's default
    tag (both refused here by a closed mirror port, naming the file each went for)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_MODELS_WEIGHTS_MIRROR", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(Exception, match=r"efficientnetb0\.h5"):
        km.EfficientNetB0(weights="imagenet")
    with pytest.raises(Exception, match=r"tf_efficientnet_b0_ns-c0e6a31c\.pth"):
        km.create_model("tf_efficientnet_b0", weights="imagenet")


def test_the_guides_weights_table_lists_every_tag():
    from helpers import ROOT

    guide = (ROOT / "docs" / "weights-and-hub.md").read_text()
    for name in km.list_models(pretrained=True):
        arch, tag = name.split(".", 1)
        assert f"| `{arch}` | `{tag}`" in guide, f"{name} is missing from docs/weights-and-hub.md's weights table"


def test_squash_tags_evaluate_without_keeping_the_aspect():
    """timm's crop_mode="squash" (tf_efficientnetv2_m/l): both sides to size/crop_pct, then the centre."""
    import numpy as np
    import tensorflow as tf

    from keras_models.preprocessing import EvalTransform

    image = np.random.default_rng(0).integers(0, 255, (60, 120, 3)).astype("uint8")
    squash = EvalTransform(32, 1.0, "bilinear", "squash").eval_image(image).numpy()
    expected = tf.image.resize(tf.cast(image, tf.float32), [32, 32], antialias=True).numpy()
    np.testing.assert_allclose(squash, np.clip(expected, 0, 255), atol=1e-4)
    assert not np.allclose(EvalTransform(32, 1.0, "bilinear").eval_image(image).numpy(), squash)
    with pytest.raises(ValueError, match="crop mode 'stretch' is not one of center, squash"):
        EvalTransform(32, 1.0, "bilinear", "stretch").eval_image(image)
