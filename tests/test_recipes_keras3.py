"""recipes.pipeline with ``keras=3`` (``--keras=3``): the same stages, report, summary and
resume as the tf_keras runs, on Keras 3's TensorFlow backend, and on JAX and PyTorch
(``make test`` runs this file again under ``KERAS_BACKEND=jax`` and ``torch``), where the
export stage, which needs TensorFlow's backend, is left to a TensorFlow-backend run."""

import os
import shutil

import numpy as np
import pytest

import chipnet_tf
from chipnet_tf.io import saved_keras_version
from recipes import RecipeError, pipeline

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")


def _config(tmp_path, **kwargs):
    base = dict(
        model_dir=str(tmp_path / "run"),
        data_dir=str(tmp_path / "tfds"),
        model_kwargs={"width": 8},
        budget=0.5,
        pretrain_epochs=1,
        prune_epochs=2,
        finetune_epochs=1,
        steps_per_epoch=3,
        batch_size=16,
        verbose=0,
        keras=3,
    )
    base.update(kwargs)
    return pipeline.Config(**base)


def test_keras3_run_goes_through_every_stage(tmp_path, capsys):
    config = _config(tmp_path, verbose=1)
    report = pipeline.run(config)
    out = capsys.readouterr().out
    files = set(os.listdir(config.model_dir))
    assert {"dense.keras", "pruned.keras", "masks.npz", "stripped.keras", "report.json"} <= files
    for name in ("dense.keras", "pruned.keras", "stripped.keras"):
        assert saved_keras_version(os.path.join(config.model_dir, name)).startswith("3.")
    assert report["config"]["keras"] == 3
    assert len(report["prune_history"]["budget"]) == 2
    masks = chipnet_tf.load_masks(os.path.join(config.model_dir, "masks.npz"))
    import keras

    small = keras.models.load_model(os.path.join(config.model_dir, "stripped.keras"), compile=False)
    dense = keras.models.load_model(os.path.join(config.model_dir, "dense.keras"), compile=False)
    kept = chipnet_tf.budget_report(dense, masks=masks).totals
    assert small.count_params() == kept["params"]["kept"] < dense.count_params()
    assert chipnet_tf.count_flops(small) == kept["flops"]["kept"]
    if BACKEND == "tensorflow":
        assert report["completed"] == ["pretrain", "prune", "finetune", "export"]
        assert {"model.tflite", "model_int8.tflite"} <= files
        assert report["stripped"]["params"] == report["predicted_kept"]["params"] == small.count_params()
        assert report["int8_top1_agreement"] >= 0.9
    else:  # TFLite needs the TensorFlow backend: the run says how to export, and a TF-backend run can
        assert report["completed"] == ["pretrain", "prune", "finetune"]
        assert "model.tflite" not in files
        assert "export skipped: TFLite conversion needs Keras 3's TensorFlow backend" in out
        assert f"(this run's is {BACKEND})" in out
        with pytest.raises(RecipeError, match=f"this run's is {BACKEND}: run KERAS_BACKEND=tensorflow"):
            pipeline.run(_config(tmp_path, stage="export"))
    assert "== summary" in out and "stripped   test accuracy" in out


class _Interrupted(Exception):
    pass


def _interrupt_at(epoch_to_stop, batch_to_stop):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == epoch_to_stop and batch == batch_to_stop:
                raise _Interrupted

    return Interrupt()


def _weights(model_dir):
    import keras

    model = keras.models.load_model(os.path.join(model_dir, "pruned.keras"), compile=False)
    return [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="resume is the same code on every backend; run once")
def test_keras3_prune_resumes_from_its_last_backup(tmp_path, capsys):
    common = dict(prune_epochs=4, validation_fraction=0, finetune_epochs=0, pretrain_epochs=1)
    straight = _config(tmp_path / "straight", stage="prune", **common)
    cut = _config(tmp_path / "cut", stage="prune", **common)
    pipeline.run(_config(tmp_path / "straight", stage="pretrain", **common))
    os.makedirs(cut.model_dir)
    shutil.copy(os.path.join(straight.model_dir, "dense.keras"), cut.model_dir)
    pipeline.run(straight)
    interrupted = _config(tmp_path / "cut", stage="prune", callbacks=[_interrupt_at(2, 1)], **common)
    with pytest.raises(_Interrupted):
        pipeline.run(interrupted)
    assert pipeline._backed_up_epochs(os.path.join(cut.model_dir, "backup", "prune")) == 2
    assert not os.path.exists(os.path.join(cut.model_dir, "pruned.keras"))
    capsys.readouterr()
    resumed = pipeline.run(_config(tmp_path / "cut", stage="prune", verbose=1, **common))
    assert "resuming prune at epoch 3" in capsys.readouterr().out
    assert len(resumed["prune_history"]["loss"]) == 4
    for a, b in zip(_weights(straight.model_dir), _weights(cut.model_dir)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    masks_a = chipnet_tf.load_masks(os.path.join(straight.model_dir, "masks.npz"))
    masks_b = chipnet_tf.load_masks(os.path.join(cut.model_dir, "masks.npz"))
    assert all((masks_a[k] == masks_b[k]).all() for k in masks_a)
    assert not os.path.exists(os.path.join(cut.model_dir, "backup", "prune"))


def test_keras3_config_errors_name_the_value(tmp_path):
    with pytest.raises(RecipeError, match=r"keras must be 2 \(tf_keras\) or 3 \(Keras 3\). Received: 4"):
        _config(tmp_path, keras=4).validate()
    with pytest.raises(RecipeError, match="--strategy=mirrored distributes tf_keras models only"):
        _config(tmp_path, strategy="mirrored").validate()
