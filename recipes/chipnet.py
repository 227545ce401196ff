"""ChipNet recipe: ``python -m recipes.chipnet --stage=all --dataset=digits --model=small_cnn``.

Thin absl entry point; the pipeline lives in :mod:`recipes.pipeline` (tested directly).
Stages: pretrain (dense), prune (ChipNet under a budget), finetune (strip + fine-tune),
export (TFLite float32 and int8), or all. Outputs go under ``--model_dir``.

Examples::

    python -m recipes.chipnet                                   # digits, small CNN, 0.25 FLOPs
    KERAS_BACKEND=jax python -m recipes.chipnet --keras=3       # the same run in Keras 3 on JAX
    python -m recipes.chipnet --dataset=cifar10 --data_dir=~/tensorflow_datasets \\
        --model=wrn26_12 --budget=0.1 --budget_type=params --model_dir=saved_models/runs/wrn
"""

import dataclasses
import json
import sys

from absl import app, flags

from chipnet_tf import console
from chipnet_tf.budgets import ALL_BUDGET_TYPES
from recipes import RecipeError, data, pipeline

FLAGS = flags.FLAGS
_DEFAULTS = pipeline.Config()
_FLAGS_BEFORE = set(FLAGS)

flags.DEFINE_enum("stage", "all", list(pipeline.STAGES), "Which stage to run.")
flags.DEFINE_enum("dataset", _DEFAULTS.dataset, list(data.DATASETS), "tfds dataset (digits is offline).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("model", _DEFAULTS.model, "chipnet_tf.architectures name or keras.applications name.")
flags.DEFINE_string("model_kwargs", "{}", "JSON keyword arguments for the model builder.")


def _is_json_object(text):
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


flags.register_validator(
    "model_kwargs", _is_json_object, message='--model_kwargs must be a JSON object, e.g. {"width": 16}.'
)
flags.DEFINE_string(
    "model_dir", None, "Where every artifact of the run is written (default: saved_models/runs/<dataset>_<model>)."
)
flags.DEFINE_float("budget", _DEFAULTS.budget, "Target fraction of the budget type, in (0, 1].")
flags.register_validator("budget", lambda v: 0 < v <= 1, message="--budget must be in (0, 1].")
flags.DEFINE_enum("budget_type", _DEFAULTS.budget_type, list(ALL_BUDGET_TYPES), "Budget type.")
flags.DEFINE_string(
    "latency_table",
    None,
    "Latency table (.json, from 'chipnet-tf profile MODEL --out=PATH') for --budget_type=latency.",
)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Global batch size.", lower_bound=1)
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed.")
flags.DEFINE_integer("pretrain_epochs", _DEFAULTS.pretrain_epochs, "Dense training epochs.", lower_bound=0)
flags.DEFINE_float("pretrain_lr", _DEFAULTS.pretrain_lr, "Dense training SGD learning rate.", lower_bound=0)
flags.DEFINE_integer("prune_epochs", _DEFAULTS.prune_epochs, "ChipNet pruning epochs.", lower_bound=0)
flags.DEFINE_float("prune_lr", _DEFAULTS.prune_lr, "AdamW learning rate while pruning.", lower_bound=0)
flags.DEFINE_float(
    "prune_weight_decay", _DEFAULTS.prune_weight_decay, "AdamW weight decay (not on mask logits).", lower_bound=0
)
flags.DEFINE_float("budget_weight", _DEFAULTS.budget_weight, "Budget penalty weight.", lower_bound=0)
flags.DEFINE_float("crispness_weight", _DEFAULTS.crispness_weight, "Crispness penalty weight.", lower_bound=0)
flags.DEFINE_integer("finetune_epochs", _DEFAULTS.finetune_epochs, "Fine-tuning epochs.", lower_bound=0)
flags.DEFINE_float("finetune_lr", _DEFAULTS.finetune_lr, "Fine-tuning SGD learning rate.", lower_bound=0)
flags.DEFINE_float(
    "finetune_weight_decay", _DEFAULTS.finetune_weight_decay, "Fine-tuning SGD weight decay.", lower_bound=0
)
flags.DEFINE_enum("strategy", "default", list(pipeline.STRATEGIES), "tf.distribute strategy (multi_worker: TF_CONFIG).")
flags.DEFINE_integer("round_to", 1, "Keep multiples of this many channels per group.", lower_bound=1)
flags.DEFINE_float(
    "validation_fraction",
    _DEFAULTS.validation_fraction,
    "Fraction of train held out; pruning keeps the epoch whose hard-masked network validates best (0 = last).",
    lower_bound=0,
    upper_bound=0.49,
)
flags.DEFINE_string("masks_from", None, "Masks (.npz/.json) found on another run: transfer them.")
flags.DEFINE_integer(
    "steps_per_epoch", None, "Training steps per epoch (default: one pass; more repeats the split).", lower_bound=1
)
flags.DEFINE_integer(
    "prune_steps_per_epoch",
    _DEFAULTS.prune_steps_per_epoch,
    "Pruning steps per epoch; the search's schedule spans all prune_epochs x these steps (default: --steps_per_epoch).",
    lower_bound=1,
)
flags.DEFINE_bool("flip", True, "Random horizontal flips (datasets where they keep the class).")
flags.DEFINE_integer("crop_padding", 4, "Pad-and-crop augmentation (0 = off).", lower_bound=0)
flags.DEFINE_bool("randaugment", False, "keras-cv RandAugment.")
flags.DEFINE_enum(
    "keras",
    "2",
    ["2", "3"],
    "2: tf_keras (any --strategy); 3: Keras 3 on KERAS_BACKEND (tensorflow, jax or torch), one device.",
)


_OWN_FLAGS = [name for name in FLAGS if name not in _FLAGS_BEFORE]
# Config fields that are not flags of the same name: augment comes from --flip,
# --crop_padding and --randaugment; verbose and callbacks are for library callers.
_NOT_FLAGS = {"augment", "verbose", "callbacks"}


def config_from_flags():
    """The :class:`pipeline.Config` of the command line: one flag per field of the same name."""
    try:
        kwargs = json.loads(FLAGS.model_kwargs)
    except json.JSONDecodeError as e:
        raise app.UsageError(f"--model_kwargs is not valid JSON: {e}") from e
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(pipeline.Config) if f.name not in _NOT_FLAGS}
    values["model_kwargs"] = kwargs
    values["keras"] = int(FLAGS.keras)
    values["augment"] = data.Augment(
        flip=FLAGS.flip,
        crop_padding=FLAGS.crop_padding if FLAGS.dataset != "digits" else 0,
        randaugment=FLAGS.randaugment,
    )
    return pipeline.Config(**values)


def help_text(argv):
    lines = [__doc__.strip(), "", "flags:", *console.flag_lines(_OWN_FLAGS), *console.verbosity_lines()]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    try:
        config.validate()
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    try:
        pipeline.run(config)  # prints stage headers, the budget table, the files written, a summary
    except RecipeError as e:  # missing data or inputs, unwritable model_dir: one line, no traceback
        sys.exit(f"chipnet: error: {e}")


if __name__ == "__main__":
    console.run(main, "python -m recipes.chipnet", help_text)
