"""The tf.data service on 127.0.0.1: a dispatcher and two worker processes started by the CLI, the
training stream computed by them and locally, a training run through them, a worker killed, a
dispatcher nobody runs; and every server stops on SIGTERM without hanging."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from helpers import ROOT, photo_crops, run_cli
from helpers.runs import free_ports, latest_step, read_metrics

from training import data as data_lib
from training import data_service as svc


@pytest.fixture(scope="module")
def service():
    """grpc://127.0.0.1:PORT of a dispatcher with two worker processes (`keras-models data-service`).
    Afterwards each is sent SIGTERM, workers first, and must say "stopped" and exit 0 within 30 s."""
    with svc.local_cluster(2, timeout=30) as url:
        yield url


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """Two classes of 224-px-and-up photo crops, with three truncated JPEGs."""
    root = photo_crops(tmp_path_factory.mktemp("svc") / "photos", 24, ("a", "b"), (300, 240))
    for name in ("a/00.jpg", "b/01.jpg", "a/02.jpg"):
        data = (root / name).read_bytes()
        (root / name.replace(".jpg", "_cut.jpg")).write_bytes(data[: len(data) // 3])
    return root


@pytest.mark.slow
def test_each_position_gives_the_same_pixels_through_the_service_and_locally(service, jpeg_folder):
    """Two epochs of positions: through the two workers, every position arrives exactly once (no
    worker was lost), each with the very pixels and status the same pipeline computes locally, and
    each epoch holds every image once, its three truncated files counted BAD."""
    source = data_lib.load(f"folder:{jpeg_folder}", val_split=0.2)
    pipeline = data_lib.Pipeline(224, 0.875, randaugment=9, seed=3)
    n = source.num_train
    end = 2 * n
    local = {int(g): (image, int(status)) for g, image, _, status in
             svc.processed(pipeline, source, 0, end).as_numpy_iterator()}
    remote_ds = svc.processed(pipeline, source, 0, end).apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=service, job_name="pixels"))
    remote = [(int(g), image, int(status)) for g, image, _, status in remote_ds.as_numpy_iterator()]
    assert sorted(g for g, _, _ in remote) == list(range(end))
    for g, image, status in remote:
        assert status == local[g][1] and np.array_equal(image, local[g][0]), g
    bad = Counter(g // n for g, _, status in remote if status == data_lib.BAD)
    truncated = sum(1 for f in source.listing[0] if str(f).endswith("_cut.jpg"))
    assert bad == {0: truncated, 1: truncated} and truncated > 0


@pytest.mark.slow
def test_training_through_the_service_learns_like_the_local_pipeline(service, digits_run, tmp_path):
    """The same command as the shared local run (`digits_run`: 4 epochs of digits at 32 px), its
    input computed by the two workers: top-1 within a few points of the local pipeline's."""
    served = run_cli("train", "--model", "rexnet_100", "--data", "digits", "--epochs", "4", "--out",
                     str(tmp_path / "served"), "--data-service", service)
    assert served.returncode == 0, served.stderr
    assert f"training input: the tf.data service at {service}" in served.stdout
    assert "never arrived" not in served.stdout  # nothing lost: no worker died
    top1 = {name: float(read_metrics(run)[-1]["val_top1"]) for name, run in
            (("served", tmp_path / "served"), ("local", digits_run))}
    assert top1["served"] > 60 and abs(top1["served"] - top1["local"]) < 10, top1
    rows = read_metrics(tmp_path / "served")
    assert int(float(rows[-1]["images_seen"])) == 4 * (1438 // 64) * 64  # every step got a full batch


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_the_run_completes_and_says_what_was_lost(service, tmp_path):
    """A third worker joins, and is SIGKILLed once the run has checkpointed step 2 of epoch 1: every
    epoch still runs its full steps on the other two, and the run names what never arrived."""
    third = svc.spawn(["worker", "--dispatcher", service])
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "keras_models", "train", "--model", "rexnet_100", "--data", "digits", "--epochs",
           "3", "--checkpoint-every", "2", "--data-service", service, "--out", str(out)]
    run = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while latest_step(out) is None and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    third.send_signal(signal.SIGKILL)
    third.wait()
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr
    rows = read_metrics(out)
    assert [int(float(r["step"])) for r in rows] == [22, 44, 66]  # full epochs: 1438 // 64 steps each
    assert "images of the stream never arrived from the data service (a worker lost" in stdout, stdout


@pytest.mark.slow
def test_a_dispatcher_nobody_runs_is_one_line_within_the_timeout(tmp_path):
    started = time.monotonic()
    r = run_cli("train", "--data", "digits", "--out", str(tmp_path / "r"), "--worker-timeout", "2",
                "--data-service", f"grpc://127.0.0.1:{free_ports(1)[0]}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "no tf.data service dispatcher answers at grpc://127.0.0.1:" in lines[-1], r.stderr
    assert lines[-1].startswith("keras-models: error:") and time.monotonic() - started < 60
