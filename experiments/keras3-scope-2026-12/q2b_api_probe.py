"""Q2b: concrete Keras 3 (TF backend) answers for the API points the inventory flags.
Run WITHOUT TF_USE_LEGACY_KERAS, chipnet_tf not imported. Each line: check -> result."""

import inspect
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from keras import ops


def check(label, fn):
    try:
        print(f"{label:60s} -> {fn()}")
    except Exception as e:  # noqa: BLE001
        print(f"{label:60s} -> {type(e).__name__}: {str(e).splitlines()[0][:150]}")


print(
    "keras",
    keras.__version__,
    "backend",
    keras.backend.backend(),
    "tf.keras is keras 3:",
    tf.keras.Model is keras.Model,
)
BUILTIN = (
    "Activation ActivityRegularization Add AlphaDropout Average AveragePooling2D BatchNormalization Concatenate "
    "Conv1D Conv1DTranspose Conv2D Conv2DTranspose Conv3D Conv3DTranspose Cropping2D Dense DepthwiseConv1D "
    "DepthwiseConv2D Dropout ELU Flatten GaussianDropout GaussianNoise GlobalAveragePooling2D GlobalMaxPooling2D "
    "LayerNormalization LeakyReLU MaxPooling2D Maximum Minimum Multiply PReLU ReLU Rescaling Reshape "
    "SeparableConv1D SeparableConv2D SpatialDropout2D Subtract ThresholdedReLU UpSampling2D ZeroPadding2D"
).split()
check(
    "registry/builtin.py layer classes missing in keras.layers",
    lambda: [n for n in BUILTIN if not hasattr(keras.layers, n)],
)
check("Layer().add_metric(1.0, name='m')", lambda: keras.layers.Layer().add_metric(1.0, name="m"))
check("Layer.add_loss", lambda: hasattr(keras.layers.Layer, "add_loss"))
check("Layer.add_weight signature", lambda: str(inspect.signature(keras.layers.Layer.add_weight)))
check(
    "keras.ops.custom_gradient / segment_sum / segment_max",
    lambda: [hasattr(ops, n) for n in ("custom_gradient", "segment_sum", "segment_max")],
)
bn = keras.layers.BatchNormalization()
bn.build((None, 4, 4, 8))
check(
    "BN attrs renorm/virtual_batch_size/synchronized/fused",
    lambda: {a: getattr(bn, a, "MISSING") for a in ("renorm", "virtual_batch_size", "synchronized", "fused")},
)
check("BN.axis (tf_keras: list [3]); list(bn.axis)", lambda: (bn.axis, list(bn.axis)))
check(
    "BN.gamma is a property? (GatedBN overrides gamma/beta)", lambda: type(inspect.getattr_static(bn, "gamma")).__name__
)
check("BN.call reads self.gamma/self.beta", lambda: "self.gamma" in inspect.getsource(type(bn).call))
check("LeakyReLU arg name", lambda: list(inspect.signature(keras.layers.LeakyReLU.__init__).parameters)[1:3])
check(
    "Layer._autocast attr / autocast ctor arg",
    lambda: (
        hasattr(keras.layers.Dense(2), "_autocast"),
        "autocast" in inspect.signature(keras.layers.Layer.__init__).parameters,
    ),
)
check("keras.mixed_precision.Policy", lambda: keras.mixed_precision.Policy)
x = keras.Input((4, 4, 3), name="img")
check("KerasTensor._keras_history fields", lambda: x._keras_history._fields)
check("tf.nn.relu(KerasTensor)", lambda: tf.nn.relu(x))
check(
    "KerasTensor + 3 / [..., :2] -> op types",
    lambda: [type(t._keras_history.operation).__name__ for t in (x + 3, x[..., :2])],
)
check("tf.nest.flatten([kt, kt]) works", lambda: len(tf.nest.flatten([x, x])))


class TfOpsLayer(keras.layers.Layer):  # like ChipNetController/ChannelGate: raw tf ops in call
    def build(self, s):
        self.zeta = self.add_weight(name="zeta", shape=(6,), initializer="ones")

    def call(self, x):
        seg = tf.math.segment_sum(self.zeta, np.array([0, 0, 0, 1, 1, 1]))
        return tf.split(tf.math.sigmoid(self.zeta), [3, 3]) + [seg]

    def compute_output_shape(self, s):
        return [tf.TensorShape([3]), tf.TensorShape([3]), tf.TensorShape([2])]


check(
    "layer with tf.split/segment_sum in call, Keras 3 functional (TF)",
    lambda: [tuple(t.shape) for t in TfOpsLayer()(x)],
)
m = keras.Model(x, keras.layers.Conv2D(2, 1)(x))
check(
    "Sequential/functional flags: _is_graph_network / Functional",
    lambda: (getattr(m, "_is_graph_network", "MISSING"), type(m).__mro__[1].__name__),
)
seq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
check("Sequential: _functional attr (graph to walk)", lambda: type(getattr(seq, "_functional", None)).__name__)
check(
    "model._nodes_by_depth / node.operation / node.arguments",
    lambda: (
        hasattr(m, "_nodes_by_depth"),
        hasattr(m._nodes_by_depth[0][0], "operation"),
        hasattr(m._nodes_by_depth[0][0], "arguments"),
    ),
)
d = tempfile.mkdtemp()
check("model.save('m.keras')", lambda: (m.save(os.path.join(d, "m.keras")), "ok")[1])
check("model.save('m.h5') (legacy)", lambda: (m.save(os.path.join(d, "m.h5")), "ok")[1])
check("model.save(dir) (SavedModel in tf_keras)", lambda: m.save(os.path.join(d, "sm")))
check(
    "model.export(dir) (SavedModel for serving/TFLite)",
    lambda: (m.export(os.path.join(d, "exp"), verbose=False), "ok")[1],
)
check(
    "tf.lite.TFLiteConverter.from_keras_model(keras3 model)",
    lambda: len(tf.lite.TFLiteConverter.from_keras_model(m).convert()),
)
check(
    "clone_model / register_keras_serializable / custom_object_scope / Wrapper",
    lambda: [
        hasattr(keras.models, "clone_model"),
        hasattr(keras.saving, "register_keras_serializable"),
        hasattr(keras.utils, "custom_object_scope"),
        hasattr(keras.layers, "Wrapper"),
    ],
)
check(
    "keras.backend.* in Keras 3 (e.g. K.get_value, K.set_value)",
    lambda: [hasattr(keras.backend, n) for n in ("get_value", "set_value", "int_shape")],
)
check(
    "variable.numpy() / assign (TF backend)",
    lambda: (lambda v: (v.assign(2.0), float(v.numpy()))[1])(keras.Variable(1.0)),
)


class GatedBNLike(keras.layers.BatchNormalization):  # chipnet's GatedBatchNormalization trick
    """gamma/beta as properties so call() sees gamma*mask; build() assigns the variables."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self._override = None

    @property
    def gamma(self):
        return self._override if self._override is not None else self.__dict__.get("_g")

    @gamma.setter
    def gamma(self, v):
        object.__setattr__(self, "_g", v)

    def build(self, input_shape):
        super().build(input_shape[0])
        self.input_spec = None  # as chipnet's GatedBatchNormalization.build does

    def call(self, inputs, training=None):
        x, mask = inputs
        self._override = self.__dict__["_g"] * mask
        try:
            return super().call(x, training=training)
        finally:
            self._override = None

    def compute_output_shape(self, s):
        return s[0]


def gated_bn():
    layer = GatedBNLike()
    xi, mi = keras.Input((4, 4, 2)), keras.Input((2,), batch_size=None)
    y = layer([xi, mi[0]])
    model = keras.Model([xi, mi], y)
    data = np.random.default_rng(0).normal(size=(3, 4, 4, 2)).astype("float32")
    out = model([data, np.array([[0.0, 1.0]] * 3, "float32")], training=False)
    return (
        f"weights tracked: {[w.path for w in layer.weights]}; channel0 zeroed: "
        f"{bool(np.allclose(np.asarray(out)[..., 0], np.asarray(layer.beta)[0]))}"
    )


check("GatedBatchNormalization-style gamma property (Keras 3 BN)", gated_bn)
