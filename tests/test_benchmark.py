"""`keras-models benchmark`: real timings of real models, CSV in timm's columns, a PNG chart."""

from __future__ import annotations

import csv
import importlib.util

import pytest
from conftest import run_cli

TIMM_COLUMNS = {"model", "infer_samples_per_sec", "infer_step_time", "infer_batch_size", "infer_img_size",
                "infer_gmacs", "param_count", "train_samples_per_sec", "train_step_time", "train_batch_size",
                "train_img_size"}


def test_benchmark_against_keras_applications(tmp_path):
    out = tmp_path / "bench.csv"
    r = run_cli("benchmark", "--model", "efficientnet_b0", "--batch-size", "2", "--img-size", "64",
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


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size takes positive integers"),
    (["--runtime", "onnx"], "--runtime 'onnx' is not one of"),
    (["--model", "rexnet_100", "--compare", "keras.applications"], "keras.applications has no twin of rexnet_100"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "b.csv"
    r = run_cli("benchmark", "--img-size", "64", "--iters", "1", "--results-file", str(out), *args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not out.exists() and not out.with_suffix(".png").exists()
