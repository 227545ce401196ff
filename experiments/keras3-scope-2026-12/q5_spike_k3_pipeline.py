"""Q5 spike (throw-away, not library code): the milestone's mechanics on a Keras 3 functional
CNN with only keras / keras.ops: walk the graph, rebuild it with gates and a controller,
fit (add_loss + a logged budget), read hard masks, strip to a smaller plain model, and
check the stripped model computes what the hard-gated model computes.

Channel groups are hand-written here (bn_a and bn_b are tied by an add); the real library
would get them from chipnet_tf.analysis.groups over a Keras 3 FlatGraph.
Runs on KERAS_BACKEND=tensorflow and jax (JAX: see the two backend notes in the code).
"""

import keras
import numpy as np
from keras import ops

BACKEND = keras.backend.backend()
rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)

# -- a dense Keras 3 CNN with layers and keras.ops calls -------------------------------
inp = keras.Input((8, 8, 3), name="img")
h = keras.layers.ReLU(name="relu_a")(
    keras.layers.BatchNormalization(name="bn_a")(
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv_a")(inp)
    )
)
b = keras.layers.BatchNormalization(name="bn_b")(keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(h))
h = ops.relu(ops.add(h, b))  # two Operation nodes
h = keras.layers.ReLU(name="relu_c")(
    keras.layers.BatchNormalization(name="bn_c")(keras.layers.Conv2D(16, 3, padding="same", name="conv_c")(h))
)
dense = keras.Model(inp, keras.layers.Dense(10, name="fc")(keras.layers.GlobalAveragePooling2D(name="gap")(h)))
GROUPS = {"g1": 8, "g2": 16}
GATE_AFTER = {"bn_a": "g1", "bn_b": "g1", "bn_c": "g2"}
PRODUCERS = {"conv_a": "g1", "conv_b": "g1", "conv_c": "g2"}


def walk(model):
    """(node, op) in call order: the Keras 3 counterpart of flat_graph.flatten's loop."""
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if not node.is_input:
                yield node, node.operation


# -- the controller and gate (what search/layers/* would become) -----------------------
class Controller(keras.layers.Layer):
    def __init__(self, groups, budget, **kw):
        super().__init__(**kw)
        self.groups, self.budget = dict(groups), budget
        self.sizes = list(self.groups.values())
        # Backend note 1: a Metric tracked by the layer and updated in call() works in fit on
        # TensorFlow; on JAX its variables are not in the train step's state (q4_metrics.py).
        self.budget_metric = keras.metrics.Mean(name="budget") if BACKEND != "jax" else None

    def build(self, _):
        n = sum(self.sizes)
        self.zeta = self.add_weight(name="zeta", shape=(n,), initializer=keras.initializers.RandomUniform(0.0, 0.01))
        self.beta = self.add_weight(name="beta", shape=(), initializer="ones", trainable=False)
        self.use_hard = self.add_weight(name="use_hard", shape=(), initializer="zeros", trainable=False)
        self.hard_mask = self.add_weight(name="hard_mask", shape=(n,), initializer="ones", trainable=False)

    def soft(self):
        beta = ops.stop_gradient(ops.convert_to_tensor(self.beta))
        z_i = ops.sigmoid(beta * self.zeta)
        gamma = 2.0
        z = 1.0 - ops.exp(-gamma * z_i) + z_i * np.exp(-gamma)
        dz = (gamma * ops.exp(-gamma * z_i) + np.exp(-gamma)) * beta * z_i * ops.sigmoid(-beta * self.zeta)
        lin = ops.stop_gradient(dz) * self.zeta  # Q3 option B: gradient exactly dz
        return ops.stop_gradient(z) + (lin - ops.stop_gradient(lin))

    def fraction(self, z):
        return ops.mean(ops.sigmoid(20.0 * (z - 0.5)))  # channels budget, smooth rounding

    def call(self, x):
        z = self.soft()
        frac = self.fraction(z)
        soft = 1.0 - self.use_hard
        self.add_loss(soft * 30.0 * ops.square(frac - self.budget))
        if self.budget_metric is not None:
            self.budget_metric.update_state(frac)
        hard_z = ops.cast(z > 0.5, z.dtype)
        z = z + ops.stop_gradient(hard_z - z)  # hard forward, straight-through gradient
        mask = soft * z + self.use_hard * self.hard_mask
        return ops.split(mask, np.cumsum(self.sizes)[:-1].tolist())

    def compute_output_spec(self, x):
        return [keras.KerasTensor((s,)) for s in self.sizes]


class Gate(keras.layers.Layer):
    def call(self, inputs):
        x, mask = inputs
        return x * ops.cast(mask, x.dtype)

    def compute_output_shape(self, s):
        return s[0]


def clone(layer):
    new = layer.__class__.from_config(layer.get_config())
    return new


# -- prune: rebuild with gates ---------------------------------------------------------
def prune(model, budget):
    x = keras.Input(model.inputs[0].shape[1:], name="img")
    tensors = {id(model.inputs[0]): x}
    ctl = Controller(GROUPS, budget, name="controller")
    masks = dict(zip(GROUPS, ctl(x)))
    for node, op in walk(model):
        args, kwargs = node.arguments.fill_in(tensors)  # tf_keras: node.call_args + resolve_args
        if isinstance(op, keras.layers.Layer):
            new = clone(op)
            out = new(*args, **kwargs)
            new.set_weights(op.get_weights())
        else:
            out = op(*args, **kwargs)  # a keras.ops Operation is stateless: call it again
        if op.name in GATE_AFTER:
            out = Gate(name=f"{op.name}_gate")([out, masks[GATE_AFTER[op.name]]])
        tensors[id(node.outputs[0])] = out
    return keras.Model(x, tensors[id(model.outputs[0])], name="pruned"), ctl


class UpdateStep(keras.callbacks.Callback):
    """UpdatePruningStep's variable writes between steps. Backend note 2: on JAX the model's
    variables live in the trainer's state during an epoch; read/assign them only after
    model.jax_state_sync() (q4b_callback_assign.py), and log the budget at epoch end."""

    def __init__(self, ctl):
        super().__init__()
        self.ctl, self.step = ctl, 0

    def on_train_batch_begin(self, batch, logs=None):
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        self.step += 1
        self.ctl.beta.assign(1.0 + 0.05 * self.step)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.ctl.budget_metric is None:
            logs["budget"] = float(ops.convert_to_numpy(self.ctl.fraction(self.ctl.soft())))


def get_masks(ctl):
    z = ops.convert_to_numpy(ctl.soft())
    out, start = {}, 0
    for g, n in GROUPS.items():
        keep = z[start : start + n] > 0.5
        keep[np.argmax(z[start : start + n])] = True
        out[g], start = keep, start + n
    return out


def strip(model, masks):
    """A plain smaller model: slice producers' outputs, BN params and consumers' inputs."""
    x = keras.Input(model.inputs[0].shape[1:], name="img")
    tensors, keeps = {id(model.inputs[0]): x}, {id(model.inputs[0]): np.ones(3, bool)}
    for node, op in walk(model):
        in_keep = keeps[id(node.input_tensors[0])]
        args, kwargs = node.arguments.fill_in(tensors)
        if not isinstance(op, keras.layers.Layer):
            out, keep = op(*args, **kwargs), in_keep
        else:
            cfg, w = op.get_config(), op.get_weights()
            keep = in_keep
            if op.name in PRODUCERS:
                keep = masks[PRODUCERS[op.name]]
                cfg["filters"] = int(keep.sum())
                w = [w[0][:, :, in_keep][..., keep]] + [v[keep] for v in w[1:]]
            elif isinstance(op, keras.layers.BatchNormalization):
                w = [v[in_keep] for v in w]
            elif isinstance(op, keras.layers.Dense):
                w = [w[0][in_keep]] + w[1:]
                keep = np.ones(op.units, bool)
            new = op.__class__.from_config(cfg)
            out = new(*args, **kwargs)
            new.set_weights(w)
        tensors[id(node.outputs[0])], keeps[id(node.outputs[0])] = out, keep
    return keras.Model(x, tensors[id(model.outputs[0])], name="stripped")


pruned, ctl = prune(dense, budget=0.5)
data = rng.normal(size=(128, 8, 8, 3)).astype("float32")
labels = rng.integers(0, 10, size=(128,))
x0 = data[:8]
same = np.allclose(ops.convert_to_numpy(dense(x0)), ops.convert_to_numpy(pruned(x0)), atol=1e-5)
print(f"backend={BACKEND}; dense ops: {[type(o).__name__ for o in dense.operations]}")
print(
    f"pruned model: {len(pruned.operations)} ops, gates {[o.name for o in pruned.operations if isinstance(o, Gate)]}; "
    f"equals dense before training (all gates open): {same}"
)
pruned.compile(keras.optimizers.Adam(0.03), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
hist = pruned.fit(data, labels, batch_size=32, epochs=5, verbose=0, callbacks=[UpdateStep(ctl)])
print("history:", {k: [round(float(v), 3) for v in vs] for k, vs in hist.history.items()})
masks = get_masks(ctl)
print("kept channels:", {g: f"{int(m.sum())}/{m.size}" for g, m in masks.items()})
ctl.hard_mask.assign(np.concatenate([masks[g] for g in GROUPS]).astype("float32"))
ctl.use_hard.assign(1.0)
# strip the *trained* weights: a copy of the dense architecture takes the pruned model's
# weights by layer name (the library walks the pruned model's dense view instead)
trained_dense = keras.models.clone_model(dense)
for op in pruned.operations:
    if isinstance(op, keras.layers.Layer) and op.weights and not isinstance(op, (Controller, Gate)):
        trained_dense.get_layer(op.name).set_weights(op.get_weights())
small = strip(trained_dense, masks)
y_pruned = ops.convert_to_numpy(pruned(x0, training=False))
y_small = ops.convert_to_numpy(small(x0, training=False))
print(
    f"stripped params {small.count_params()} vs dense {dense.count_params()}; "
    f"max |stripped - hard-gated pruned| = {np.max(np.abs(y_small - y_pruned)):.2e}"
)
