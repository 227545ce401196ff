"""``chipnet-tf``: report, strip and export ChipNet checkpoints from the command line.

Usage::

    chipnet-tf report CHECKPOINT [--masks=masks.npz] [--round_to=8]
    chipnet-tf strip  CHECKPOINT OUT(.keras|.h5|directory) [--masks=...] [--round_to=8]
    chipnet-tf export CHECKPOINT OUT.tflite [--quantization=int8 --representative_data=x.npy]
                      [--io_type=int8] [--verify_data=x.npy]
    chipnet-tf profile MODEL --out=table.json [--threads=N] [--quantization=int8]

CHECKPOINT is a ``.keras`` or ``.h5`` file, a SavedModel directory, or a
``tf.train.Checkpoint`` / ``save_weights`` prefix. A file saved by Keras 3 (its
``keras_version``) loads with Keras 3 (``KERAS_BACKEND``, TensorFlow by default, for
``export`` and ``profile``), and ``strip`` writes a Keras 3 model: ``.keras``, ``.h5``, or
for a directory an inference SavedModel (``model.export``). A prefix holds only weights, so give the
model-building recipe too: ``--model=NAME`` (a :mod:`chipnet_tf.architectures` or
``keras.applications`` name), ``--model_kwargs='{"num_classes": 10}'``, and for a wrapped
checkpoint ``--budget`` / ``--budget_type`` (``--checkpoint_of=dense`` for an unwrapped one).
Checkpoints trained on a GPU under ``mixed_float16`` load and strip on a CPU into float32.
Outputs are written atomically: OUT is either the old file or the complete new one.
Errors are one line on stderr, exit status 1 (2 for usage errors). ``-h``/``--help`` lists
the commands and flags, ``COMMAND --help`` one command's; ``-v`` shows the library's logs.
"""

import contextlib
import json
import os
import shutil
import sys
import tempfile

from absl import app, flags

from chipnet_tf.io import saved_keras_version
from chipnet_tf.validators import first_line

# chipnet_tf, TensorFlow and Keras are imported inside the commands, not here: `chipnet-tf
# --help` and usage errors answer in a fraction of a second instead of TensorFlow's start-up.

FLAGS = flags.FLAGS
# chipnet_tf.budgets.ALL_BUDGET_TYPES, spelled out: importing it would load TensorFlow for --help.
_BUDGET_TYPES = ["channels", "volume", "params", "flops", "latency"]

flags.DEFINE_string("masks", None, "masks file (.npz/.json) to use instead of the checkpoint's own hard masks")
flags.DEFINE_integer("round_to", 1, "keep multiples of this many channels per group (hard masks)", lower_bound=1)
flags.DEFINE_string(
    "model", None, "recipe for weight-only checkpoints: chipnet_tf.architectures or keras.applications name"
)
flags.DEFINE_string("model_kwargs", "{}", "recipe: JSON keyword arguments for --model")
flags.DEFINE_enum("checkpoint_of", "wrapped", ["wrapped", "dense"], "recipe: is the checkpoint of the wrapped model?")
flags.DEFINE_float("budget", 0.5, "recipe: the wrapped model's budget")
flags.DEFINE_enum("budget_type", "flops", _BUDGET_TYPES, "recipe: budget type")
flags.DEFINE_string("latency_table", None, "recipe: latency table (.json) of a model wrapped for latency")
flags.DEFINE_string("out", None, "profile: where to write the latency table (.json)")
flags.DEFINE_integer("threads", 1, "profile: LiteRT interpreter threads, as deployed", lower_bound=1)
flags.DEFINE_enum("quantization", "none", ["none", "dynamic", "float16", "int8"], "export: TFLite quantization")
flags.DEFINE_enum("io_type", "float32", ["float32", "int8"], "export: input/output type of int8 models")
flags.DEFINE_string("representative_data", None, "export: .npy of calibration inputs (N, ...) for int8")
flags.DEFINE_string("verify_data", None, "export: .npy of inputs to verify the TFLite file against Keras")
flags.DEFINE_float(
    "tolerance",
    None,
    "export: max |diff| x max(1, largest |output|) for float32/float16 (default 1e-3/1e-2), "
    "min top-1 agreement for dynamic/int8 (default 0.95)",
)
flags.DEFINE_bool("overwrite", True, "replace an existing OUT")

# command -> (arguments, one-line description, its own flags)
_RECIPE_FLAGS = ("model", "model_kwargs", "checkpoint_of", "budget", "budget_type", "latency_table")
COMMANDS = {
    "report": (("CHECKPOINT",), "print the budget table of the hard masks", ("masks", "round_to", *_RECIPE_FLAGS)),
    "strip": (
        ("CHECKPOINT", "OUT"),
        "write the physically smaller plain Keras model (.keras, .h5 or a SavedModel directory)",
        ("masks", "round_to", "overwrite", *_RECIPE_FLAGS),
    ),
    "export": (
        ("CHECKPOINT", "OUT.tflite"),
        "strip and convert to TFLite, optionally quantized and verified in LiteRT",
        (
            "quantization",
            "representative_data",
            "io_type",
            "verify_data",
            "tolerance",
            "masks",
            "round_to",
            "overwrite",
            *_RECIPE_FLAGS,
        ),
    ),
    "profile": (
        ("MODEL",),
        "measure the dense model's latency table in LiteRT on this machine (quantization: none or int8)",
        ("out", "threads", "quantization", "representative_data", "overwrite", "model", "model_kwargs"),
    ),
}
PROG = "chipnet-tf"


class CliError(Exception):
    """An error reported as one line, without a traceback."""


# -- loading -----------------------------------------------------------------------------
def _is_prefix(path):
    return os.path.exists(path + ".index")


def load_checkpoint(path):
    """Loads CHECKPOINT (see the module docstring): a ``.keras``/``.h5`` file saved by Keras 3
    as a Keras 3 model (:func:`saved_keras_version`), everything else as a tf_keras model."""
    import chipnet_tf
    from chipnet_tf.compat import keras, tf

    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise CliError(f"{path}: a directory but not a SavedModel (no saved_model.pb)")
        return _load_model(keras, path)
    if os.path.isfile(path):
        if not path.endswith((".keras", ".h5", ".hdf5")):
            raise CliError(
                f"{path}: unsupported file type; expected .keras, .h5, a SavedModel directory or a checkpoint prefix"
            )
        version = saved_keras_version(path)
        if version.startswith("3."):
            return _load_model(_keras3_for(path, version), path)
        return _load_model(keras, path)
    if _is_prefix(path):
        if not FLAGS.model:
            raise CliError(f"{path}: a weights checkpoint needs the model recipe: --model=NAME [--model_kwargs=JSON]")
        model = build_model(FLAGS.model, FLAGS.model_kwargs)
        if FLAGS.checkpoint_of == "wrapped":
            model = chipnet_tf.prune_low_budget(
                model, budget=FLAGS.budget, budget_type=FLAGS.budget_type, latency_table=_latency_table()
            )
        try:
            status = tf.train.Checkpoint(model=model).read(path)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError):
            try:
                model.load_weights(path).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as e:
                raise CliError(
                    f"{path}: checkpoint does not match --model={FLAGS.model} (--checkpoint_of={FLAGS.checkpoint_of}): "
                    f"{first_line(e)}"
                ) from e
        return model
    raise CliError(f"{path}: no such file, directory or checkpoint prefix")


def _keras3_for(path, version):
    """Keras 3, with chipnet_tf's Keras 3 layers registered so that a wrapped model loads."""
    try:
        from chipnet_tf.compat import keras3
        from chipnet_tf.search.layers import keras3_layers

        keras3_layers()
        return keras3()
    except ImportError as e:
        raise CliError(f"{path}: saved by Keras {version}; loading it needs Keras 3 (pip install keras): {e}") from e


def _latency_table():
    from chipnet_tf import latency

    if not FLAGS.latency_table:
        return None
    try:
        return latency.LatencyTable.load(FLAGS.latency_table)
    except (OSError, ValueError) as e:
        raise CliError(f"--latency_table={FLAGS.latency_table}: {first_line(e)}") from e


def _load_model(keras, path):
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - any failure to read is reported in one line
        raise CliError(f"{path}: cannot load the model ({type(e).__name__}: {first_line(e)})") from e


def build_model(name, kwargs_json):
    """``--model`` with ``--model_kwargs``: :func:`chipnet_tf.architectures.build`."""
    from chipnet_tf import architectures

    try:
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as e:
        raise CliError(f"--model_kwargs is not valid JSON: {e}") from e
    if not isinstance(kwargs, dict):
        raise CliError(f"--model_kwargs must be a JSON object. Received: {kwargs_json}")
    try:
        return architectures.build(name, **kwargs)
    except (ValueError, TypeError) as e:
        raise CliError(f"--model={name}: {first_line(e)}") from e


def _masks(model):
    import chipnet_tf

    if FLAGS.masks:
        try:
            return chipnet_tf.load_masks(FLAGS.masks)
        except (OSError, ValueError) as e:
            raise CliError(f"--masks={FLAGS.masks}: {first_line(e)}") from e
    if chipnet_tf.prune.is_pruned(model):
        return chipnet_tf.get_masks(model, round_to=FLAGS.round_to)
    raise CliError(f"{model.name!r} is not a wrapped ChipNet model: give --masks=PATH")


def _load_array(path, flag):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"--{flag}={path}: {first_line(e)}") from e


# -- atomic outputs ----------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_output(out):
    """Yields a temporary path next to ``out``; moves it onto ``out`` only on success."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise CliError(f"{out}: the output directory {parent} does not exist")
    if os.path.exists(out) and not FLAGS.overwrite:
        raise CliError(f"{out} exists (pass --overwrite to replace it)")
    tmpdir = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out)}.")
    tmp = os.path.join(tmpdir, os.path.basename(out))
    try:
        yield tmp
        if os.path.isdir(tmp):
            if os.path.exists(out):
                old = tmpdir + ".old"
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True) if os.path.isdir(old) else os.remove(old)
            else:
                os.replace(tmp, out)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# -- commands ----------------------------------------------------------------------------
def cmd_report(checkpoint):
    import chipnet_tf

    model = load_checkpoint(checkpoint)
    masks = _masks(model) if (FLAGS.masks or FLAGS.round_to != 1) else None
    if masks is None and not chipnet_tf.prune.is_pruned(model):
        raise CliError(f"{checkpoint}: not a wrapped ChipNet model: give --masks=PATH")
    print(chipnet_tf.budget_report(model, masks=masks))


def cmd_strip(checkpoint, out):
    import chipnet_tf
    from chipnet_tf.compat import is_keras3_object

    if not out.endswith((".keras", ".h5")) and os.path.splitext(out)[1]:
        raise CliError(f"{out}: OUT must end in .keras or .h5, or be a directory name for a SavedModel")
    model = load_checkpoint(checkpoint)
    small = chipnet_tf.strip_pruning(model, masks=_masks(model))
    with _atomic_output(out) as tmp:
        if os.path.splitext(out)[1]:
            small.save(tmp)
        elif is_keras3_object(small):  # Keras 3 writes a SavedModel for inference (no Keras model in it)
            small.export(tmp, format="tf_saved_model", verbose=False)
        else:
            small.save(tmp, save_format="tf")
    print(f"wrote {out}: {small.count_params():,} params, {chipnet_tf.count_flops(small):,} FLOPs")


def cmd_export(checkpoint, out):
    import chipnet_tf
    from chipnet_tf import export

    if not out.endswith(".tflite"):
        raise CliError(f"{out}: OUT must end in .tflite")
    quantization = None if FLAGS.quantization == "none" else FLAGS.quantization
    representative = (
        _load_array(FLAGS.representative_data, "representative_data") if FLAGS.representative_data else None
    )
    verify = _load_array(FLAGS.verify_data, "verify_data") if FLAGS.verify_data else None
    model = load_checkpoint(checkpoint)
    chipnet_tf.latency.check_export(model, quantization)
    small = (
        chipnet_tf.strip_pruning(model, masks=_masks(model))
        if (FLAGS.masks or chipnet_tf.prune.is_pruned(model))
        else model
    )
    try:
        data = export.to_tflite(
            small,
            quantization=quantization,
            representative_dataset=representative,
            io_type=FLAGS.io_type,
            verify_samples=verify,
            tolerance=FLAGS.tolerance,
        )
    except ValueError as e:
        raise CliError(first_line(e)) from e
    with _atomic_output(out) as tmp, open(tmp, "wb") as f:
        f.write(data)
    print(f"wrote {out}: {len(data):,} bytes ({quantization or 'float32'})")


def cmd_profile(path):
    import chipnet_tf
    from chipnet_tf import latency

    quantization = None if FLAGS.quantization == "none" else FLAGS.quantization
    if quantization not in latency.QUANTIZATIONS:
        raise CliError(f"--quantization={FLAGS.quantization}: a latency table is measured for none or int8")
    if not FLAGS.out or not FLAGS.out.endswith(".json"):
        raise CliError(f"--out must name a .json file. Received: --out={FLAGS.out}")
    if os.path.exists(FLAGS.out) and not FLAGS.overwrite:
        raise CliError(f"{FLAGS.out} exists (pass --overwrite to replace it)")
    representative = (
        _load_array(FLAGS.representative_data, "representative_data") if FLAGS.representative_data else None
    )
    model = load_checkpoint(path)
    if chipnet_tf.prune.is_pruned(model):
        raise CliError(f"{path}: a wrapped ChipNet model; profile the dense model it was made from")
    table = latency.profile(
        model, threads=FLAGS.threads, quantization=quantization, representative_dataset=representative
    )
    table.save(FLAGS.out)
    print(latency.summary(table))
    print(f"wrote {FLAGS.out} in {table.stats.get('profile_s', 0.0):.1f} s")


def help_text(argv):
    """``--help``: the commands and their flags; ``COMMAND --help``: that command's."""
    from chipnet_tf import console

    command = next((a for a in argv[1:] if a in COMMANDS), None)
    if command is not None:
        args, what, names = COMMANDS[command]
        lines = [f"usage: {PROG} {command} {' '.join(args)} [flags]", "", f"{what[0].upper()}{what[1:]}.", "", "flags:"]
        lines += console.flag_lines(names)
    else:
        lines = [f"usage: {PROG} COMMAND ARGS [flags]", "", "commands:"]
        width = max(len(f"{c} {' '.join(a)}") for c, (a, _, _) in COMMANDS.items())
        lines += [f"  {c + ' ' + ' '.join(a):<{width}}  {what}" for c, (a, what, _) in COMMANDS.items()]
        every_flag = dict.fromkeys(name for _, _, names in COMMANDS.values() for name in names)
        lines += ["", "flags:"] + console.flag_lines(list(every_flag))
        lines += [
            "",
            "CHECKPOINT: a .keras/.h5 file, a SavedModel directory, or a tf.train.Checkpoint prefix",
            "(with --model and the other recipe flags). Run 'chipnet-tf COMMAND --help' for one command.",
        ]
    return "\n".join(lines + console.verbosity_lines())


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"expected a command: {', '.join(COMMANDS)}. Received: {argv[1:2] or 'nothing'}")
    command, args = argv[1], argv[2:]
    want = COMMANDS[command][0]
    if len(args) != len(want):
        raise app.UsageError(f"{command} expects {' '.join(want)}. Received: {' '.join(args) or 'nothing'}")
    if command == "export" and FLAGS.quantization == "int8" and not FLAGS.representative_data:
        raise app.UsageError(
            "--quantization=int8 needs --representative_data=x.npy (calibration inputs, shape (N, ...))"
        )
    try:
        {"report": cmd_report, "strip": cmd_strip, "export": cmd_export, "profile": cmd_profile}[command](*args)
    except CliError as e:
        print(f"{PROG} {command}: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as e:  # chipnet_tf's own input errors are already clear
        print(f"{PROG} {command}: error: {first_line(e)}", file=sys.stderr)
        return 1
    return 0


def run():
    """Console entry point (``chipnet-tf``)."""
    from chipnet_tf import console

    console.run(main, PROG, help_text)


if __name__ == "__main__":
    run()
