"""What the accuracy benchmark's runs share: the results paths, the epochs per dataset, the
protocol's configuration, the resumable work directory and the final write."""

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from chipnet_tf.io import write_json

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
RESULTS = RESULTS_DIR / "accuracy.json"
DEFAULT_BUDGETS = (0.5, 0.25, 0.1, 0.05, 0.02)
DEFAULT_TYPES = ("flops", "channels")
LATENCY_BUDGETS = (0.25, 0.1)
# Epochs per dataset. Digits: 1,293 training images, 21 steps per epoch at batch 64.
# Fashion-MNIST: 12,000 training images (acc_data.TRAIN_IMAGES), 188 steps per epoch;
# ~300 images/s for the wrapped model on 2 cores, so the 4 search epochs (752 steps, above
# the progress schedule's 300) take ~3 minutes; pretraining 15 epochs (2,820 steps),
# fine-tuning 2 (376 steps). The mask transfer study (classes 0-4 -> 5-9) runs on digits only.
EPOCHS = {
    "digits": {"pretrain_epochs": 30, "prune_epochs": 20, "finetune_epochs": 20, "transfer_budgets": [0.25, 0.05]},
    "fashion_mnist": {"pretrain_epochs": 15, "prune_epochs": 4, "finetune_epochs": 2, "transfer_budgets": []},
}

# The code a task's result depends on, besides chipnet_tf/ (paths under benchmarks/): the accuracy
# benchmark itself, the latency benchmark's channel scores and the latency tasks' FLOPs matching.
DIGESTED = (
    "accuracy/__main__.py",
    "accuracy/baselines.py",
    "accuracy/data.py",
    "accuracy/grid.py",
    "accuracy/methods.py",
    "accuracy/protocol.py",
    "accuracy/run.py",
    "accuracy/summary.py",
    "accuracy/tasks.py",
    "accuracy/taylor.py",
    "latency/models.py",
    "latency/budget.py",
)


def _code_digest():
    """SHA-256 of the code a task's result depends on: ``DIGESTED`` and chipnet_tf/."""
    digest = hashlib.sha256()
    benchmarks = Path(__file__).resolve().parent.parent
    package = Path(chipnet_tf.__file__).resolve().parent
    for path in [benchmarks / name for name in DIGESTED] + sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def protocol_config(args):
    """The dataset, model, seeds and epochs of a run on the accuracy benchmark's protocol (the
    shared part of the ablation's and latency_accuracy's configurations)."""
    return {
        "dataset": acc_data.describe_split(args.dataset),
        "model": acc_data.describe(args.dataset),
        "seeds": args.seeds,
        "pretrain_epochs": args.pretrain_epochs,
        "prune_epochs": args.prune_epochs,
        "finetune_epochs": args.finetune_epochs,
    }


def run_logger(start):
    """``log(message)``: prints the message with the seconds since ``start`` (perf_counter)."""

    def log(message):
        print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)

    return log


def work_directory(output, config):
    """The work directory of a run: named by its output, configuration and code (a resumed
    run never mixes results of other code or settings); created if missing."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    digest.update(_code_digest().encode())
    work = output.parent / ".work" / f"{output.stem}-{digest.hexdigest()[:12]}"
    work.mkdir(parents=True, exist_ok=True)
    return work


def write_and_clean(output, payload, work, log):
    """Writes the results atomically, then removes the finished run's work directory (and
    ``.work/`` itself when no other configuration is in progress)."""
    write_json(output, payload)
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(work))
    log(f"wrote {output}")
    return payload


# -- a run's files in its work directory ------------------------------------------------
def task_file(work, key):
    """The result file of the task ``key`` in the work directory."""
    return os.path.join(work, "-".join(str(k) for k in key) + ".json")


def weights_path(work, name):
    return os.path.join(work, f"{name}.weights.h5")


def save_weights(model, work, name):
    target = weights_path(work, name)
    tmp = target[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, target)


def load_weights(args, work, name, num_classes=None):
    model = acc_data.model(args.dataset, num_classes)
    model.load_weights(weights_path(work, name))
    return model
