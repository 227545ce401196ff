"""``fashion_mnist_local``: Fashion-MNIST built from the four original idx gzip files on disk.

The recipes' ``--dataset=fashion_mnist``. Debian's ``dataset-fashion-mnist`` package installs
the files under ``/usr/share/datasets/fashion-mnist`` (``CHIPNET_FASHION_MNIST_DIR`` points
elsewhere, e.g. at a test fixture). The builder is prepared once into the tfds data dir and
then read through ``tfds.load`` like any other dataset; its features are those of tfds's own
``fashion_mnist`` (image (28, 28, 1) uint8, label with the 10 class names).

Why not tfds's own ``fashion_mnist`` builder with ``manual_dir``: tfds validates the files
against its registered checksums, and Debian's files are re-compressed (no file name in the
gzip header: 23-24 bytes shorter, another SHA-256, same content), so tfds raises
``NonMatchingChecksumError``; its builder also hard-codes 60,000/10,000 images, so it cannot
be prepared from a small fixture.

Example::

    import recipes.datasets  # registers "fashion_mnist_local"
    ds = tfds.load("fashion_mnist_local", split="train", data_dir="/tmp/tfds", as_supervised=True)
"""

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

ENV = "CHIPNET_FASHION_MNIST_DIR"
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IMAGES_MAGIC = 2051  # idx3-ubyte: 0x00000803, then count, rows, columns (big-endian int32)
_LABELS_MAGIC = 2049  # idx1-ubyte: 0x00000801, then count


class MissingFiles(FileNotFoundError):
    """The idx files are not in the source directory; the message says how to get them."""


def source_dir():
    """Where the gzip files are read from: ``$CHIPNET_FASHION_MNIST_DIR`` or Debian's path."""
    return os.environ.get(ENV) or DEFAULT_DIR


def missing_files(directory=None):
    """The expected file names that ``directory`` (default :func:`source_dir`) lacks."""
    directory = directory or source_dir()
    names = [name for pair in FILES.values() for name in pair]
    return [name for name in names if not os.path.isfile(os.path.join(directory, name))]


def check_files(directory=None):
    """Raise :class:`MissingFiles` (one line, with the fix) unless all four files are there."""
    directory = directory or source_dir()
    missing = missing_files(directory)
    if missing:
        raise MissingFiles(
            f"Fashion-MNIST files not found in {directory} (missing {', '.join(missing)}): install them with "
            f"`apt-get install dataset-fashion-mnist` (or `make fashion-data`), or set {ENV} to the directory "
            "that holds the four idx gzip files."
        )
    return directory


def _read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = 3 if magic == _IMAGES_MAGIC else 1
    header = np.frombuffer(raw, dtype=">i4", count=1 + ndim)
    if int(header[0]) != magic:
        raise ValueError(f"{path} is not an idx file of magic {magic}: its header starts with {int(header[0])}.")
    shape = tuple(int(d) for d in header[1:])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {data.size} bytes of data; its header announces shape {shape}.")
    return data.reshape(shape)


def load_arrays(split, directory=None):
    """``(images uint8 (N, 28, 28, 1), labels int64 (N,))`` of ``"train"`` or ``"test"`` from the files."""
    directory = check_files(directory)
    image_file, label_file = FILES[split]
    images = _read_idx(os.path.join(directory, image_file), _IMAGES_MAGIC)
    labels = _read_idx(os.path.join(directory, label_file), _LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels.")
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{image_file} holds images of {images.shape[1:]}, expected (28, 28).")
    if labels.size and not 0 <= labels.min() <= labels.max() < 10:
        raise ValueError(f"{label_file} has labels outside 0..9.")
    return images[..., None], labels


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST (Zalando) from the original idx gzip files in :func:`source_dir`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: the original 60,000 train / 10,000 test split."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Fashion-MNIST: 28x28 grey images of Zalando articles in 10 classes, 60,000 train and 10,000 "
                "test, read from the original idx gzip files (Debian package dataset-fashion-mnist)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the files are already on disk
        directory = check_files()
        return {split: self._generate_examples(directory, split) for split in FILES}

    def _generate_examples(self, directory, split):
        images, labels = load_arrays(split, directory)
        for i in range(len(images)):  # keyed by index in the file, as tfds's fashion_mnist
            yield i, {"image": images[i], "label": int(labels[i])}
