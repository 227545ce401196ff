"""recipes.pipeline: every stage for a step or two, on digits and on mock cifar10."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import chipnet_tf
from chipnet_tf.compat import keras
from recipes import pipeline


def _config(tmp_path, **kwargs):
    base = dict(
        model_dir=str(tmp_path / "run"),
        data_dir=str(tmp_path / "tfds"),
        pretrain_epochs=1,
        prune_epochs=2,
        finetune_epochs=1,
        steps_per_epoch=2,
        batch_size=16,
        verbose=0,
    )
    base.update(kwargs)
    return pipeline.Config(**base)


def test_all_stages_on_digits_write_every_artifact(tmp_path):
    config = _config(tmp_path, model_kwargs={"width": 8}, budget=0.5)
    report = pipeline.run(config)
    files = set(os.listdir(config.model_dir))
    assert {"dense.keras", "pruned.keras", "masks.npz", "stripped.keras", "model.tflite", "model_int8.tflite"} <= files
    assert {"report.json", "logs", "backup"} <= files
    with open(os.path.join(config.model_dir, "report.json")) as f:
        assert json.load(f) == report
    # the stripped model's counts equal what the masks predicted
    assert report["stripped"]["params"] == report["predicted_kept"]["params"]
    assert report["stripped"]["flops"] == report["predicted_kept"]["flops"]
    assert report["stripped"]["flops"] < report["dense"]["flops"]
    pruned = keras.models.load_model(os.path.join(config.model_dir, "pruned.keras"))
    ctl = chipnet_tf.prune.controllers(pruned)[0]
    # pruned.keras holds the epoch whose hard-masked network validated best (2 steps per epoch)
    hard = report["prune_history"]["hard_accuracy"]
    assert len(hard) == 2 and report["best_prune_epoch"] == 1 + hard.index(max(hard))
    assert int(ctl.pruning_epoch.numpy()) == report["best_prune_epoch"]
    assert int(ctl.pruning_step.numpy()) == 2 * report["best_prune_epoch"]
    assert len(report["prune_history"]["budget"]) == 2


@pytest.mark.parametrize(
    "model,kwargs",
    [
        ("resnet50_cifar", {"width": 0.0625}),
        ("mobilenet_v2_cifar", {"alpha": 0.25}),
        ("wrn", {"depth": 8, "widen_factor": 1}),
        ("preresnet", {"depth": 11}),
        ("MobileNetV2", {"alpha": 0.35}),
    ],
)
def test_each_model_family_on_mock_cifar10(tmp_path, model, kwargs):
    config = _config(tmp_path, dataset="cifar10", model=model, model_kwargs=kwargs, steps_per_epoch=1, batch_size=4)
    config.stage = "pretrain"
    with tfds.testing.mock_data(num_examples=8):
        pipeline.run(config)
        for stage in ("prune", "finetune", "export"):
            config.stage = stage
            report = pipeline.run(config)
    small = keras.models.load_model(os.path.join(config.model_dir, "stripped.keras"))
    dense = keras.models.load_model(os.path.join(config.model_dir, "dense.keras"))
    assert small.count_params() < dense.count_params()
    assert 0.0 <= report["stripped_accuracy"] <= 1.0
    assert report["stripped"]["params"] == small.count_params() == report["predicted_kept"]["params"]
    assert report["stripped"]["flops"] == report["predicted_kept"]["flops"]
    assert os.path.getsize(os.path.join(config.model_dir, "model.tflite")) == report["tflite_bytes"]["float32"]


def test_mask_transfer_from_another_run(tmp_path):
    source = _config(tmp_path / "a", model_kwargs={"width": 8}, stage="pretrain")
    pipeline.run(source)
    source.stage = "prune"
    pipeline.run(source)
    target = _config(tmp_path / "b", model_kwargs={"width": 8}, stage="pretrain", seed=1)
    pipeline.run(target)
    target.stage, target.masks_from = "prune", os.path.join(source.model_dir, "masks.npz")
    pipeline.run(target)
    target.stage = "finetune"
    pipeline.run(target)
    masks = chipnet_tf.load_masks(os.path.join(source.model_dir, "masks.npz"))
    small = keras.models.load_model(os.path.join(target.model_dir, "stripped.keras"))
    dense = keras.models.load_model(os.path.join(target.model_dir, "dense.keras"))
    assert small.count_params() == chipnet_tf.budget_report(dense, masks=masks).totals["params"]["kept"]


def test_bad_configs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'"):
        pipeline.run(_config(tmp_path, dataset="imagenet"))
    with pytest.raises(ValueError, match="budget must be in \\(0, 1\\]. Received: 1.5"):
        pipeline.run(_config(tmp_path, budget=1.5))
    with pytest.raises(ValueError, match="Unknown stage 'train'"):
        pipeline.run(_config(tmp_path, stage="train"))
    with pytest.raises(ValueError, match="Unknown model 'resnet9000'"):
        pipeline.run(_config(tmp_path, model="resnet9000", stage="pretrain"))
    with pytest.raises(ValueError, match="'cifar10' is not prepared under --data_dir"):
        pipeline.run(_config(tmp_path, dataset="cifar10", stage="pretrain"))
    # masks of a different architecture
    other = {"conv_x": np.ones(3, bool)}
    chipnet_tf.save_masks(tmp_path / "other.npz", other)
    config = _config(tmp_path, model_kwargs={"width": 8}, stage="pretrain")
    pipeline.run(config)
    config.stage, config.masks_from = "prune", str(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="masks name groups the model does not have: \\['conv_x'\\]"):
        pipeline.run(config)


def test_all_resumes_after_the_last_finished_stage(tmp_path):
    config = _config(tmp_path, model_kwargs={"width": 8}, budget=0.5, stage="pretrain")
    pipeline.run(config)
    dense_time = os.path.getmtime(os.path.join(config.model_dir, "dense.keras"))
    config.stage = "all"
    report = pipeline.run(config)  # pretrain finished under this configuration: not run again
    assert report["completed"] == ["pretrain", "prune", "finetune", "export"]
    assert os.path.getmtime(os.path.join(config.model_dir, "dense.keras")) == dense_time
    again = pipeline.run(config)
    assert again == report  # nothing left to do
    config.stage = "prune"  # re-running a stage makes the later ones stale
    assert pipeline.run(config)["completed"] == ["pretrain", "prune"]
    config.budget, config.stage = 0.3, "all"  # another configuration: everything runs again
    report = pipeline.run(config)
    assert os.path.getmtime(os.path.join(config.model_dir, "dense.keras")) > dense_time
    assert report["config"]["budget"] == 0.3 and report["completed"][-1] == "export"


def test_pretrain_on_a_fashion_mnist_fixture(tmp_path, monkeypatch):
    from recipes.datasets import fashion_mnist
    from tests.test_recipes_data import write_idx_fixture

    (tmp_path / "files").mkdir()
    write_idx_fixture(tmp_path / "files", train=60, test=20)
    monkeypatch.setenv(fashion_mnist.ENV, str(tmp_path / "files"))
    config = _config(tmp_path, dataset="fashion_mnist", model_kwargs={"width": 8}, stage="pretrain")
    report = pipeline.run(config)
    assert report["completed"] == ["pretrain"]
    dense = keras.models.load_model(os.path.join(config.model_dir, "dense.keras"))
    assert dense.input_shape == (None, 28, 28, 1) and dense.output_shape == (None, 10)


def test_unwritable_model_dir_and_missing_inputs_are_clear_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="model_dir '.*file/run' is not writable"):
        pipeline.run(_config(tmp_path, model_dir=str(blocker / "run")))
    with pytest.raises(ValueError, match="dense.keras does not exist: run --stage=pretrain first"):
        pipeline.run(_config(tmp_path, stage="prune"))


def test_report_png_shows_groups_and_curves(tmp_path):
    config = _config(tmp_path, model_kwargs={"width": 8}, budget=0.5, stage="pretrain")
    pipeline.run(config)
    config.stage = "prune"
    pipeline.run(config)
    png = os.path.join(config.model_dir, "report.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert width == 1200 and height >= 400
    with open(os.path.join(config.model_dir, "logs", "prune_history.json")) as f:
        rows = json.load(f)
    assert [r["epoch"] for r in rows] == [0, 1] and {"budget", "crispness", "accuracy"} <= set(rows[0])


def test_entry_point_usage_errors_list_accepted_values(tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "recipes.chipnet", *args], capture_output=True, text=True, timeout=300
        )

    # Usage errors: exit status 2, one line and a pointer to --help.
    proc = run("--dataset=imagenet")
    assert (
        proc.returncode == 2
        and "value should be one of <digits|fashion_mnist|cifar10|cifar100|svhn_cropped>" in proc.stderr
    )
    assert "Try 'python -m recipes.chipnet --help'." in proc.stderr and "Traceback" not in proc.stderr
    proc = run("--budget=1.5", f"--model_dir={tmp_path}", "--stage=pretrain")
    assert proc.returncode == 2 and "flag --budget=1.5: --budget must be in (0, 1]" in proc.stderr
    proc = run("--model_kwargs=[8]")
    assert proc.returncode == 2 and "--model_kwargs must be a JSON object" in proc.stderr
    proc = run("--strategy=horovod")
    assert proc.returncode == 2 and "value should be one of <default|mirrored|multi_worker|tpu>" in proc.stderr
    proc = run("extra_argument")
    assert proc.returncode == 2 and "Unexpected arguments: ['extra_argument']" in proc.stderr
    # Runtime input errors: one line on stderr, exit status 1, no traceback, no usage dump.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cases = [
        (
            (f"--model_dir={blocker}/run", "--stage=pretrain"),
            f"chipnet: error: model_dir '{blocker}/run' is not writable",
        ),
        (
            (f"--model_dir={tmp_path}/empty", "--stage=finetune", f"--data_dir={tmp_path}/tfds"),
            "masks.npz does not exist: run --stage=prune first (or --stage=all).",
        ),
        (
            ("--dataset=cifar10", f"--data_dir={tmp_path}/nothing", f"--model_dir={tmp_path}/c10", "--stage=pretrain"),
            "'cifar10' is not prepared under --data_dir=",
        ),
    ]
    for args, message in cases:
        proc = run(*args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and "--helpfull" not in proc.stderr
    # A failed run removes the model_dir it created when it wrote nothing there.
    assert not os.path.exists(tmp_path / "empty") and not os.path.exists(tmp_path / "c10")


def test_entry_point_help_lists_the_recipe_flags_and_exits_0():
    import subprocess
    import sys

    for arg in ("--help", "-h"):
        proc = subprocess.run(
            [sys.executable, "-m", "recipes.chipnet", arg], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith("ChipNet recipe: ``python -m recipes.chipnet")
        assert "--budget_type=channels|volume|params|flops" in proc.stdout and "--[no]flip" in proc.stdout
        assert "tensor_tracer" not in proc.stdout and "-v, --verbosity" in proc.stdout


@pytest.mark.slow
def test_entry_point_run_is_quiet_and_says_what_it_did(tmp_path):
    """A default-verbosity run: stage headers, the budget table, the files, a summary; no INFO lines."""
    import subprocess
    import sys

    from tests.output import assert_no_info_lines

    model_dir = tmp_path / "run"
    args = [
        f"--model_dir={model_dir}",
        f"--data_dir={tmp_path / 'tfds'}",
        '--model_kwargs={"width": 8}',
        "--pretrain_epochs=1",
        "--prune_epochs=2",
        "--finetune_epochs=1",
        "--steps_per_epoch=2",
    ]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def run():
        proc = subprocess.run(
            [sys.executable, "-m", "recipes.chipnet", *args], capture_output=True, text=True, timeout=900, env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert_no_info_lines(proc.stdout, proc.stderr)
        return proc.stdout

    out = run()
    headers = [line for line in out.splitlines() if line.startswith("== ")]
    assert [h.split(":")[0] for h in headers] == [
        "== 1/4 pretrain",
        "== 2/4 prune",
        "== 3/4 finetune",
        "== 4/4 export",
        f"== summary (all numbers in {model_dir}/report.json)",
    ]
    assert "ChipNet budget: 0.25 of flops" in out and "BestHardMasks: restored the weights of epoch" in out
    assert f"wrote 5 files to {model_dir}: logs/, masks.npz, pruned.keras, report.json, report.png" in out
    assert f"wrote 3 files to {model_dir}: model.tflite, model_int8.tflite, report.json" in out
    summary = out[out.index("== summary") :]
    assert "dense      test accuracy" in summary and "FLOPs (" in summary and "int8 top-1 agreement" in summary
    assert '"dense_accuracy"' not in out  # no raw report.json dump
    again = run()  # everything finished: say so, and summarise again
    assert again.count("already finished in") == 4 and again[again.index("== summary") :] == summary


def test_prune_stage_under_mirrored_strategy_matches_one_replica(tmp_path):
    """Two logical CPUs (conftest): the same global batch gives the same losses and penalties.

    Not bit-identical: BatchNormalization uses per-replica batch statistics (8 + 8 samples
    instead of 16), which moves the data loss by a few 1e-3 relative after two epochs, and
    the soft budget by about 1e-2: the default search lets the task gradient move closed
    channels too (gate_leak), so it follows those statistics more than the paper's did.
    Penalties summed instead of averaged over replicas would double the (penalty-dominated)
    loss, far outside these tolerances.
    """
    histories = {}
    for strategy in ("default", "mirrored"):
        config = _config(tmp_path / strategy, model_kwargs={"width": 8}, stage="pretrain", strategy=strategy)
        pipeline.run(config)
        config.stage = "prune"
        histories[strategy] = pipeline.run(config)["prune_history"]
    assert pipeline.make_strategy("mirrored").num_replicas_in_sync == 2
    for key, rtol in (("loss", 5e-3), ("budget", 2e-2), ("crispness", 2e-3)):
        np.testing.assert_allclose(histories["mirrored"][key], histories["default"][key], rtol=rtol, atol=1e-4)


def test_report_png_has_whole_epoch_ticks(tmp_path, monkeypatch):
    from matplotlib import pyplot as plt

    from recipes import plots
    from tests.models import toy_model

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at its axes
    history = {"budget": [0.9, 0.8, 0.7], "crispness": [0.1, 0.05, 0.02], "accuracy": [0.5, 0.6, 0.7]}
    plots.write_report_png(tmp_path / "report.png", chipnet_tf.budget_report(toy_model()), history, 0.5, "flops")
    curves = [ax for ax in figures[0].axes if ax.get_xlabel() != "channels"]
    assert len(curves) == 3
    for ax in curves:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
