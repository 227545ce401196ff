"""Q1: today's behaviour with a Keras 3 model, in both import orders.

Usage: python q1_today.py chipnet_first|keras_first|tf_keras_touched_first
Run each order in its own process (TF_USE_LEGACY_KERAS is read when TensorFlow loads).
"""

import os
import sys
import traceback

order = sys.argv[1]
print("order:", order, "| TF_USE_LEGACY_KERAS before imports:", os.environ.get("TF_USE_LEGACY_KERAS"))

if order == "chipnet_first":
    import keras
    import tensorflow as tf

    import chipnet_tf
elif order == "keras_first":
    import keras
    import tensorflow as tf

    import chipnet_tf
else:  # tf_keras_touched_first: tf.keras resolved before chipnet_tf sets the variable
    import tensorflow as tf

    _ = tf.keras.Model
    import keras

    import chipnet_tf

print("TF_USE_LEGACY_KERAS after imports:", os.environ.get("TF_USE_LEGACY_KERAS"))
print("keras:", keras.__name__, keras.__version__, keras.__file__.split("site-packages/")[-1])
print(
    "tf.keras:", tf.keras.__name__, getattr(tf.keras, "__version__", "?"), "-> Model class:", tf.keras.Model.__module__
)
print("keras.Model is tf.keras.Model:", keras.Model is tf.keras.Model)


def build(k):
    x = inp = k.Input((16, 16, 3))
    x = k.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.ReLU()(x)
    y = k.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    y = k.layers.BatchNormalization()(y)
    x = k.layers.ReLU()(k.layers.Add()([x, y]))
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inp, k.layers.Dense(10)(x))


for label, k in [("import keras", keras), ("tf.keras", tf.keras)]:
    model = build(k)
    print(
        f"\n[{label}] model class: {type(model).__module__}.{type(model).__name__}",
        "| is_keras3_object:",
        chipnet_tf.compat.is_keras3_object(model),
    )
    try:
        pruned = chipnet_tf.prune_low_budget(model, 0.5)
        print("  prune_low_budget OK:", type(pruned).__name__, len(pruned.layers), "layers")
    except Exception as e:  # noqa: BLE001
        print("  ->", type(e).__name__ + ":", e)
        tb = traceback.extract_tb(e.__traceback__)[-1]
        print("  raised at", tb.filename.split("/work/main/")[-1], "line", tb.lineno)
    if chipnet_tf.compat.is_keras3_object(model):
        for fn in ("analyze", "count_flops", "get_masks", "strip_pruning"):
            try:
                getattr(chipnet_tf, fn)(model)
                print(f"  {fn}: OK")
            except Exception as e:  # noqa: BLE001
                print(f"  {fn} -> {type(e).__name__}: {str(e)[:110]}")
