"""tf.data input pipelines of the recipes: tfds datasets, keras-cv augmentation, batching.

Every dataset goes through ``tfds.load`` (``digits`` is the offline builder in
:mod:`recipes.datasets`), so the pipeline is the same for all of them. Images become float32
in [0, 1]; labels int64 (or one-hot float32 after CutMix/MixUp).

Example::

    train = make_dataset("cifar10", "train", batch_size=128, data_dir="~/tensorflow_datasets",
                         augment=Augment(flip=True, crop_padding=4, randaugment=True))
"""

import dataclasses

import tensorflow_datasets as tfds

import recipes.datasets  # noqa: F401  (registers "digits")
from chipnet_tf.compat import tf

# name -> (input shape, classes, pixel maximum, horizontal flips make sense)
DATASETS = {
    "digits": ((8, 8, 1), 10, 16.0, False),
    "cifar10": ((32, 32, 3), 10, 255.0, True),
    "cifar100": ((32, 32, 3), 100, 255.0, True),
    "svhn_cropped": ((32, 32, 3), 10, 255.0, False),
}
SPLITS = {"train": "train", "test": "test"}


@dataclasses.dataclass
class Augment:
    """Training-time augmentation (keras-cv layers inside ``tf.data.map``).

    Attributes:
        flip: random horizontal flips (ignored for datasets where flips change the class).
        crop_padding: pad by this many pixels and crop back at a random offset (0 = off).
        randaugment: keras-cv RandAugment (2 ops, magnitude 0.3 on a [0, 1] value range).
        cutmix: keras-cv CutMix (labels become one-hot mixtures).
        mixup: keras-cv MixUp (labels become one-hot mixtures).
    """

    flip: bool = True
    crop_padding: int = 0
    randaugment: bool = False
    cutmix: bool = False
    mixup: bool = False

    @property
    def mixes_labels(self):
        return self.cutmix or self.mixup


def check_dataset(name):
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Accepted: {', '.join(DATASETS)}.")
    return DATASETS[name]


def info(name):
    """``(input shape, number of classes)`` of a dataset."""
    shape, classes, _, _ = check_dataset(name)
    return shape, classes


def load(name, split, data_dir=None):
    """``tfds.load`` with a clear error when the data is not there (no downloads here)."""
    check_dataset(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Accepted: {', '.join(SPLITS)}.")
    download = name == "digits"  # built from scikit-learn's bundled file, never downloaded
    try:
        return tfds.load(name, split=SPLITS[split], data_dir=data_dir, as_supervised=True, download=download)
    except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as e:
        where = data_dir or "~/tensorflow_datasets"
        raise ValueError(
            f"Dataset {name!r} is not prepared under --data_dir={where}. On a machine with internet access run "
            f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='{where}')"
            f'.download_and_prepare()"` and copy the directory here, or pass --data_dir pointing at it '
            f"(the offline default is --dataset=digits). ({type(e).__name__})"
        ) from e


def _augmenter(name, augment):
    """A function ``(images, labels) -> (images, labels)`` on batches."""
    import keras_cv

    shape, classes, _, flips = check_dataset(name)
    layers = []
    if augment.flip and flips:
        layers.append(keras_cv.layers.RandomFlip("horizontal"))
    if augment.randaugment:
        layers.append(keras_cv.layers.RandAugment(value_range=(0, 1), augmentations_per_image=2, magnitude=0.3))
    mixers = []
    if augment.cutmix:
        mixers.append(keras_cv.layers.CutMix())
    if augment.mixup:
        mixers.append(keras_cv.layers.MixUp())
    pad = int(augment.crop_padding)

    def apply(images, labels):
        if pad:
            padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            images = tf.image.random_crop(padded, tf.shape(images))
        for layer in layers:
            images = layer(images, training=True)
        if mixers:
            data = {"images": images, "labels": tf.one_hot(labels, classes)}
            for layer in mixers:
                data = layer(data, training=True)
            return data["images"], data["labels"]
        return images, labels

    return apply


def make_dataset(name, split, batch_size, data_dir=None, augment=None, shuffle=True, seed=0, drop_remainder=False):
    """A batched, prefetched ``tf.data.Dataset`` of ``(images float32 in [0, 1], labels)``.

    Args:
        name: one of ``DATASETS``.
        split: ``"train"`` or ``"test"``.
        batch_size: global batch size (tf.distribute splits it across replicas).
        data_dir: tfds data directory.
        augment: an :class:`Augment` for training, or None.
        shuffle: shuffle (training) with ``seed``.
        drop_remainder: keep batch shapes static (multi-worker training).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size!r}")
    _, _, scale, _ = check_dataset(name)
    ds = load(name, split, data_dir)
    ds = ds.map(
        lambda x, y: (tf.cast(x, tf.float32) / scale, tf.cast(y, tf.int64)), num_parallel_calls=tf.data.AUTOTUNE
    )
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment is not None:
        ds = ds.map(_augmenter(name, augment), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
