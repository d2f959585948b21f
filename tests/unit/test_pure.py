"""Fast checks of the pure functions the models and the trainer are made of."""

from __future__ import annotations

import numpy as np
import pytest

from keras_models.factory import create_model
from keras_models.models import get_entry, list_models
from keras_models.registry import make_spec
from keras_models.spec import make_divisible, round_repeats, stage_letter
from keras_models.weights import block_roles, source_mapping
from training.config import ConfigError, TrainConfig


@pytest.mark.parametrize("value, divisor, expected", [
    (32 * 1.2, 8, 40), (16 * 1.2, 8, 24), (19.2, 8, 24),  # never more than 10% below: 19.2 -> 24, not 16
    (1280 * 1.1, 8, 1408), (3, 8, 8), (100, 16, 96),
])
def test_make_divisible_follows_the_tf_rule(value, divisor, expected):
    assert make_divisible(value, divisor) == expected
    assert make_divisible(value, divisor) % divisor == 0


def test_make_divisible_without_the_round_limit_rounds_to_nearest():
    assert make_divisible(19.2, 8, round_limit=0.0) == 16


def test_stage_letters_and_repeats():
    assert [stage_letter(i) for i in (0, 1, 25, 26, 27)] == ["a", "b", "z", "aa", "ab"]
    assert round_repeats(3, 1.4) == 5 and round_repeats(1, 1.0) == 1


def test_every_family_registers_itself_with_its_own_options():
    names = list_models()
    assert {"rexnet_100", "rexnet_lite_100", "rexnetr_200", "tf_efficientnet_b0", "tf_efficientnet_lite0",
            "tf_efficientnetv2_s"} <= set(names)
    assert list_models("rexnet_1*") == ["rexnet_100", "rexnet_130", "rexnet_150"]
    # Stochastic depth answers to both names in both families; the family file translates.
    for name in ("rexnet_100", "tf_efficientnet_b0"):
        by_timm = make_spec(get_entry(name), {"drop_path_rate": 0.3})
        by_keras = make_spec(get_entry(name), {"drop_connect_rate": 0.3})
        assert by_timm == by_keras
        assert max(b.drop_rate for b in by_timm.blocks) > 0.2
    with pytest.raises(ValueError, match="tf_efficientnet_b0 .* takes no option 'se'"):
        create_model("tf_efficientnet_b0", se=False)
    with pytest.raises(ValueError, match="unknown model 'rexnet_999'"):
        get_entry("rexnet_999")


def test_timm_rexnet_key_mapping_covers_every_weighted_layer_once():
    net = get_entry("rexnet_100").make_spec()
    rows = source_mapping(net, "timm")
    assert rows[0] == ("stem_conv", "stem.conv", "conv")
    assert rows[-1] == ("predictions", "head.fc", "linear")
    layers = [layer for layer, _, _ in rows]
    assert len(layers) == len(set(layers))
    first_se = next(b for b in net.blocks if b.se_ch)
    roles = [role for role, _, _ in block_roles(first_se, net.style.dw_name)]
    assert roles == ["exp", "exp_bn", "dw", "dw_bn", "se_reduce", "se_bn", "se_expand", "pwl", "pwl_bn"]


def test_official_and_timm_effnet_mappings_use_their_own_spelling():
    b0 = get_entry("tf_efficientnet_b0").make_spec()
    rows = dict((layer, key) for layer, key, _ in source_mapping(b0, "timm"))
    assert rows["block1a_dwconv"] == "blocks.0.0.conv_dw" and rows["block2a_expand_conv"] == "blocks.1.0.conv_pw"
    luke = dict((layer, key) for layer, key, _ in source_mapping(b0, "lukemelas"))
    assert luke["block1a_dwconv"] == "_blocks.0._depthwise_conv" and luke["predictions"] == "_fc"
    with pytest.raises(ValueError, match="unknown checkpoint source"):
        source_mapping(b0, "caffe")


def test_train_config_resolves_from_the_recipe_and_the_data():
    cfg = TrainConfig(model="rexnet_100", batch_size=128, epochs=20)
    run = cfg.resolve("rexnet", {"image_size": 32, "weight_decay": 5e-4}, num_classes=10, default_size=224,
                      default_crop_pct=0.875)
    assert run.optimizer == "sgd" and run.lr == pytest.approx(0.5 * 128 / 512)
    assert (run.image_size, run.crop_pct, run.weight_decay, run.num_classes) == (32, 0.875, 5e-4, 10)
    assert run.warmup_epochs == 2.0  # 5 epochs, at most 10% of the run
    adamw = TrainConfig(optimizer="adamw").resolve("efficientnet", {"weight_decay": 5e-4}, 10, 224, 0.875)
    assert adamw.weight_decay == 0.05  # AdamW keeps its own decay
    with pytest.raises(ConfigError, match="num_classes=5 but the data has 10"):
        TrainConfig(num_classes=5).resolve("rexnet", {}, 10, 224, 0.875)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        TrainConfig(batch_size=0).validate()


def test_eval_transform_crops_the_centre_at_the_model_size():
    from keras_models.preprocessing import EvalTransform

    image = np.zeros((60, 90, 3), np.uint8)
    image[:, 30:60] = 255  # a white centre band
    out = EvalTransform(32, 1.0, "bilinear").eval_image(image).numpy()
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    assert out[:, 16].min() > 250 and out[:, 0].max() < 5


@pytest.mark.parametrize("options, says", [
    ({"drop_connect_rate": -1}, r"drop_connect_rate must be in \[0, 1\)"),
    ({"dropout_rate": 1.5}, r"dropout_rate must be in \[0, 1\)"),
    ({"num_classes": 10, "classes": 5}, "classes=5 and num_classes=10 disagree"),
    ({"features_only": True, "pooling": "avg"}, "features_only=True returns the feature maps"),
    ({"num_classes": 0}, "num_classes must be a whole number >= 1"),
])
def test_contradictory_or_out_of_range_options_are_refused(options, says):
    with pytest.raises(ValueError, match=says):
        create_model("tf_efficientnet_b0", input_shape=(32, 32, 3), **options)


@pytest.mark.slow
def test_keras_applications_constructors_take_classes_or_num_classes():
    import keras_models as km

    assert km.EfficientNetB0(classes=7, input_shape=(32, 32, 3)).output_shape == (None, 7)
    assert km.EfficientNetB0(num_classes=7, classes=7, input_shape=(32, 32, 3)).output_shape == (None, 7)
    with pytest.raises(ValueError, match="disagree"):
        km.EfficientNetB0(num_classes=7, classes=5, input_shape=(32, 32, 3))


def test_an_untimed_epoch_says_so_instead_of_nan_img_s():
    """#34: a one-step epoch printed "nan img/s" (its one step traces the graph and is not timed)."""
    from training.trainer import speed_text

    assert speed_text(float("nan")).startswith("- img/s (no step timed")
    assert speed_text(None).startswith("- img/s") and speed_text(1234.4) == "1234 img/s"
