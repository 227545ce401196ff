"""Fault tolerance of the recipes: a run killed mid-epoch (SIGKILL) resumes to the same result,
and a multi-worker run (two processes, TF_CONFIG) finishes with the chief writing the files."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.compat import keras
from recipes import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The recipe flags both runs share (digits, tiny CNN, 4 pruning epochs of 6 steps).
FLAGS = [
    "--stage=prune",
    '--model_kwargs={"width": 8}',
    "--prune_epochs=4",
    "--steps_per_epoch=6",
    "--batch_size=16",
    "--budget=0.5",
]

# Runs the real entry point with one extra callback that SIGKILLs the process (no exception,
# no cleanup) in the middle of epoch ``KILL_EPOCH``, after the backups of the epochs before it.
KILLER = """
import dataclasses, os, signal, sys
from absl import app
from recipes import chipnet
from chipnet_tf.compat import keras

class Kill(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == int(os.environ["KILL_EPOCH"]) and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

make = chipnet.config_from_flags
chipnet.config_from_flags = lambda: dataclasses.replace(make(), callbacks=[Kill()])
sys.argv[0] = "recipes.chipnet"
app.run(chipnet.main)
"""


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def _recipe(model_dir, data_dir, *extra, code=None, env=None):
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "recipes.chipnet"]
    args = [*FLAGS, f"--model_dir={model_dir}", f"--data_dir={data_dir}", *extra]
    return subprocess.Popen(
        cmd + args, cwd=ROOT, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    """A model_dir holding a briefly trained dense.keras (the pretrain stage, in-process)."""
    root = tmp_path_factory.mktemp("resume")
    config = pipeline.Config(
        stage="pretrain",
        model_dir=str(root / "dense"),
        data_dir=str(root / "tfds"),
        model_kwargs={"width": 8},
        pretrain_epochs=1,
        steps_per_epoch=4,
        batch_size=16,
        verbose=0,
    )
    pipeline.run(config)
    return root


def _copy_dense(root, name):
    target = root / name
    target.mkdir()
    with open(root / "dense" / "dense.keras", "rb") as f, open(target / "dense.keras", "wb") as g:
        g.write(f.read())
    return str(target)


def _weights(model_dir):
    model = keras.models.load_model(os.path.join(model_dir, "pruned.keras"))
    return {w.name: w.numpy() for w in model.weights}


@pytest.mark.slow
def test_killed_prune_run_resumes_to_the_uninterrupted_result(dense_dir):
    data_dir = str(dense_dir / "tfds")
    straight, killed = _copy_dense(dense_dir, "straight"), _copy_dense(dense_dir, "killed")
    reference = _recipe(straight, data_dir)
    victim = _recipe(killed, data_dir, code=KILLER, env=_env(KILL_EPOCH="2"))
    rc, _, err = _finish(victim)
    assert rc == -signal.SIGKILL, err[-2000:]
    # Killed in epoch 3 of 4: the backup holds two epochs; nothing is half-written under a final name.
    backup = os.path.join(killed, "backup", "prune")
    assert pipeline._backed_up_epochs(backup) == 2
    assert not os.path.exists(os.path.join(killed, "pruned.keras"))
    with open(os.path.join(killed, "logs", "prune_history.json")) as f:
        assert [row["epoch"] for row in json.load(f)] == [0, 1]
    keras.models.load_model(os.path.join(killed, "dense.keras"))

    rc, _, err = _finish(_recipe(killed, data_dir))  # the same flags, through the entry point
    assert rc == 0, err[-3000:]
    assert "Resuming prune at epoch 3" in err
    rc, _, err = _finish(reference)
    assert rc == 0, err[-3000:]

    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5, err_msg=name)
    masks_a = chipnet_tf.load_masks(os.path.join(straight, "masks.npz"))
    masks_b = chipnet_tf.load_masks(os.path.join(killed, "masks.npz"))
    assert masks_a.keys() == masks_b.keys() and all((masks_a[k] == masks_b[k]).all() for k in masks_a)
    reports = []
    for d in (straight, killed):
        with open(os.path.join(d, "report.json")) as f:
            reports.append(json.load(f)["prune_history"])
    assert len(reports[1]["loss"]) == 4  # the history covers the epochs before and after the kill
    for key in ("loss", "budget", "crispness", "accuracy"):
        np.testing.assert_allclose(reports[1][key], reports[0][key], rtol=1e-4, atol=1e-6)
    # The backup is gone once the stage finished, and no temporary file is left behind.
    assert not os.path.exists(backup)
    leftovers = [f for _, _, files in os.walk(killed) for f in files if ".tmp" in f]
    assert leftovers == []


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_prune_on_two_local_workers(dense_dir):
    model_dir = _copy_dense(dense_dir, "multi_worker")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    procs = [
        _recipe(
            model_dir,
            str(dense_dir / "tfds"),
            "--strategy=multi_worker",
            "--prune_epochs=2",
            "--steps_per_epoch=3",
            env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
        )
        for i in range(2)
    ]
    results = [_finish(p) for p in procs]
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    # Worker 0 is the chief: it wrote the wrapped checkpoint, the masks and the report.
    with open(os.path.join(model_dir, "report.json")) as f:
        report = json.load(f)
    assert report["completed"] == ["prune"] and len(report["prune_history"]["loss"]) == 2
    # pruned.keras holds the epoch whose hard-masked network validated best, 3 steps per epoch
    pruned = keras.models.load_model(os.path.join(model_dir, "pruned.keras"))
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    best = report["best_prune_epoch"]
    assert best in (1, 2) and int(ctl.pruning_epoch.numpy()) == best and int(ctl.pruning_step.numpy()) == 3 * best
    masks = chipnet_tf.load_masks(os.path.join(model_dir, "masks.npz"))
    assert set(masks) == {g for g, _ in ctl.groups}
    # The other worker wrote nothing of its own under model_dir (its saves went to temp dirs).
    entries = {
        os.path.relpath(os.path.join(d, n), model_dir) for d, dirs, files in os.walk(model_dir) for n in dirs + files
    }
    assert not [e for e in entries if "worker" in e.lower() or ".tmp" in e]
