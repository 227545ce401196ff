"""What importing chipnet_tf does to ``import keras`` and ``tf.keras``, in both orders.

``import keras`` is always Keras 3 and chipnet_tf never changes it. ``tf.keras`` is tf_keras
after importing chipnet_tf (it sets ``TF_USE_LEGACY_KERAS=1`` unless the user set it, which
tfmot and ``tf.keras``-built tf_keras models need); a user who sets
``TF_USE_LEGACY_KERAS=0`` keeps ``tf.keras`` as Keras 3, and chipnet_tf prunes the models
built with it through its Keras 3 path.
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, os, sys
order = sys.argv[1]
if order == "keras_first":
    import keras
    import chipnet_tf
else:
    import chipnet_tf
    import keras
import numpy as np
import tensorflow as tf
from chipnet_tf.compat import is_keras3_object
x = keras.Input((6, 6, 3))
y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(x)))
pruned = chipnet_tf.prune_low_budget(keras.Model(x, y), 0.5, "channels")
t = tf.keras.Input((6, 6, 3))
u = tf.keras.layers.Dense(2)(tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(8, 3)(t)))
tf_pruned = chipnet_tf.prune_low_budget(tf.keras.Model(t, u), 0.5, "channels")
print(json.dumps({
    "keras": keras.__version__,
    "tf_keras_is_keras3": is_keras3_object(tf.keras.layers.Dense(1)),
    "pruned_is_keras3": is_keras3_object(pruned),
    "tf_pruned_is_keras3": is_keras3_object(tf_pruned),
    "env": os.environ.get("TF_USE_LEGACY_KERAS"),
}))
"""


def _run(order, legacy=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if legacy is not None:
        env["TF_USE_LEGACY_KERAS"] = legacy
    out = subprocess.run([sys.executable, "-c", SCRIPT, order], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order", ["keras_first", "chipnet_first"])
def test_import_keras_stays_keras3_and_tf_keras_becomes_tf_keras(order):
    got = _run(order)
    assert got["keras"].startswith("3.")
    assert got["pruned_is_keras3"] is True  # a Keras 3 model gets Keras 3 gates
    assert got["env"] == "1" and got["tf_keras_is_keras3"] is False and got["tf_pruned_is_keras3"] is False


def test_the_users_choice_of_tf_keras_is_kept():
    got = _run("chipnet_first", legacy="0")
    assert got["env"] == "0"
    assert got["tf_keras_is_keras3"] is True and got["tf_pruned_is_keras3"] is True and got["pruned_is_keras3"] is True
