"""Q2: grep chipnet_tf/ for tf_keras-specific API that differs in Keras 3.
Usage: python q2_inventory.py /work/main/chipnet_tf > outputs/q2_inventory.md
Plain regexes, so a hit is a place to read, not a proof of breakage (see README)."""

import pathlib
import re
import sys

CATEGORIES = {
    "graph internals (tf_keras Node)": r"_nodes_by_depth|node\.layer\b|keras_inputs|call_args|call_kwargs|_inbound_nodes|"  # noqa: E501
    r"inbound_nodes|_keras_history|_is_graph_network|_flatten_layers|\b_layers\b|node\.outputs|is_input",
    "TF-op layers": r"TFOpLambda|SlicingOpLambda|__operators__|\.symbol\b|layer\.function|\.function\)",
    "add_metric": r"add_metric",
    "add_loss / losses": r"add_loss|\.losses\b",
    "custom_gradient": r"custom_gradient",
    "add_weight": r"add_weight",
    "serialisation": r"register_keras_serializable|custom_object_scope|\bget_config\b|\bfrom_config\b|@register",
    "save/load formats": r"\.save\(|load_model|save_format|saved_model|SavedModel|\.h5\b|\.keras\b\"|save_weights|load_weights",  # noqa: E501
    "shapes / build": r"compute_output_shape|TensorShape|\.as_list\(|input_spec|def build\(",
    "tf math on tensors": r"tf\.(math|nn|split|concat|tile|cast|gather|where|reduce_\w+|square|stop_gradient|debugging|ones|"  # noqa: E501
    r"zeros|exp|convert_to_tensor|stack|reshape|transpose|matmul|range|shape|size|einsum|maximum|minimum|abs|sqrt)\b",
    "eager variable read/assign": r"\.numpy\(\)|\.assign(_add|_sub)?\(",
    "tf.nest": r"tf\.nest",
    "keras.backend": r"keras\.backend|\bK\.",
    "clone_model": r"clone_model",
    "dtype policy / autocast": r"_autocast|mixed_precision|dtype_policy|compute_dtype|variable_dtype",
    "BN attrs gone in Keras 3": r"renorm|virtual_batch_size|\bfused\b|adjustment",
    "private keras modules": r"keras\.src|tf_keras\.src|tf_keras\.",
    "tf.data / tf.summary / tf.lite / tf.function": r"tf\.data|tf\.summary|tf\.lite|TFLiteConverter|tf\.function|GradientTape|tf\.distribute",  # noqa: E501
    "keras.Input / Model construction": r"keras\.Input\(|keras\.Model\(|keras\.Sequential",
}
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/work/main/chipnet_tf")
totals = {c: 0 for c in CATEGORIES}
print("| file | lines | " + " | ".join(f"c{i}" for i in range(len(CATEGORIES))) + " |")
print("|---|---|" + "---|" * len(CATEGORIES))
detail = []
for path in sorted(root.rglob("*.py")):
    lines = path.read_text().splitlines()
    hits = {}
    for c, rx in CATEGORIES.items():
        pat = re.compile(rx)
        hits[c] = [i + 1 for i, line in enumerate(lines) if pat.search(line) and not line.lstrip().startswith("#")]
        totals[c] += len(hits[c])
    rel = path.relative_to(root.parent)
    print(f"| {rel} | {len(lines)} | " + " | ".join(str(len(hits[c])) or "" for c in CATEGORIES) + " |")
    detail.append((rel, hits))
print("| **total** | | " + " | ".join(str(totals[c]) for c in CATEGORIES) + " |\n")
print("Columns: " + "; ".join(f"c{i} = {c}" for i, c in enumerate(CATEGORIES)) + "\n")
print("## Line references\n")
for rel, hits in detail:
    parts = [f"{c}: {','.join(map(str, ls))}" for c, ls in hits.items() if ls]
    if parts:
        print(f"- **{rel}** - " + "; ".join(parts))
