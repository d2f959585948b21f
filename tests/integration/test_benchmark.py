"""`keras-models benchmark`: real timings of real models, CSV in timm's columns, a PNG chart."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import JAX_CPU_ENV, ROOT, run_cli

TIMM_COLUMNS = {"model", "infer_samples_per_sec", "infer_step_time", "infer_batch_size", "infer_img_size",
                "infer_gmacs", "param_count", "train_samples_per_sec", "train_step_time", "train_batch_size",
                "train_img_size"}


@pytest.mark.slow
def test_benchmark_against_keras_applications(tmp_path):
    out = tmp_path / "bench.csv"
    r = run_cli("benchmark", "--model", "tf_efficientnet_b0", "--batch-size", "2", "--img-size", "64",
                "--runtime", "keras,tflite-int8", "--compare", "keras.applications", "--warmup", "1",
                "--iters", "3", "--peak-gflops", "100", "--results-file", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert TIMM_COLUMNS | {"device", "versions", "command", "jit_compile", "precision"} <= set(rows[0])
    assert [(x["impl"], x["runtime"], x["infer_batch_size"]) for x in rows] == [
        (impl, runtime, "2") for impl in ("keras_models", "keras.applications") for runtime in ("keras", "tflite-int8")]
    for row in rows:
        p10, median, p90 = (float(row[k]) for k in ("infer_step_time_p10", "infer_step_time", "infer_step_time_p90"))
        assert 0 < p10 <= median <= p90
        assert float(row["infer_samples_per_sec"]) == pytest.approx(int(row["infer_batch_size"]) / median * 1e3,
                                                                    rel=0.01)
        assert float(row["param_count"]) == pytest.approx(5.29, abs=0.01)  # B0: 5.29 M trainable
        if row["runtime"] == "tflite-int8":  # int8 MACs against the float32 FMA peak mean nothing
            assert row["infer_pct_of_peak"] == ""
        else:
            assert 0 < float(row["infer_pct_of_peak"]) < 100
        assert float(row["infer_peak_rss_mb"]) > 100
        # a train step only where there is one to take (Keras), none for a TFLite file
        assert bool(row["train_samples_per_sec"]) == (row["runtime"] == "keras")
    assert rows[0]["jit_compile"] == "off"  # the CPU policy
    assert rows[0]["graph"] == "inference" and rows[2]["graph"] == "plain"
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "keras 64px batch 2: " in r.stdout and "vs keras.applications" in r.stdout


@pytest.mark.slow
def test_compare_timm_runs_pytorch_or_says_how_to_install(tmp_path):
    out = tmp_path / "timm.csv"
    r = run_cli("benchmark", "--model", "rexnet_100", "--bench", "infer", "--batch-size", "1", "--img-size", "64",
                "--compare", "timm", "--warmup", "1", "--iters", "2", "--results-file", str(out))
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("timm") is None:
        assert r.returncode == 2 and "pip install -r requirements-bench.txt" in r.stderr, r.stderr
        assert not out.exists()
        pytest.skip("torch/timm not installed (`make bench` installs them): checked the install hint only")
    assert r.returncode == 0, r.stderr
    ours, timm_row = list(csv.DictReader(out.open()))
    assert (ours["impl"], timm_row["impl"], timm_row["runtime"]) == ("keras_models", "timm", "pytorch")
    assert timm_row["param_count"] == ours["param_count"]  # the same network: the same trainable parameters
    assert float(timm_row["infer_samples_per_sec"]) > 0 and "torch" in timm_row["versions"]


# The JAX backend's benchmark (how GPU runs are timed): the CLI in this process, then the train step
# it times, alone, in float16 with dynamic loss scaling: the first steps overflow and are skipped while the
# scale halves from 2**15, then the loss must fall (dropout makes it noisy). The model's own
# weights must be untouched: the step trains copies.
JAX_BENCH = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import keras_models as km
    from benchmarks.speed import jax_train_step
    from keras_models.cli import main
    assert main(sys.argv[1:]) == 0
    tf = "tensorflow" in sys.modules  # now: seeding below imports it where it is installed
    keras.config.set_dtype_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    model = km.create_model("rexnet_100", input_shape=(32, 32, 3), num_classes=4, classifier_activation=None)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    before = model.predict(x, verbose=0)
    step = jax_train_step(model, keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01)),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(np.arange(8) % 4))
    losses = [step() for _ in range(24)]
    unchanged = float(np.abs(model.predict(x, verbose=0) - before).max())
    print("RESULT " + json.dumps({"losses": losses, "unchanged": unchanged, "tf": tf}))
""")


@pytest.mark.slow
def test_benchmark_on_jax_times_jitted_steps_without_tensorflow(tmp_path):
    out = tmp_path / "jax.csv"
    r = subprocess.run(
        [sys.executable, "-c", JAX_BENCH, "benchmark", "--model", "rexnet_100", "--bench", "infer", "--batch-size",
         "2", "--img-size", "32", "--precision", "mixed_float16", "--warmup", "1", "--iters", "2",
         "--results-file", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, **JAX_CPU_ENV})
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.split("RESULT ")[-1])
    (row,) = csv.DictReader(out.open())
    assert (row["precision"], row["jit_compile"]) == ("mixed_float16", "on")  # JAX compiles every step
    assert float(row["infer_samples_per_sec"]) > 0  # (the train step is timed below, not twice)
    assert "jax" in json.loads(row["versions"]) and "tensorflow" not in json.loads(row["versions"])
    assert result["tf"] is False  # the JAX path never imports TensorFlow (the GPU image has none)
    losses = result["losses"]
    assert all(np.isfinite(losses)) and max(losses[-8:]) < 0.1 * losses[0], losses
    assert result["unchanged"] == 0.0  # the step trains copies: donated buffers never were the model's
    r = run_cli("benchmark", "--runtime", "tflite", "--results-file", str(tmp_path / "x.csv"),
                env=JAX_CPU_ENV)
    assert r.returncode == 2 and "needs the TensorFlow backend" in r.stderr, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "argument --batch-size: must be a whole number >= 1, got '0'"),
    (["--runtime", "onnx"], "--runtime 'onnx' is not one of"),
    (["--model", "rexnet_100", "--compare", "keras.applications"], "keras.applications has no twin of rexnet_100"),
])
@pytest.mark.slow
def test_bad_options_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "b.csv"
    r = run_cli("benchmark", "--img-size", "64", "--iters", "1", "--results-file", str(out), *args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not out.exists() and not out.with_suffix(".png").exists()
