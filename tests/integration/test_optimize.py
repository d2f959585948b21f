"""tensorflow-model-optimization for real: QAT, pruning and clustering of every family through the
tf_keras twin, and `keras-models optimize` on a trained digits run, its TFLite files run with LiteRT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import HELPERS, ROOT, cli, run_cli

FAMILIES = ["rexnet_100", "rexnet_lite_100", "tf_efficientnet_b0", "tf_efficientnet_lite0",
            "tf_efficientnetv2_b0"]


@pytest.mark.slow
def test_every_family_has_an_exact_tf_keras_twin_that_tfmot_accepts():
    """SE Multiply, Rescaling and ReXNet's partial residual are what stock tfmot refuses."""
    r = subprocess.run([sys.executable, str(HELPERS / "tfmot_families.py"), *FAMILIES],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = {row["name"]: row for row in map(json.loads, r.stdout.strip().splitlines())}
    assert sorted(results) == sorted(FAMILIES)
    for name, row in results.items():
        assert row["twin_layers"] == row["layers"], name
        assert row["twin_diff"] < 1e-4, (name, row["twin_diff"])
        assert row["qat_finite"] and row["qat_shape"] == [4, 10], name
        # QAT starts from calibrated ranges (the input's is the pixels'), not tfmot's [-6, 6] ...
        assert row["ranges"] > 50 and row["ranges_at_default"] == 0, name
        assert row["input_range"] == pytest.approx([0.0, 255.0], abs=0.01), name
        # ... which is what keeps the int8 grid close to the float model before any fine-tuning.
        assert row["calibrated_err"] < 0.05 * row["ref_max"] < row["default_err"], name
        assert row["roundtrip_diff"] == 0.0, name  # weights out of the QAT wrappers, untouched
        assert row["pruned_layers"] > 10, name
        assert row["pruned_diff"] < 1e-4 and row["stripped_diff"] < 1e-4, name  # Pointwise == 1x1 Conv2D
        assert row["stripped_classes_same"], name  # strip puts the Conv2Ds back
        assert row["allocated"] == pytest.approx(0.6, abs=1e-3), name  # exactly the asked overall sparsity
        lowest, highest = row["allocation_range"]
        assert 0 <= lowest < highest <= 0.95, name  # per layer, not uniform
        assert 2 <= row["cluster_values"] <= 16, name
        assert 2 <= row["keras3_top_conv_values"] <= 16, name  # the clustered values reach Keras 3


def _optimize(run: Path, out: Path, *args: str) -> dict:
    r = run_cli("optimize", "--weights", str(run / "best.weights.h5"), "--out", str(out), "--epochs", "1",
                "--steps-per-epoch", "4", "--eval-images", "120", "--calibration-images", "50", *args,
                timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "optimize_report.md").read_text() in r.stdout
    return json.loads((out / "optimize.json").read_text())


@pytest.mark.slow
def test_prune_then_qat_then_export_keeps_zeros_and_learned_ranges(digits_run, tmp_path):
    """One real run through every stage: pruning, strip, sparsity-preserving QAT, int8 from the QAT
    ranges, weights back in Keras 3, and `export` of the result converting from the QAT model."""
    import keras_models as km
    from keras_models.export import LiteModel

    out = tmp_path / "pqat"
    result = _optimize(digits_run, out, "--method", "prune+qat", "--sparsity", "0.5")
    assert result["sparsity"] == pytest.approx(0.5, abs=0.02)  # still sparse after QAT moved the weights
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == {"float32 (source weights)", "int8 post-training (source weights)", "prune+qat (int8)"}
    dense, ours = rows["float32 (source weights)"], rows["prune+qat (int8)"]
    assert ours["quantization"] == "int8" and ours["size_bytes"] < dense["size_bytes"] / 3
    assert ours["gzip_bytes"] < rows["int8 post-training (source weights)"]["gzip_bytes"] / 1.2  # zeros compress
    assert ours["accuracy"] > 30  # 4 steps from the ramp's start: a smoke bound, not a quality claim
    assert not list(tmp_path.glob(".pqat.*"))
    assert (out / "config.yaml").is_file() and (out / "labels.txt").is_file()
    model = km.create_model("rexnet_100", weights=str(out / "best.weights.h5"), num_classes=10,
                            input_shape=(32, 32, 3))
    # Per-layer sparsities from the sensitivity scan, together exactly the asked 50%.
    allocation = result["layer_sparsity"]
    sizes = {layer.name: layer.kernel.numpy().size for layer in model.layers if layer.name in allocation}
    assert sum(sizes[n] * s for n, s in allocation.items()) / sum(sizes.values()) == pytest.approx(0.5, abs=2e-3)
    assert min(allocation.values()) < 0.3 and max(allocation.values()) > 0.8  # layers differ, as measured
    name = max((n for n in allocation if n.endswith(("expand_conv", "project_conv", "top_conv"))),
               key=allocation.get)  # the most pruned 1x1 conv
    kernel = model.get_layer(name).kernel.numpy()[0, 0]  # (in, out)
    assert (kernel == 0).mean() == pytest.approx(allocation[name], abs=0.01)
    whole = kernel.shape[0] // 4 * 4
    zeros_per_block = (kernel[:whole].reshape(whole // 4, 4, -1) == 0).sum(axis=1)  # 4 consecutive inputs
    assert set(np.unique(zeros_per_block)) == {0, 4}  # whole blocks: runs of zero bytes in the .tflite
    # QAT kept the epoch whose converted int8 model validated best, and that is the model written.
    assert ours["accuracy"] == pytest.approx(max(result["history"]["qat"]["val_int8_top1"]))

    repo = tmp_path / "saved_models"
    r = run_cli("export", "--weights", str(out / "best.weights.h5"), "--formats", "tflite",
                "--tflite-quant", "int8", "--eval-images", "60", "--calibration-images", "20", "--out", str(repo))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "quantization-aware trained" in r.stdout
    exported = next((repo / "rexnet_100" / "lite").glob("*/rexnet_100_int8.tflite"))
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    # Converted from the same QAT SavedModel: the very same int8 model, not a re-calibration.
    np.testing.assert_array_equal(LiteModel(exported)(x), LiteModel(out / "rexnet_100_prune_qat.tflite")(x))


@pytest.mark.parametrize("args,message", [
    (["--method", "prune", "--sparsity", "1.5"], "--sparsity must be between 0 and 1"),
    (["--method", "cluster", "--clusters", "1"], "--clusters must be 2-256"),
    (["--method", "prune", "--prune-block", "0"], "--prune-block must be 1-16"),
    (["--method", "prune", "--sparsity", "0.97"], "above 0.95"),
    (["--method", "qat", "--epochs", "0"], "argument --epochs: must be a whole number >= 1"),
])
def test_bad_options_are_one_line(tmp_path, args, message, capsys):
    (tmp_path / "w.weights.h5").write_bytes(b"checked before TensorFlow starts")
    r = cli(capsys, "optimize", "--weights", str(tmp_path / "w.weights.h5"), "--out", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()
    assert "tensorflow_model_optimization" not in sys.modules  # refused before the child process


def test_missing_weights_and_existing_out_are_one_line(tmp_path, capsys):
    r = cli(capsys, "optimize", "--method", "qat", "--weights", str(tmp_path / "nope.weights.h5"),
            "--out", str(tmp_path))
    assert r.returncode == 2 and "not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "w.weights.h5").write_bytes(b"x")
    r = cli(capsys, "optimize", "--method", "qat", "--weights", str(tmp_path / "w.weights.h5"), "--out", str(tmp_path))
    assert r.returncode == 2 and "already exists" in r.stderr
