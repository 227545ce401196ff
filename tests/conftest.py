"""Shared fixtures. One process runs the whole suite: expensive models are built once."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from chipnet_tf.compat import keras, tf  # noqa: E402
from tests.models import residual_cnn  # noqa: E402

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


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """A residual CNN trained on digits (dense baseline), shared by the suite."""
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = residual_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=64, verbose=0)
    return model


# -- the benchmark suite's quick run, in the background ----------------------------------
# `make bench-quick` is a chain of subprocesses (~3.5 min, one busy process at a time: its
# accuracy part runs with --workers 1). The suite runs in one process that keeps about one
# of the two cores busy, so the quick run starts as soon as its tests are collected, runs
# beside the others on the idle core, and its tests go last.
BENCH_QUICK_PREFIX = "tests/test_bench.py::test_bench_quick"


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(session, config, items):
    bench = [item for item in items if item.nodeid.startswith(BENCH_QUICK_PREFIX)]
    if not bench or config.option.collectonly:
        return
    items[:] = [item for item in items if item not in bench] + bench
    from tests import bench_quick

    config.stash[bench_quick.KEY] = bench_quick.start()


def pytest_unconfigure(config):
    from tests import bench_quick

    run = config.stash.get(bench_quick.KEY, None)
    if run is not None:
        run.cleanup()
