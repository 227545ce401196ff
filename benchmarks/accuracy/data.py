"""Accuracy benchmark, data: the datasets, their models and the transfer subsets."""

import functools

import numpy as np

from chipnet_tf import architectures

# Per dataset: the model's input and how many classes. PreResNet-20 for both (the paper's
# PreResNet family); 28x28 Fashion-MNIST has 12x the activations of 8x8 digits.
DATASETS = {
    "digits": {"input_shape": (8, 8, 1), "classes": 10},
    "fashion_mnist": {"input_shape": (28, 28, 1), "classes": 10},
}
MODEL = {"name": "preresnet", "kwargs": {"depth": 20}}
# Training images per dataset (None: all of train[:90%]). Fashion-MNIST trains on the first
# 12,000 of its 54,000 (188 steps per epoch at batch 64) so that the grid (3 seeds x 10
# cells x 5 methods) runs in about two hours on 2 cores; validation and test stay whole.
TRAIN_IMAGES = {"digits": None, "fashion_mnist": 12_000}
SPLITS = {"train": "train[:90%]", "val": "train[90%:]", "test": "test"}


@functools.lru_cache(maxsize=2)
def load(dataset):
    """Numpy arrays: train (first 90% of the tfds train split), val (last 10%), test."""
    from recipes import data as recipe_data

    # Pixels scaled to [0, 1] by the dataset's maximum (digits: 16).
    out = {key: recipe_data.load_numpy(dataset, split) for key, split in SPLITS.items()}
    if TRAIN_IMAGES[dataset] is not None:
        x, y = out["train"]
        out["train"] = (x[: TRAIN_IMAGES[dataset]], y[: TRAIN_IMAGES[dataset]])
    return out


def task_subset(data, classes):
    """The images of ``classes`` only, relabelled ``0..len(classes)-1``."""
    lookup = {c: i for i, c in enumerate(classes)}
    out = {}
    for key, (x, y) in data.items():
        keep = np.isin(y, classes)
        out[key] = (x[keep], np.asarray([lookup[int(v)] for v in y[keep]], "int64"))
    return out


def model(dataset, num_classes=None):
    spec = DATASETS[dataset]
    return architectures.get(
        MODEL["name"],
        input_shape=spec["input_shape"],
        num_classes=num_classes or spec["classes"],
        **MODEL["kwargs"],
    )


def describe(dataset):
    spec = DATASETS[dataset]
    return f"chipnet_tf.architectures.{MODEL['name']}(**{MODEL['kwargs']}, input_shape={spec['input_shape']})"


def describe_split(dataset):
    """How the dataset's splits are used, for the results' config."""
    train = "train[:90%]" if TRAIN_IMAGES[dataset] is None else f"the first {TRAIN_IMAGES[dataset]:,} of train[:90%]"
    return (
        f"{dataset} (tfds builder recipes/datasets/{dataset}.py): {train} trains, train[90%:] is the held-out "
        "set for model selection (ChipNet's best epoch, slimming's lambda), test is reported"
    )
