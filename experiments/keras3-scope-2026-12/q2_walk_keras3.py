"""Q2: walk a Keras 3 functional graph (layers + keras.ops calls) like flat_graph.flatten does.
Run WITHOUT TF_USE_LEGACY_KERAS and without importing chipnet_tf. Any KERAS_BACKEND."""

import keras
from keras import ops

x = inp = keras.Input((8, 8, 3), name="img")
a = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(x)
b = keras.layers.Conv2D(4, 1, name="conv_b")(x)
s = ops.add(a, b)  # an Operation node, not a Layer
c = ops.concatenate([s, ops.relu(b) * 2.0], axis=-1)  # concat, relu, __mul__ by a constant
sl = c[..., :6]  # GetItem op
r = ops.reshape(keras.layers.GlobalAveragePooling2D(name="gap")(sl), (-1, 3, 2))
model = keras.Model(inp, keras.layers.Flatten(name="flat")(r), name="walk_demo")

# --- the 20-line walk: depth order = call order, as flat_graph.walk over _nodes_by_depth
for depth in sorted(model._nodes_by_depth, reverse=True):
    for node in model._nodes_by_depth[depth]:
        if node.is_input:
            continue
        op = node.operation  # tf_keras: node.layer
        kind = "Layer" if isinstance(op, keras.layers.Layer) else "Operation"
        ins = [tuple(t.shape) for t in node.input_tensors]  # tf_keras: node.keras_inputs
        outs = [tuple(t.shape) for t in node.output_tensors]  # tf_keras: node.outputs
        consts = [
            a
            for a in keras.tree.flatten(node.arguments.args) + list(node.arguments.kwargs.values())
            if not isinstance(a, keras.KerasTensor)
        ]  # tf_keras: node.call_args/call_kwargs
        parents = [p.operation.name for p in node.parent_nodes]
        print(f"{kind:9s} {type(op).__name__:22s} {op.name:24s} in={ins} out={outs} consts={consts} parents={parents}")

print("\nmodel.operations:", [type(o).__name__ for o in model.operations])
print("model.layers    :", [type(o).__name__ for o in model.layers])
print(
    "op._inbound_nodes[0].arguments.args of 'add':",
    [type(o).__name__ for o in model.operations if type(o).__name__ == "Add"],
    next(o for o in model.operations if type(o).__name__ == "Add")._inbound_nodes[0].arguments.args,
)
print("tensor history:", model.outputs[0]._keras_history)
print(
    "has tf_keras attrs? node.layer:",
    hasattr(node, "layer"),
    "node.call_args:",
    hasattr(node, "call_args"),
    "node.keras_inputs:",
    hasattr(node, "keras_inputs"),
    "model._layers:",
    hasattr(model, "_layers"),
)
