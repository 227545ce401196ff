"""Rebuilds the committed reference set: ``python -m recipes.reference`` (``make reference``).

Runs the default recipe (digits, small CNN, 0.25 of FLOPs, every stage) in a scratch
directory and copies its artifacts, with a ``manifest.json`` (accuracies, params, FLOPs,
sizes, SHA-256 digests, versions), into ``saved_models/reference/digits_small_cnn``. The
set is staged in a sibling directory and renamed into place, so a failed run leaves the old
set untouched. Tests load this set to guard backward compatibility of
saved wrapped models, masks, stripped models and TFLite files.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile

from absl import app, flags

from chipnet_tf.io import write_json
from recipes import pipeline

FILES = (
    "dense.keras",
    "pruned.keras",
    "masks.npz",
    "stripped.keras",
    "model.tflite",
    "model_int8.tflite",
    "report.json",
    "report.png",
)
DEFAULT_DIR = os.path.join("saved_models", "reference", "digits_small_cnn")

flags.DEFINE_string("out", DEFAULT_DIR, "Where the reference set goes (staged, then renamed into place).")


def sha256(filename):
    digest = hashlib.sha256()
    with open(filename, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(model_dir, command):
    """The manifest of a finished run in ``model_dir`` (all stages done)."""
    import tensorflow as tf
    import tf_keras

    import chipnet_tf

    with open(os.path.join(model_dir, "report.json")) as f:
        report = json.load(f)
    config = report["config"]
    return {
        "command": command,
        "dataset": config["dataset"],
        "model": config["model"],
        "budget": config["budget"],
        "budget_type": config["budget_type"],
        "round_to": config["round_to"],
        "accuracy": {"dense": report["dense_accuracy"], "stripped": report["stripped_accuracy"]},
        "params": {"dense": report["dense"]["params"], "stripped": report["stripped"]["params"]},
        "flops": {"dense": report["dense"]["flops"], "stripped": report["stripped"]["flops"]},
        "int8_top1_agreement": report["int8_top1_agreement"],
        "files": {
            name: {
                "bytes": os.path.getsize(os.path.join(model_dir, name)),
                "sha256": sha256(os.path.join(model_dir, name)),
            }
            for name in FILES
        },
        "versions": {
            "chipnet_tf": chipnet_tf.__version__,
            "tensorflow": tf.__version__,
            "tf_keras": tf_keras.__version__,
        },
    }


def build(out, data_dir=None):
    """Runs the default recipe and writes the reference set to ``out``."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".reference.")
    try:
        os.chmod(staging, 0o755)
        with tempfile.TemporaryDirectory() as scratch:
            run_dir = os.path.join(scratch, "run")
            config = pipeline.Config(model_dir=run_dir, data_dir=data_dir or os.path.join(scratch, "tfds"), verbose=0)
            pipeline.run(config)
            for name in FILES:
                shutil.copy2(os.path.join(run_dir, name), os.path.join(staging, name))
            write_json(os.path.join(staging, "manifest.json"), manifest(staging, "python -m recipes.reference"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if os.path.exists(out):
        old = tempfile.mkdtemp(dir=parent, prefix=".reference.old.")
        os.replace(out, os.path.join(old, "set"))
    os.replace(staging, out)
    if old:
        shutil.rmtree(old)
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out = build(flags.FLAGS.out)
    with open(os.path.join(out, "manifest.json")) as f:
        sys.stdout.write(f.read())


if __name__ == "__main__":
    app.run(main)
