"""``digits``: scikit-learn's bundled 8x8 handwritten digits as a tensorflow-datasets builder.

The offline default dataset of the recipes. Its source is the ``digits.csv.gz`` file that
ships inside scikit-learn (1,797 images of 8x8 pixels with values 0..16), so it builds
without any download, and the recipes read it through ``tfds.load`` exactly like
``cifar10`` or ``svhn_cropped``.

Example::

    import recipes.datasets  # registers "digits"
    ds = tfds.load("digits", split="train", data_dir="/tmp/tfds", as_supervised=True)
"""

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

# A fixed, stratified-by-shuffle split: the first 1,437 images of a seeded permutation train,
# the last 360 test (80/20). Kept stable across versions so results stay comparable.
_TRAIN = 1437
_SEED = 0


def source_path():
    """Path of scikit-learn's bundled digits file."""
    import sklearn.datasets

    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "data", "digits.csv.gz")


def load_arrays():
    """``(images uint8 (1797, 8, 8, 1) in 0..16, labels int64)`` from the bundled file."""
    with gzip.open(source_path(), "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    images = data[:, :64].reshape(-1, 8, 8, 1).astype(np.uint8)
    labels = data[:, 64].astype(np.int64)
    return images, labels


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 digits (UCI optical recognition of handwritten digits, test part)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 1,437 train / 360 test images from scikit-learn's digits."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "8x8 grey images of handwritten digits with pixel values 0..16, bundled with scikit-learn "
                "(the test part of the UCI 'Optical Recognition of Handwritten Digits' data)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the source ships with scikit-learn
        images, labels = load_arrays()
        order = np.random.default_rng(_SEED).permutation(len(images))
        return {
            "train": self._generate_examples(images, labels, order[:_TRAIN]),
            "test": self._generate_examples(images, labels, order[_TRAIN:]),
        }

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
