"""The offline ``digits`` tfds builder of the recipes."""

import numpy as np
import tensorflow_datasets as tfds

import chipnet_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from recipes.datasets import digits


def test_digits_builds_offline_and_loads_like_any_tfds_dataset(tmp_path):
    builder = digits.Digits(data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 1437
    assert builder.info.splits["test"].num_examples == 360
    assert builder.info.features["label"].num_classes == 10
    train = tfds.load("digits", split="train", data_dir=str(tmp_path), as_supervised=True)
    images, labels = next(iter(train.batch(2000)))
    assert images.shape == (1437, 8, 8, 1) and images.dtype.name == "uint8"
    assert int(images.numpy().max()) == 16 and sorted(set(labels.numpy().tolist())) == list(range(10))
    # The splits partition sklearn's 1,797 images exactly.
    test = next(iter(tfds.load("digits", split="test", data_dir=str(tmp_path), as_supervised=True).batch(2000)))
    all_images, _ = digits.load_arrays()
    got = np.concatenate([images.numpy(), test[0].numpy()]).reshape(1797, -1)
    want = all_images.reshape(1797, -1)
    assert sorted(map(bytes, got)) == sorted(map(bytes, want))


def test_arrays_match_scikit_learn():
    from sklearn.datasets import load_digits

    images, labels = digits.load_arrays()
    ref = load_digits()
    np.testing.assert_array_equal(images[..., 0], ref.images.astype(np.uint8))
    np.testing.assert_array_equal(labels, ref.target)
