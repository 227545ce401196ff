"""tf.data input pipelines of the recipes: tfds datasets, keras-cv augmentation, batching.

Every dataset goes through ``tfds.load`` (``digits`` and ``fashion_mnist`` are the offline
builders in :mod:`recipes.datasets`), so the pipeline is the same for all of them. Images
become float32 in [0, 1]; labels int64 (or one-hot float32 after CutMix/MixUp).

Example::

    train = make_dataset("cifar10", "train", batch_size=128, data_dir="~/tensorflow_datasets",
                         augment=Augment(flip=True, crop_padding=4, randaugment=True))
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

import recipes.datasets  # noqa: F401  (registers "digits" and "fashion_mnist_local")
from chipnet_tf.compat import tf
from recipes import RecipeError
from recipes.datasets import fashion_mnist

# name -> (input shape, classes, pixel maximum, horizontal flips make sense)
DATASETS = {
    "digits": ((8, 8, 1), 10, 16.0, False),
    "fashion_mnist": ((28, 28, 1), 10, 255.0, True),  # a mirrored garment keeps its class
    "cifar10": ((32, 32, 3), 10, 255.0, True),
    "cifar100": ((32, 32, 3), 100, 255.0, True),
    "svhn_cropped": ((32, 32, 3), 10, 255.0, False),
}
SPLITS = {"train": "train", "test": "test"}
# Datasets built on this machine from local files (never downloaded): recipe name -> tfds builder name.
# fashion_mnist is our builder over Debian's files: tfds's own rejects their checksums (recipes/datasets).
OFFLINE_BUILDERS = {"digits": "digits", "fashion_mnist": "fashion_mnist_local"}


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
        raise RecipeError(f"Unknown dataset {name!r}. Accepted: {', '.join(DATASETS)}.")
    return DATASETS[name]


def info(name):
    """``(input shape, number of classes)`` of a dataset."""
    shape, classes, _, _ = check_dataset(name)
    return shape, classes


def load(name, split, data_dir=None):
    """``tfds.load`` with a clear error when the data is not there (no downloads here)."""
    check_dataset(name)
    if split.split("[")[0] not in SPLITS:
        raise RecipeError(
            f"Unknown split {split!r}. Accepted: {', '.join(SPLITS)} (with tfds slicing, e.g. train[:90%])."
        )
    # digits and fashion_mnist are prepared on first use from files on this machine, never downloaded.
    download = name in OFFLINE_BUILDERS
    try:
        return tfds.load(
            OFFLINE_BUILDERS.get(name, name), split=split, data_dir=data_dir, as_supervised=True, download=download
        )
    except fashion_mnist.MissingFiles as e:
        raise RecipeError(str(e)) from None
    except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as e:
        where = data_dir or "~/tensorflow_datasets"
        raise RecipeError(
            f"Dataset {name!r} is not prepared under --data_dir={where}. On a machine with internet access run "
            f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='{where}')"
            f'.download_and_prepare()"` and copy the directory here, or pass --data_dir pointing at it '
            f"(the offline default is --dataset=digits). ({type(e).__name__})"
        ) from e


def load_numpy(name, split, data_dir=None):
    """A whole split in memory: ``(images float32 (N, H, W, C) in [0, 1], labels int64 (N,))``.

    Same source, split syntax and scaling as :func:`make_dataset` (pixel maximum of ``DATASETS``),
    for benchmarks that train on numpy arrays. Example::

        x, y = load_numpy("fashion_mnist", "train[:90%]")   # (54000, 28, 28, 1) float32, int64
    """
    shape, _, scale, _ = check_dataset(name)
    batches = list(tfds.as_numpy(load(name, split, data_dir).batch(8192)))
    if not batches:
        return np.zeros((0, *shape), np.float32), np.zeros((0,), np.int64)
    images = np.concatenate([x for x, _ in batches]).astype(np.float32)
    images /= np.float32(scale)
    labels = np.concatenate([y for _, y in batches]).astype(np.int64)
    return images, labels


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

    def apply(images, labels, seed=None):
        if pad:
            padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            if seed is None:
                images = tf.image.random_crop(padded, tf.shape(images))
            else:  # a function of (seed, epoch, batch): the same crops after a resume
                images = tf.image.stateless_random_crop(padded, tf.shape(images), seed)
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
        raise RecipeError(f"batch_size must be a positive integer. Received: {batch_size!r}")
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
    return _shard_by_data(ds).prefetch(tf.data.AUTOTUNE)


def _shard_by_data(ds):
    """tfds splits come in few, uneven files: a multi-worker strategy must shard by element."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def batches_per_pass(name, split, batch_size, data_dir=None, drop_remainder=False):
    """Batches in one pass over a split."""
    n = int(load(name, split, data_dir).cardinality())
    if n < 0:
        raise RecipeError(f"The size of {name!r}/{split} is unknown; pass steps_per_epoch.")
    return max(1, n // batch_size if drop_remainder else -(-n // batch_size))


def split_names(validation_fraction):
    """``(train split, validation split or None)``: the last ``validation_fraction`` of train held out."""
    if not 0 <= validation_fraction < 1:
        raise RecipeError(f"validation_fraction must be in [0, 1). Received: {validation_fraction!r}")
    percent = round(100 * validation_fraction)
    if percent == 0:
        return "train", None
    return f"train[:{100 - percent}%]", f"train[{100 - percent}%:]"


def make_train_dataset(
    name,
    batch_size,
    epochs,
    data_dir=None,
    augment=None,
    seed=0,
    initial_epoch=0,
    steps_per_epoch=None,
    drop_remainder=False,
    split="train",
):
    """The training stream of a whole ``fit``: epochs ``initial_epoch .. epochs - 1``, in order.

    Epoch ``e`` is a pure function of ``(seed, e)``: its shuffle order and its crop offsets
    are seeded by the epoch number, not drawn from a random state that a restarted process
    would not have. So a run resumed at epoch ``e`` (``BackupAndRestore``) sees exactly the
    batches an uninterrupted run sees from epoch ``e`` on. (keras-cv's flip, RandAugment, CutMix
    and MixUp draw from their own generators, which start afresh in a new process.)

    Pass the returned ``steps_per_epoch`` to ``fit``: the stream is one dataset over all
    epochs, and an epoch longer than the split repeats it (shuffled again each pass).

    Returns:
        ``(dataset, steps_per_epoch)``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise RecipeError(f"batch_size must be a positive integer. Received: {batch_size!r}")
    _, _, scale, _ = check_dataset(name)
    one_pass = batches_per_pass(name, split, batch_size, data_dir, drop_remainder)
    if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
        raise RecipeError(f"steps_per_epoch must be a positive integer or None. Received: {steps_per_epoch!r}")
    steps = one_pass if steps_per_epoch is None else steps_per_epoch
    base = load(name, split, data_dir).map(
        lambda x, y: (tf.cast(x, tf.float32) / scale, tf.cast(y, tf.int64)), num_parallel_calls=tf.data.AUTOTUNE
    )
    augmenter = _augmenter(name, augment) if augment is not None else None

    passes = -(-steps // one_pass)

    def epoch(e):  # Python seeds: tf.data rejects tensor seeds once a global seed is set
        epoch_seed = seed * 1_000_003 + e
        ds = base.shuffle(10_000, seed=epoch_seed * 1_009, reshuffle_each_iteration=False)
        for p in range(1, passes):
            ds = ds.concatenate(base.shuffle(10_000, seed=epoch_seed * 1_009 + p, reshuffle_each_iteration=False))
        ds = ds.batch(batch_size, drop_remainder=drop_remainder).take(steps)
        if augmenter is None:
            return ds
        return ds.enumerate().map(
            lambda i, batch: augmenter(*batch, seed=tf.stack([tf.constant(epoch_seed, tf.int64), i])),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    if not 0 <= initial_epoch < epochs:
        raise RecipeError(f"initial_epoch must be in [0, epochs={epochs}). Received: {initial_epoch!r}")
    # Epochs are chained lazily: only the running epoch holds a shuffle buffer.
    ds = epoch(initial_epoch)
    for e in range(initial_epoch + 1, epochs):
        ds = ds.concatenate(epoch(e))
    return _shard_by_data(ds).prefetch(tf.data.AUTOTUNE), steps
