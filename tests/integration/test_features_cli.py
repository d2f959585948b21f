"""Feature pyramids, registry info, and the CLI as a user runs it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import PHOTOS, cli, run_cli

import keras_models as km

# timm feature_info channels at strides 2, 4, 8, 16, 32 (../shared/reference/rexnet.md §3.3).
REXNET_FEATURES = {"rexnet_100": [16, 38, 61, 128, 185], "rexnet_130": [21, 50, 79, 167, 240],
                   "rexnet_150": [24, 58, 92, 193, 277], "rexnet_200": [32, 77, 122, 257, 370],
                   "rexnet_300": [48, 116, 183, 386, 554]}


@pytest.mark.parametrize("name", sorted(REXNET_FEATURES))
@pytest.mark.slow
def test_rexnet_features_match_timm(name):
    model = km.create_model(name, features_only=True, input_shape=(64, 64, 3))
    assert [t["channels"] for t in model.feature_info] == REXNET_FEATURES[name]
    out = model(np.zeros((1, 64, 64, 3), "float32"))
    assert sorted(out, key=lambda k: int(k.split("_")[1])) == [f"stride_{s}" for s in (2, 4, 8, 16, 32)]
    for t in model.feature_info:
        assert out[t["name"]].shape == (1, 64 // t["stride"], 64 // t["stride"], t["channels"])


@pytest.mark.slow
def test_efficientnet_features_and_helper_on_existing_models():
    ours = km.create_model("tf_efficientnet_b0", features_only=True)
    assert [t["channels"] for t in ours.feature_info] == [16, 24, 40, 112, 320]
    assert [t["layer"] for t in ours.feature_info] == [
        "block1a_project_bn", "block2b_add", "block3b_add", "block5c_add", "block7a_project_bn"]
    ref = keras.applications.EfficientNetB0(weights=None)  # the helper also reads keras.applications
    assert km.feature_extractor(ref).feature_info == ours.feature_info
    v2 = km.feature_extractor(km.EfficientNetV2S())
    assert [t["stride"] for t in v2.feature_info] == [2, 4, 8, 16, 32]


def test_model_info_and_list():
    info = km.model_info("rexnet_130")
    assert info["params"] == 7_557_091 and round(info["macs"] / 1e9, 2) == 0.66
    assert info["input_size"] == (224, 224, 3) and info["crop_pct"] == 0.875
    assert info["interpolation"] == "bicubic" and info["top1"] == 79.504  # rexnet_130.nav_in1k, timm's eval
    assert info["name"] == "rexnet_130.nav_in1k" and info["license"] == "mit"
    assert info["mean"] == (123.675, 116.28, 103.53)
    assert km.list_models("efficientnet_lite*") == [f"efficientnet_lite{i}" for i in range(5)]
    assert "rexnet_lite_150" in km.list_models("rexnet*")
    with pytest.raises(ValueError, match="unknown model 'rexnet_999'"):
        km.create_model("rexnet_999")


def test_decode_predictions_ships_class_names():
    probs = np.zeros((1, 1000), "float32")
    probs[0, [652, 285, 967]] = [0.5, 0.3, 0.2]
    assert [n for _, n, _ in km.decode_predictions(probs, top=3)[0]] == ["military uniform", "Egyptian cat", "espresso"]


@pytest.mark.slow
def test_cli_list_info_predict(capsys):
    listed = cli(capsys, "list", "*efficientnet*")
    assert listed.returncode == 0 and "rexnet" not in listed.stdout
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "TF SAME padding, BatchNorm eps 1e-3" in rows["tf_efficientnet_lite0"] and "1 tag" in rows[
        "tf_efficientnet_lite0"]
    assert "5 tags" in rows["tf_efficientnet_b0"] and "1 tag" in rows["efficientnet_es"]
    assert "PyTorch symmetric padding, BatchNorm eps 1e-5" in rows["efficientnet_lite0"]
    info = cli(capsys, "info", "tf_efficientnet_lite0")
    assert info.returncode == 0 and "4,652,008" in info.stdout
    tagged = cli(capsys, "list", "tf_efficientnet_b0*", "--pretrained")
    assert [line.split()[0] for line in tagged.stdout.splitlines()[1:]] == [
        "tf_efficientnet_b0.aa_in1k", "tf_efficientnet_b0.ap_in1k", "tf_efficientnet_b0.in1k",
        "tf_efficientnet_b0.keras_in1k", "tf_efficientnet_b0.ns_jft_in1k"]
    photos = [str(PHOTOS / f) for f in ("grace_hopper.jpg", "chelsea.jpg", "coffee.jpg")]
    # a fresh process: its stderr is what a user's terminal shows
    pred = run_cli("predict", "--model", "tf_efficientnet_lite0", "--weights", "imagenet", "--crop-pct", "1.0", *photos)
    assert pred.returncode == 0, pred.stderr
    lines = pred.stdout.splitlines()
    top1 = {line: lines[i + 1] for i, line in enumerate(lines) if not line.startswith(" ")}
    assert "military uniform" in top1[photos[0]] and "Egyptian cat" in top1[photos[1]]
    assert "espresso" in top1[photos[2]]
    assert pred.stderr == ""  # TensorFlow's start-up chatter is kept out of the user's terminal


@pytest.mark.slow
def test_cli_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.jpg").write_text("not an image")
    for args in (["predict", str(tmp_path / "missing.jpg")], ["predict", str(tmp_path / "notes.jpg")],
                 ["info", "rexnet_999"], ["convert", "x.pth", "--model", "rexnet_100", "-o", "out.h5"]):
        result = cli(capsys, *args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("keras-models: error: ") and result.stderr.count("\n") == 1, result.stderr
