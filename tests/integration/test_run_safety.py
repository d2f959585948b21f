"""Runs survive what clusters do to them: SIGTERM and Ctrl-C checkpoint and exit 143/130, a damaged
checkpoint or state file falls back to the newest readable one, leftovers of killed saves go, a run
folder never takes another run, and an unreachable peer ends in one line. Real processes, signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import ROOT, cli
from helpers.runs import SMALL, latest_step, read_metrics

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _train(out, *extra):
    return [sys.executable, "-m", "keras_models", "train", *SMALL, "--out", str(out), *extra]


def _stop_mid_epoch(out, sig) -> tuple[subprocess.CompletedProcess, int]:
    """Start a run, send `sig` once a checkpoint inside epoch 1 exists; returns the result and that step."""
    proc = subprocess.Popen(_train(out), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline, sent = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        step = latest_step(out)
        if step is not None and 0 < step < 6:
            proc.send_signal(sig)
            sent = step
            break
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=300)
    assert sent is not None, f"no mid-epoch checkpoint seen before the run ended: {stderr[-500:]}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), sent


@pytest.fixture(scope="module")
def preempted(tmp_path_factory):
    out = tmp_path_factory.mktemp("preempt") / "run"
    result, seen = _stop_mid_epoch(out, signal.SIGTERM)
    return out, result, seen


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_143(preempted):
    out, result, seen = preempted
    errors = [line for line in result.stderr.splitlines() if "error" in line]  # the progress bar has its own lines
    assert result.returncode == 143, result.stderr
    assert len(errors) == 1 and errors[0].startswith("keras-models: error: stopped by SIGTERM at step")
    assert "rerun the same command" in errors[0]
    stopped = int(errors[0].split("at step ", 1)[1].split(":")[0])
    assert stopped >= seen and latest_step(out) == stopped  # the step it stopped at is saved


@pytest.fixture(scope="module")
def resumed(preempted, tmp_path_factory):
    """The preempted run, with what killed saves and writes leave, rerun to the end."""
    out, _, _ = preempted
    stopped = latest_step(out)
    run = tmp_path_factory.mktemp("resumed") / "run"
    shutil.copytree(out, run)
    (run / "checkpoints" / f"ckpt-{stopped + 1}_temp").mkdir()  # a save killed half-way
    (run / "checkpoints" / f"ckpt-{stopped + 1}_temp" / "part").write_bytes(b"x" * 1000)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = run / f".best.weights.h5.{dead.stdout.strip()}.abc.weights.h5"  # a killed atomic write
    stale.write_bytes(b"partial")
    again = subprocess.run(_train(run), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    return run, stopped, again.stdout, stale


@pytest.mark.slow
def test_rerun_after_sigterm_resumes_exactly_and_cleans_leftovers(resumed):
    run, stopped, stdout, stale = resumed
    assert f"resuming at step {stopped}/12" in stdout
    assert latest_step(run) == 12 and [int(r["step"]) for r in read_metrics(run)] == [6, 12]
    assert not list((run / "checkpoints").glob("*_temp*")) and not stale.exists()


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_exits_130(tmp_path):
    result, _ = _stop_mid_epoch(tmp_path / "run", signal.SIGINT)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 130 and len(errors) == 1, result.stderr
    assert errors[0].startswith("keras-models: error: interrupted at step")
    assert latest_step(tmp_path / "run") is not None


@pytest.fixture(scope="module")
def finished(resumed):
    """A finished 12-step run (checkpoints at steps 10 and 12)."""
    return resumed[0]


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_and_state_file_fall_back_to_the_newest_readable(finished, tmp_path):
    """Before: garbage in `checkpoint` restarted the run at step 0 (deleting its checkpoints), and a
    damaged newest checkpoint failed every rerun with "Read less bytes than requested"."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "checkpoints" / "checkpoint").write_text("garbage {{{")
    newest = next((run / "checkpoints").glob("ckpt-12.data-*"))
    newest.write_bytes(newest.read_bytes()[:1000])
    r = subprocess.run(_train(run, "--epochs", "3"), cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming from ckpt-10, the newest readable checkpoint" in r.stdout
    assert "resuming at step 10/18" in r.stdout and latest_step(run) == 18
    assert (run / "checkpoints" / "broken" / newest.name).is_file()  # kept aside, not deleted


@pytest.mark.parametrize("damage", ["delete checkpoints", "garbage config.yaml", "delete config.yaml"])
def test_another_run_never_replaces_a_run_folder(finished, tmp_path, damage, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = (run / "best.weights.h5").read_bytes()
    if damage == "delete checkpoints":
        shutil.rmtree(run / "checkpoints")
    elif damage == "garbage config.yaml":
        (run / "config.yaml").write_text("model: [unclosed\n")
    else:
        (run / "config.yaml").unlink()
    r = cli(capsys, "train", "--model", "rexnet_130", *SMALL[2:], "--out", str(run))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "pass another --out" in lines[0], r.stderr
    assert (run / "best.weights.h5").read_bytes() == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_env() -> dict:
    ports = [_free_port(), _free_port()]
    config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": 0}}
    return {**ENV, "TF_CONFIG": json.dumps(config)}, ports[1]


@pytest.mark.slow
def test_an_unreachable_peer_times_out_in_one_line(tmp_path):
    env, peer = _cluster_env()
    started = time.time()
    r = subprocess.run(_train(tmp_path / "run", "--strategy", "multi_worker", "--worker-timeout", "8"), cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode != 0 and time.time() - started < 200
    assert f"waiting for the other workers (127.0.0.1:{peer})" in r.stderr
    assert f"keras-models: error: the other workers (127.0.0.1:{peer}) did not all join within 8 s" in r.stderr


@pytest.mark.slow
def test_ctrl_c_ends_the_wait_for_workers(tmp_path):
    env, peer = _cluster_env()
    proc = subprocess.Popen(_train(tmp_path / "run", "--strategy", "multi_worker"), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiting = ""
    deadline = time.time() + 180
    while time.time() < deadline and "waiting for the other workers" not in waiting:
        waiting += proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT  # the default action: exit status 130 in a shell
    assert "interrupted while waiting" in rest and f"127.0.0.1:{peer}" in rest


HOLD = "import sys, time; from pathlib import Path; from training.run_lock import hold_run_lock; " \
       "lock = hold_run_lock(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)"


@pytest.mark.slow
def test_one_run_per_out_and_a_killed_run_leaves_no_stale_lock(tmp_path, capsys):
    """#34: two runs into one --out both exited 0, the second overwriting the first's files."""
    from keras_models.cli import main
    from training.run_lock import RunInUse, hold_run_lock

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", *SMALL, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by another training run (pid {holder.pid})" in err[0], err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of a run was written
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait()
    lock = hold_run_lock(out)  # the kernel let go of the dead process's lock
    with pytest.raises(RunInUse):
        hold_run_lock(out)  # (and it holds against another opener)
    lock.close()
