"""recipes.data: tfds pipelines (mock data for the catalogue datasets) and keras-cv augmentation."""

import gzip
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import chipnet_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from recipes import data
from recipes.datasets import fashion_mnist


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
    with pytest.raises(
        ValueError, match="Unknown dataset 'mnist'. Accepted: digits, fashion_mnist, cifar10, cifar100, svhn_cropped"
    ):
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


# -- fashion_mnist: the offline builder over the idx gzip files ----------------------------
def write_idx_fixture(directory, train=50, test=20):
    """Tiny Fashion-MNIST files in the real idx format; returns ``{split: (images, labels)}``.

    Image ``i`` of a split has label ``i % 10`` and pixel (0, 0) equal to ``i``, so a loaded
    example shows whether its image and label still belong together; pixel (27, 27) is 255.
    """
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", train), ("test", test)):
        images = rng.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        images[:, 27, 27] = 255
        labels = (np.arange(n) % 10).astype(np.uint8)
        image_file, label_file = fashion_mnist.FILES[split]
        with gzip.open(os.path.join(directory, image_file), "wb") as f:
            f.write(struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes())
        with gzip.open(os.path.join(directory, label_file), "wb") as f:
            f.write(struct.pack(">ii", 2049, n) + labels.tobytes())
        out[split] = (images, labels.astype(np.int64))
    return out


def test_fashion_mnist_is_prepared_once_from_the_idx_files(tmp_path, monkeypatch):
    source, tfds_dir = tmp_path / "files", str(tmp_path / "tfds")
    source.mkdir()
    want = write_idx_fixture(source)
    monkeypatch.setenv(fashion_mnist.ENV, str(source))

    assert data.info("fashion_mnist") == ((28, 28, 1), 10)
    x, y = data.load_numpy("fashion_mnist", "train", data_dir=tfds_dir)
    assert x.shape == (50, 28, 28, 1) and x.dtype == np.float32 and y.shape == (50,) and y.dtype == np.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0 and (x[:, 27, 27, 0] == 1.0).all()
    index = np.rint(x[:, 0, 0, 0] * 255).astype(int)
    assert sorted(index.tolist()) == list(range(50))  # every image once
    np.testing.assert_array_equal(y, index % 10)  # each with its own label
    np.testing.assert_array_equal(np.bincount(y), [5] * 10)
    np.testing.assert_array_equal(np.rint(x[np.argsort(index)] * 255).astype(np.uint8)[..., 0], want["train"][0])

    # Slices as the recipes use them, and the test split.
    assert [len(data.load_numpy("fashion_mnist", s, tfds_dir)[1]) for s in ("train[:90%]", "train[90%:]")] == [45, 5]
    x_test, y_test = data.load_numpy("fashion_mnist", "test", data_dir=tfds_dir)
    assert x_test.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(np.sort(y_test), np.sort(want["test"][1]))
    images, labels = next(iter(data.make_dataset("fashion_mnist", "test", 8, data_dir=tfds_dir, shuffle=False)))
    assert images.shape == (8, 28, 28, 1) and images.dtype.name == "float32" and labels.dtype.name == "int64"

    # Same features as tfds's own fashion_mnist (its builder's info needs no data).
    builder = tfds.builder("fashion_mnist_local", data_dir=tfds_dir)
    assert builder.info.splits["train"].num_examples == 50 and builder.info.splits["test"].num_examples == 20
    assert builder.info.features.to_json() == tfds.builder("fashion_mnist", data_dir=tfds_dir).info.features.to_json()

    # Prepared once: the files are no longer needed.
    monkeypatch.setenv(fashion_mnist.ENV, str(tmp_path / "gone"))
    assert len(data.load_numpy("fashion_mnist", "test", data_dir=tfds_dir)[1]) == 20


def test_missing_fashion_mnist_files_say_how_to_get_them(tmp_path, monkeypatch):
    source, tfds_dir = tmp_path / "files", str(tmp_path / "tfds")
    source.mkdir()
    monkeypatch.setenv(fashion_mnist.ENV, str(source))
    with pytest.raises(ValueError) as raised:
        data.make_dataset("fashion_mnist", "train", 8, data_dir=tfds_dir)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"Fashion-MNIST files not found in {source} (missing train-images-idx3-ubyte.gz, ")
    assert "`apt-get install dataset-fashion-mnist` (or `make fashion-data`)" in message
    assert "or set CHIPNET_FASHION_MNIST_DIR to the directory" in message
    # Without the variable the default is Debian's path.
    monkeypatch.delenv(fashion_mnist.ENV)
    assert fashion_mnist.source_dir() == "/usr/share/datasets/fashion-mnist"

    # The failed attempt leaves nothing behind that blocks preparing once the files are there.
    monkeypatch.setenv(fashion_mnist.ENV, str(source))
    write_idx_fixture(source, train=30, test=10)
    assert len(data.load_numpy("fashion_mnist", "train", data_dir=tfds_dir)[1]) == 30


def test_corrupt_idx_files_are_clear_errors(tmp_path):
    write_idx_fixture(tmp_path, train=10, test=10)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">ii", 2049, 9) + bytes(9))
    with pytest.raises(ValueError, match="has 10 images but train-labels-idx1-ubyte.gz has 9 labels"):
        fashion_mnist.load_arrays("train", str(tmp_path))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">iiii", 2051, 10, 28, 28) + bytes(100))
    with pytest.raises(ValueError, match="holds 100 bytes of data; its header announces shape \\(10, 28, 28\\)"):
        fashion_mnist.load_arrays("test", str(tmp_path))


@pytest.mark.slow
def test_real_fashion_mnist_counts(tmp_path, monkeypatch):
    """Debian's files, installed by `make fashion-data` when missing (never skipped)."""
    monkeypatch.delenv(fashion_mnist.ENV, raising=False)
    if fashion_mnist.missing_files():
        subprocess.run(["make", "fashion-data"], cwd=Path(__file__).resolve().parents[1], check=True)
    tfds_dir = str(tmp_path)
    builder = tfds.builder("fashion_mnist_local", data_dir=tfds_dir)
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 60_000
    assert builder.info.splits["test"].num_examples == 10_000
    x, y = data.load_numpy("fashion_mnist", "test", data_dir=tfds_dir)
    assert x.shape == (10_000, 28, 28, 1) and x.dtype == np.float32 and float(x.max()) == 1.0
    np.testing.assert_array_equal(np.bincount(y), [1_000] * 10)
    _, y_train = data.load_numpy("fashion_mnist", "train[:90%]", data_dir=tfds_dir)
    assert len(y_train) == 54_000
