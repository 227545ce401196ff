"""The few ``keras.ops`` functions the gate math uses, written with TensorFlow for tf_keras.

The gate math (:mod:`chipnet_tf.search.heaviside`, the controller's penalties, the gate
layers, :meth:`chipnet_tf.budgets.CostSpec.ops_fraction`) is written once against the
``keras.ops`` names and semantics. Keras 3 layers pass ``keras.ops`` itself (any backend);
tf_keras layers pass this module, so the tf_keras path neither imports Keras 3 nor changes
its numbers.

Example:
    >>> from chipnet_tf import tf_ops
    >>> [t.numpy().tolist() for t in tf_ops.split(tf_ops.arange(5), [2])]
    [[0, 1], [2, 3, 4]]
"""

import numpy as np

from chipnet_tf.compat import tf

abs = tf.math.abs  # noqa: A001 - the keras.ops name
cast = tf.cast
clip = tf.clip_by_value
concatenate = tf.concat
exp = tf.exp
maximum = tf.maximum
minimum = tf.minimum
ones = tf.ones
reshape = tf.reshape
rsqrt = tf.math.rsqrt
sigmoid = tf.math.sigmoid
square = tf.square
stack = tf.stack
stop_gradient = tf.stop_gradient
tile = tf.tile
where = tf.where
ones_like = tf.ones_like
zeros_like = tf.zeros_like


def arange(n, dtype="int32"):
    return tf.range(n, dtype=dtype)


def convert_to_tensor(x, dtype=None):
    x = tf.convert_to_tensor(x)
    return x if dtype is None or x.dtype == dtype else tf.cast(x, dtype)


def matmul(a, b):
    return tf.linalg.matvec(a, b) if len(b.shape) == 1 else tf.matmul(a, b)


def mean(x, axis=None, keepdims=False):
    return tf.reduce_mean(x, axis=axis, keepdims=keepdims)


def sum(x, axis=None, keepdims=False):  # noqa: A001 - the keras.ops name
    return tf.reduce_sum(x, axis=axis, keepdims=keepdims)


def take(x, indices, axis=None):
    return tf.gather(x, indices, axis=axis)


def take_along_axis(x, indices, axis):
    return tf.gather(x, indices, batch_dims=1, axis=axis)


def segment_sum(data, segment_ids, num_segments=None, sorted=False):  # noqa: A002 - keras.ops' signature
    return tf.math.segment_sum(data, segment_ids)


def segment_max(data, segment_ids, num_segments=None, sorted=False):  # noqa: A002 - keras.ops' signature
    return tf.math.segment_max(data, segment_ids)


def split(x, indices_or_sections, axis=0):
    """``keras.ops.split``: at the given indices (numpy's convention), not into sizes."""
    if isinstance(indices_or_sections, int):
        return tf.split(x, indices_or_sections, axis=axis)
    bounds = [0, *[int(i) for i in indices_or_sections], int(x.shape[axis])]
    return tf.split(x, list(np.diff(bounds)), axis=axis)


def to_numpy(x):
    """A tensor or variable as a numpy array (a distributed variable too: it has ``numpy()``
    but no ``__array__`` that numpy accepts)."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)
