"""Fault tolerance of the recipes: a run killed mid-epoch (SIGKILL) resumes to the same result,
and a multi-worker run (two processes, TF_CONFIG) finishes with the chief writing the files."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile

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
    # no best-epoch selection here: its argmax over a few validation accuracies could tie
    # differently across processes (BestHardMasks' own resume is tested in test_callbacks)
    "--validation_fraction=0",
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
        if os.environ.get("KILL_AT_BATCH") and self.epoch == int(os.environ["KILL_EPOCH"]) and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    def on_epoch_end(self, epoch, logs=None):  # runs after BackupAndRestore saved this epoch
        if os.environ.get("KILL_AT_END") and epoch == int(os.environ["KILL_EPOCH"]):
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
    """Starts the recipe; its output goes to files (two workers blocked on full pipes while
    the test reads the other one's would deadlock at their next collective)."""
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "recipes.chipnet"]
    args = [*FLAGS, f"--model_dir={model_dir}", f"--data_dir={data_dir}", *extra]
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd + args, cwd=ROOT, env=env or _env(), stdout=out, stderr=err, text=True)
    proc.files = (out, err)
    return proc


def _finish(proc, timeout=600):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    texts = []
    for f in proc.files:
        f.seek(0)
        texts.append(f.read())
        f.close()
    return proc.returncode, texts[0], texts[1]


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
    late = _copy_dense(dense_dir, "killed_late")
    reference = _recipe(straight, data_dir)
    victim = _recipe(killed, data_dir, code=KILLER, env=_env(KILL_EPOCH="2", KILL_AT_BATCH="1"))
    rc, _, err = _finish(victim)
    assert rc == -signal.SIGKILL, err[-2000:]
    # Killed in epoch 3 of 4: the backup holds two epochs; nothing is half-written under a final name.
    backup = os.path.join(killed, "backup", "prune")
    assert pipeline._backed_up_epochs(backup) == 2
    assert not os.path.exists(os.path.join(killed, "pruned.keras"))
    with open(os.path.join(killed, "logs", "prune_history.json")) as f:
        assert [row["epoch"] for row in json.load(f)] == [0, 1]
    keras.models.load_model(os.path.join(killed, "dense.keras"))

    rc, out, err = _finish(_recipe(killed, data_dir))  # the same flags, through the entry point
    assert rc == 0, err[-3000:]
    assert "resuming prune at epoch 3" in out
    rc, _, err = _finish(reference)
    assert rc == 0, err[-3000:]

    # Killed after the last epoch's backup but before fit ended: the restart restores that state.
    rc, _, err = _finish(_recipe(late, data_dir, code=KILLER, env=_env(KILL_EPOCH="3", KILL_AT_END="1")))
    assert rc == -signal.SIGKILL, err[-2000:]
    assert pipeline._backed_up_epochs(os.path.join(late, "backup", "prune")) == 4
    rc, out, err = _finish(_recipe(late, data_dir))
    assert rc == 0 and "prune had finished its epochs before it was interrupted" in out, err[-3000:]

    a = _weights(straight)
    masks_a = chipnet_tf.load_masks(os.path.join(straight, "masks.npz"))
    with open(os.path.join(straight, "report.json")) as f:
        history_a = json.load(f)["prune_history"]
    for resumed in (killed, late):
        b = _weights(resumed)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5, err_msg=f"{resumed}: {name}")
        masks_b = chipnet_tf.load_masks(os.path.join(resumed, "masks.npz"))
        assert masks_a.keys() == masks_b.keys() and all((masks_a[k] == masks_b[k]).all() for k in masks_a)
        with open(os.path.join(resumed, "report.json")) as f:
            history_b = json.load(f)["prune_history"]
        assert len(history_b["loss"]) == 4  # the history covers the epochs before and after the kill
        for key in ("loss", "budget", "crispness", "accuracy"):
            np.testing.assert_allclose(history_b[key], history_a[key], rtol=1e-4, atol=1e-6)
        # The backup is gone once the stage finished, and no temporary file is left behind.
        assert not os.path.exists(os.path.join(resumed, "backup", "prune"))
        assert [f for _, _, files in os.walk(resumed) for f in files if ".tmp" in f] == []


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
            "--stage=all",  # every stage reads what the chief wrote in the one before
            "--pretrain_epochs=1",
            "--prune_epochs=2",
            "--finetune_epochs=1",
            "--steps_per_epoch=3",
            "--validation_fraction=0.1",
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
    assert report["completed"] == ["pretrain", "prune", "finetune", "export"]
    assert len(report["prune_history"]["loss"]) == 2
    small = keras.models.load_model(os.path.join(model_dir, "stripped.keras"))
    assert small.count_params() == report["stripped"]["params"] == report["predicted_kept"]["params"]
    assert os.path.getsize(os.path.join(model_dir, "model.tflite")) == report["tflite_bytes"]["float32"]
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
