"""Shared fixtures. One process runs the whole suite: expensive models are built once."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from chipnet_tf.compat import keras, tf  # noqa: E402

# Two logical CPUs so that MirroredStrategy runs with two replicas; this must happen
# before TensorFlow initialises its devices, hence at import of the conftest.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # devices already initialised (e.g. under Bazel's single-module runs)
    pass


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled digits as (x_train, y_train, x_test, y_test), 8x8x1 in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images[..., None] / 16.0).astype("float32")
    y = data.target.astype("int64")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def residual_cnn(width=32, name="residual_cnn"):
    """Small residual CNN for 8x8x1 digits: stem, two residual blocks, GAP, classifier."""
    L = keras.layers

    def block(x, f):
        y = L.Conv2D(f, 3, padding="same", use_bias=False)(x)
        y = L.BatchNormalization(momentum=0.9)(y)
        y = L.ReLU()(y)
        y = L.Conv2D(f, 3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization(momentum=0.9)(y)
        return L.ReLU()(L.Add()([x, y]))

    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(width, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization(momentum=0.9)(h)
    h = L.ReLU()(h)
    h = block(h, width)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(2 * width, 3, padding="same")(h)
    h = L.ReLU()(h)
    h = block(h, 2 * width)
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(10, activation="softmax")(h)
    return keras.Model(inp, out, name=name)


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """A residual CNN trained on digits (dense baseline), shared by the suite."""
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = residual_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=64, verbose=0)
    return model


def pruning_optimizer(lr=1e-2):
    """AdamW as in the paper, no weight decay on the mask logits."""
    opt = keras.optimizers.AdamW(lr, weight_decay=1e-3)
    opt.exclude_from_weight_decay(var_names=["zeta"])
    return opt
