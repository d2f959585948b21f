"""`keras-models benchmark --bench data`: the input pipeline alone, against its peers, CSV + chart."""

from __future__ import annotations

import csv
import importlib.util
import os

import pytest
from helpers import run_cli

from benchmarks.data_bench import TIMM_PYTHON_ENV, make_folder

QUICK = ["--image-size", "64", "--batch-size", "8", "--iters", "3", "--repeats", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("bench") / "photos", n=48)


@pytest.mark.slow
def test_data_bench_writes_rows_and_a_chart(photos, tmp_path):
    out = tmp_path / "data.csv"
    r = run_cli("benchmark", "--bench", "data", "--data", f"folder:{photos}", *QUICK, "--randaugment", "9",
                "--compare", "legacy", "--data-service", "1", "--rounds", "2", "--results-file", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out)))
    assert [row["impl"] for row in rows] == ["keras-models", "keras-models before #19", "tf.data service, 1 worker(s)"]
    assert all(float(row["data_samples_per_sec"]) > 0 and row["randaugment"] == "9" for row in rows)
    assert all(row["rounds"] == "2" for row in rows) and "round 2: keras-models before #19" in r.stdout
    assert float(rows[0]["per_core"]) == pytest.approx(float(rows[0]["data_samples_per_sec"]) / os.cpu_count(),
                                                       abs=0.1)
    assert out.with_suffix(".png").stat().st_size > 10_000 and "ours vs" in r.stdout


@pytest.mark.slow
def test_data_bench_peers_fail_in_one_line(photos, tmp_path):
    wrong = run_cli("benchmark", "--bench", "data", "--data", "tfrecord:/x/*.tfrecord", "--compare", "timm",
                    "--results-file", str(tmp_path / "r.csv"))
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        "keras-models: error: --compare timm reads image folders (torchvision ImageFolder): use --data folder:DIR"]
    assert not (tmp_path / "r.csv").exists()
    garden = run_cli("benchmark", "--bench", "data", "--data", f"folder:{photos}", "--randaugment", "9",
                     "--compare", "garden", "--results-file", str(tmp_path / "r.csv"))
    assert garden.returncode == 2 and garden.stderr.strip().splitlines() == [
        "keras-models: error: --compare garden times TF Model Garden's parser without RandAugment: "
        "drop --randaugment, or compare with timm,legacy"]
    assert not (tmp_path / "r.csv").exists()
    if importlib.util.find_spec("timm") is None and not os.environ.get(TIMM_PYTHON_ENV):
        missing = run_cli("benchmark", "--bench", "data", "--data", f"folder:{photos}", *QUICK, "--compare", "timm",
                          "--results-file", str(tmp_path / "r.csv"))
        assert missing.returncode == 2 and "--compare timm needs PyTorch, torchvision and timm" in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("timm") is None and not os.environ.get(TIMM_PYTHON_ENV),
                    reason=f"timm is not installed (`make bench` installs it; or set {TIMM_PYTHON_ENV})")
def test_data_bench_against_timms_loader(photos, tmp_path):
    out = tmp_path / "timm.csv"
    r = run_cli("benchmark", "--bench", "data", "--data", f"folder:{photos}", *QUICK, "--randaugment", "9",
                "--randaugment-mstd", "0.5", "--compare", "timm", "--results-file", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out)))
    assert rows[1]["impl"].startswith("timm ") and float(rows[1]["data_samples_per_sec"]) > 0
