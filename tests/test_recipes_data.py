"""recipes.data: tfds pipelines (mock data for the catalogue datasets) and keras-cv augmentation."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import chipnet_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from recipes import data


def test_digits_pipeline_is_float_in_unit_range(tmp_path):
    ds = data.make_dataset("digits", "train", 64, data_dir=str(tmp_path), shuffle=False)
    x, y = next(iter(ds))
    assert x.shape == (64, 8, 8, 1) and x.dtype.name == "float32" and y.dtype.name == "int64"
    assert float(x.numpy().max()) == 1.0 and float(x.numpy().min()) == 0.0
    assert sum(int(b[0].shape[0]) for b in ds) == 1437


@pytest.mark.parametrize(
    "augment",
    [
        data.Augment(flip=True, crop_padding=4),
        data.Augment(flip=True, crop_padding=4, randaugment=True),
        data.Augment(cutmix=True, mixup=True),
    ],
    ids=["flip_crop", "randaugment", "cutmix_mixup"],
)
def test_cifar10_mock_data_with_keras_cv_augmentation(augment):
    with tfds.testing.mock_data(num_examples=16):
        ds = data.make_dataset("cifar10", "train", 8, augment=augment)
        x, y = next(iter(ds))
    assert x.shape == (8, 32, 32, 3) and x.dtype.name == "float32"
    assert np.isfinite(x.numpy()).all() and float(x.numpy().min()) >= 0.0 and float(x.numpy().max()) <= 1.0 + 1e-6
    if augment.mixes_labels:
        assert y.shape == (8, 10)
        np.testing.assert_allclose(y.numpy().sum(-1), 1.0, atol=1e-5)
    else:
        assert y.shape == (8,)


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match=r"'cifar10' is not prepared under --data_dir=.*download_and_prepare"):
        data.make_dataset("cifar10", "train", 8, data_dir=str(tmp_path))


def test_bad_names_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'. Accepted: digits, cifar10, cifar100, svhn_cropped"):
        data.make_dataset("mnist", "train", 8)
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        data.load("digits", "validation")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        data.make_dataset("digits", "train", 0)


def test_training_stream_of_epoch_e_does_not_depend_on_where_the_run_started(tmp_path):
    """The property resuming relies on: epoch e's batches are a function of (seed, e)."""
    from chipnet_tf.compat import keras

    keras.utils.set_random_seed(0)  # a global seed is set in every recipe run
    kwargs = dict(data_dir=str(tmp_path), split="train[:90%]", steps_per_epoch=30)
    full, steps = data.make_train_dataset("digits", 64, 3, **kwargs)
    resumed, _ = data.make_train_dataset("digits", 64, 3, initial_epoch=2, **kwargs)
    full = [y.numpy() for _, y in full]
    resumed = [y.numpy() for _, y in resumed]
    assert steps == 30 and len(full) == 90 and len(resumed) == 30  # 30 steps repeat the 21-batch split
    assert all((a == b).all() for a, b in zip(full[60:], resumed))
    assert not (full[0] == full[30]).all()  # epochs are shuffled differently
    assert data.split_names(0.1) == ("train[:90%]", "train[90%:]") and data.split_names(0) == ("train", None)
    with pytest.raises(ValueError, match="initial_epoch must be in \\[0, epochs=3\\)"):
        data.make_train_dataset("digits", 64, 3, initial_epoch=3, **kwargs)
