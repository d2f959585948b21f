"""The scaling rules, checked at every width/variant against the reference tables and keras.applications."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import randomize

import keras_models as km
from keras_models.cost import count_macs, count_params, spec_cost
from keras_models.models.rexnet import rexnet_spec
from keras_models.registry import get_entry
from keras_models.spec import build

# ../shared/reference/rexnet.md §1.3 (official ReXNetV1, measured in PyTorch).
REXNET_V1 = {
    0.9: (32, [16, 26, 36, 46, 56, 67, 77, 87, 97, 107, 117, 127, 138, 148, 158, 168],
          [18, 23, 28, 33, 38, 43, 48, 53, 58, 63, 69, 74, 79], 1152, 4_091_257),
    1.0: (32, [16, 27, 38, 50, 61, 72, 84, 95, 106, 117, 128, 140, 151, 162, 174, 185],
          [19, 25, 30, 36, 42, 47, 53, 58, 64, 70, 75, 81, 87], 1280, 4_796_873),
    1.3: (42, [21, 35, 50, 65, 79, 94, 109, 123, 138, 152, 167, 182, 196, 211, 226, 240],
          [25, 32, 39, 47, 54, 61, 69, 76, 83, 91, 98, 105, 113], 1664, 7_557_091),
    1.5: (48, [24, 41, 58, 75, 92, 108, 125, 142, 159, 176, 193, 210, 226, 243, 260, 277],
          [29, 37, 46, 54, 62, 71, 79, 88, 96, 105, 113, 121, 130], 1920, 9_728_593),
    2.0: (64, [32, 54, 77, 100, 122, 144, 167, 190, 212, 234, 257, 280, 302, 324, 347, 370],
          [38, 50, 61, 72, 83, 95, 106, 117, 128, 140, 151, 162, 173], 2560, 16_366_620),
    3.0: (96, [48, 82, 116, 149, 183, 217, 250, 284, 318, 352, 386, 419, 453, 487, 520, 554],
          [58, 74, 91, 108, 125, 142, 159, 176, 193, 209, 226, 243, 260], 3840, 34_708_792),
}
REXNET_LITE = {  # §2.3: stem, block outputs, head, params
    1.0: (32, [16, 32, 40, 48, 64, 72, 80, 96, 104, 112, 128, 136, 144, 160, 168, 184], 1280, 4_740_056),
    1.3: (40, [24, 32, 48, 64, 80, 96, 104, 120, 136, 152, 160, 176, 192, 208, 224, 232], 1664, 6_747_960),
    1.5: (48, [24, 40, 56, 72, 88, 104, 120, 136, 152, 176, 192, 208, 224, 240, 256, 272], 1920, 8_332_296),
    2.0: (64, [32, 56, 80, 96, 120, 144, 160, 184, 208, 232, 248, 272, 296, 320, 336, 360], 2560, 12_966_200),
}
REXNETR_PARAMS = {"rexnetr_100": 4_883_304, "rexnetr_130": 7_608_080, "rexnetr_150": 9_782_256,
                  "rexnetr_200": 16_522_432, "rexnetr_300": 34_810_008}


@pytest.mark.parametrize("width", sorted(REXNET_V1))
def test_rexnet_v1_channels_and_params(width):
    stem, outs, se_hidden, head, params = REXNET_V1[width]
    net = rexnet_spec(width)
    assert net.stem_ch == stem and net.head_ch == head
    assert [b.out_ch for b in net.blocks] == outs
    assert [b.se_ch for b in net.blocks if b.se_ch] == se_hidden
    assert [b.stride for b in net.blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b.residual == "partial" for b in net.blocks] == [False, False, True, False, True, False,
                                                            True, True, True, True, True, False,
                                                            True, True, True, True]
    assert spec_cost(net).trainable == params


def test_rexnet_depth_multiplier_and_macs():
    net = rexnet_spec(1.0, depth=1.5)
    assert len(net.blocks) == sum([2, 3, 3, 5, 5, 8])
    assert [b.name for b in net.blocks[:3]] == ["block1a_", "block1b_", "block2a_"]
    assert round(spec_cost(rexnet_spec(1.0)).macs / 1e9, 3) == 0.398  # reference: 0.398 G


@pytest.mark.parametrize("width", sorted(REXNET_LITE))
def test_rexnet_lite_channels_and_params(width):
    stem, outs, head, params = REXNET_LITE[width]
    net = rexnet_spec(width, lite=True)
    assert (net.stem_ch, [b.out_ch for b in net.blocks], net.head_ch) == (stem, outs, head)
    assert all(b.se_ch == 0 and b.act == "relu6" for b in net.blocks)
    assert spec_cost(net).trainable == params


@pytest.mark.parametrize("name", sorted(REXNETR_PARAMS))
def test_rexnetr_params(name):
    assert spec_cost(get_entry(name).make_spec()).trainable == REXNETR_PARAMS[name]


@pytest.mark.slow
def test_rexnet_public_constructor_variants():
    assert km.ReXNet(width=1.3).name == "rexnet_130"
    assert km.ReXNet(width=2.0, lite=True).name == "rexnet_lite_200"
    assert km.ReXNet(width=3.0, rounded=True).count_params() > 0
    m = km.ReXNet(width=1.0, num_classes=10, input_shape=(96, 96, 3), drop_path_rate=0.1)
    assert m.output.shape == (None, 10)
    drops = [layer.rate for layer in m.layers if layer.name.endswith("_drop")]
    assert drops and max(drops) == pytest.approx(0.1) and min(drops) > 0  # only residual blocks, ramped
    assert km.ReXNet(se=False).count_params() < km.ReXNet().count_params()


# The counts above come from the block tables (`cost.spec_cost`); one real build per block kind
# checks that arithmetic: linear bottleneck with SE-BN and partial residual (ReXNet), ReXNet-lite's
# hidden head, MBConv (B0), no SE (Lite0), fused MBConv (V2), edge residual (ES); odd sizes, own heads.
@pytest.mark.parametrize("name,size,classes,top", [
    ("rexnet_100", 65, 7, True), ("rexnet_lite_100", 97, 3, True), ("tf_efficientnet_b0", 65, 5, False),
    ("efficientnet_lite0", 65, 1000, True), ("tf_efficientnetv2_b0", 97, 4, True), ("efficientnet_es", 65, 2, True)])
@pytest.mark.slow
def test_the_spec_arithmetic_equals_a_real_build(name, size, classes, top):
    net = get_entry(name).make_spec()
    model = build(net, input_shape=(size, size, 3), num_classes=classes, include_top=top)
    cost = spec_cost(net, size, classes, top)
    assert (cost.trainable, cost.params, cost.macs) == (
        count_params(model, trainable_only=True), count_params(model), count_macs(model))


# EfficientNet: compare with keras.applications, weights transferred by layer name.
V1 = [f"B{i}" for i in range(8)]
V2 = ["B0", "B1", "B2", "B3", "S", "M", "L"]
KERAS_V1_PARAMS = [5_330_571, 7_856_239, 9_177_569, 12_320_535, 19_466_823, 30_562_527, 43_265_143, 66_658_687]
KERAS_V2_PARAMS = [7_200_312, 8_212_124, 10_178_374, 14_467_622, 21_612_360, 54_431_388, 119_027_848]


def _transfer_by_name(src: keras.Model, dst: keras.Model, seed: int = 0) -> None:
    for name, values in randomize(src, seed).items():
        dst.get_layer(name).set_weights(values)


def _keras_app(fn_name: str, size: int):
    fn = getattr(keras.applications, fn_name)
    kwargs = {"include_preprocessing": False} if "V2" in fn_name else {}
    return fn(weights=None, input_shape=(size, size, 3), classifier_activation=None, **kwargs)


def _ours(version: str, variant: str, size: int = 65):
    if version == "v1":
        return getattr(km, f"EfficientNet{variant}")(input_shape=(size, size, 3), classifier_activation=None)
    return getattr(km, f"EfficientNetV2{variant}")(
        input_shape=(size, size, 3), classifier_activation=None, include_preprocessing=False)


@pytest.mark.parametrize("version,variant,params",
                         [("v1", v, p - 7) for v, p in zip(V1, KERAS_V1_PARAMS)]  # V1: less Normalization's 7
                         + [("v2", v, p) for v, p in zip(V2, KERAS_V2_PARAMS)])
def test_efficientnet_scaling_gives_keras_applications_param_counts(version, variant, params):
    """Every width/depth/resolution variant: the scaling rules give keras.applications' exact counts
    (pinned from keras.applications; the next test compares layer by layer where the rules bite)."""
    name = f"tf_efficientnet{'v2' if version == 'v2' else ''}_{variant.lower()}"
    assert spec_cost(get_entry(name).make_spec()).params == params


# Numerics and every layer's name and shape against keras.applications itself. All variants render
# through the same builder and differ only by the scaling table, which the test above pins for all;
# B3 is where the 10% channel rule rounds up, V2-S the first with its own block table.
@pytest.mark.parametrize("variant", ["B0", "B3"])
@pytest.mark.slow
def test_efficientnet_v1_matches_keras_applications(variant):
    size = 65  # odd sizes on the way down exercise SAME padding
    ref = _keras_app(f"EfficientNet{variant}", size)
    ours = _ours("v1", variant, size)
    assert ref.count_params() == KERAS_V1_PARAMS[V1.index(variant)]
    assert count_params(ours, trainable_only=True) == count_params(ref, trainable_only=True)
    _transfer_by_name(ref, ours)
    # keras.applications V1 always normalises in-graph; give it the same normalisation ours applies.
    norm = next(layer for layer in ref.layers if layer.name.startswith("normalization"))
    norm.set_weights([np.array([0.485, 0.456, 0.406], "float32"),
                      np.array([0.229, 0.224, 0.225], "float32") ** 2, np.array(0, "int64")])
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    ref_out = ref.predict(x, verbose=0)
    extra = [layer for layer in ref.layers if layer.name.startswith("rescaling")]
    assert len(extra) == 1  # weights=None: no std-as-variance correction layer to worry about
    np.testing.assert_allclose(ours.predict(x, verbose=0), ref_out, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("variant", ["B0", "S"])
@pytest.mark.slow
def test_efficientnet_v2_matches_keras_applications(variant):
    size = 65
    ref = _keras_app(f"EfficientNetV2{variant}", size)
    ours = _ours("v2", variant, size)
    assert ref.count_params() == KERAS_V2_PARAMS[V2.index(variant)] == ours.count_params()
    _transfer_by_name(ref, ours)
    x = np.random.default_rng(1).normal(0, 1, (2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), ref.predict(x, verbose=0), atol=2e-4, rtol=1e-3)


def test_b3_rounding_rule_and_v2_without_it():
    b3 = get_entry("tf_efficientnet_b3").make_spec()
    assert b3.blocks[0].out_ch == 24  # block1a_project_conv: 16 x 1.2 = 19.2 -> 24 by the 10% rule
    assert get_entry("tf_efficientnetv2_b3").make_spec().blocks[0].out_ch == 16  # V2 has no 10% rule


def test_lite_fixed_stem_head_and_params():
    timm_params = {0: 4_652_008, 1: 5_416_680, 2: 6_092_072, 3: 8_197_096, 4: 13_006_568}
    for i, params in timm_params.items():
        net = get_entry(f"efficientnet_lite{i}").make_spec()
        assert net.stem_ch == 32 and net.head_ch == 1280 and not any(b.se_ch for b in net.blocks)
        assert spec_cost(net).trainable == params


@pytest.mark.parametrize("builder,size", [(km.EfficientNetB3, 300), (km.EfficientNetB4, 380)])
@pytest.mark.slow
def test_dynamic_shape_equals_static_at_odd_sizes(builder, size):
    """The keras.applications B3-at-300 bug (9x9 instead of 10x10) must not exist here."""
    static = builder(include_top=False, input_shape=(size, size, 3))
    dynamic = builder(include_top=False, input_shape=(None, None, 3))
    dynamic.set_weights(static.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    a, b = static.predict(x, verbose=0), dynamic.predict(x, verbose=0)
    assert a.shape == b.shape == (1, size // 32 + (size % 32 > 0), size // 32 + (size % 32 > 0), a.shape[-1])
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.slow
def test_rexnet_dynamic_shape_equals_static():
    static = km.ReXNet(include_top=False, input_shape=(225, 225, 3))
    dynamic = km.ReXNet(include_top=False, input_shape=(None, None, 3))
    dynamic.set_weights(static.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (1, 225, 225, 3)).astype("float32")
    np.testing.assert_allclose(static.predict(x, verbose=0), dynamic.predict(x, verbose=0), atol=1e-4)


@pytest.mark.slow
def test_keras_applications_options():
    m = km.EfficientNetB3(include_top=False, pooling="avg")
    assert m.output.shape == (None, 1536)
    m = km.EfficientNetB0(classes=7, dropout_rate=0.5, drop_connect_rate=0.3, name="my_b0")
    assert m.name == "my_b0" and m.output.shape == (None, 7)
    assert m.get_layer("top_dropout").rate == 0.5
    inp = keras.Input((128, 128, 3))
    m = km.EfficientNetB0(input_tensor=inp, include_top=False, pooling="max")
    assert m.inputs[0] is inp and m.output.shape == (None, 1280)
    with pytest.raises(ValueError, match="pooling"):
        km.EfficientNetB0(include_top=False, pooling="mean")


@pytest.mark.slow
def test_save_and_reload_keras_format(tmp_path):
    model = km.ReXNet(width=1.0, input_shape=(64, 64, 3), num_classes=3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    path = tmp_path / "rexnet.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.slow
def test_every_layer_gets_its_own_random_init():
    """A shared unseeded initializer instance gives every same-shaped layer identical weights in
    Keras 3; the builders must not, and a seed must reproduce the init."""
    import keras

    import keras_models as km

    keras.utils.set_random_seed(7)
    model = km.create_model("tf_efficientnet_b0", num_classes=10, input_shape=(32, 32, 3))
    a, b = model.get_layer("block6c_dwconv").kernel.numpy(), model.get_layer("block6d_dwconv").kernel.numpy()
    assert a.shape == b.shape and not np.allclose(a, b)
    keras.utils.set_random_seed(7)
    again = km.create_model("tf_efficientnet_b0", num_classes=10, input_shape=(32, 32, 3))
    np.testing.assert_array_equal(again.get_layer("block6c_dwconv").kernel.numpy(), a)
