"""`make demo`: ChipNet on the bundled digits data, fully offline.

Trains a small residual CNN on scikit-learn's digits, prunes it with ChipNet to 25% of its
FLOPs using plain compile/fit, fixes the budget-aware hard masks, fine-tunes, and prints the
budget report and a before/after table.
"""

import argparse
import time

import numpy as np

import chipnet_tf
from chipnet_tf.compat import keras


def load_digits(seed=0):
    from sklearn.datasets import load_digits as sk_digits

    data = sk_digits()
    x = (data.images[..., None] / 16.0).astype("float32")
    y = data.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def residual_cnn(width=32):
    L = keras.layers

    def block(x, f):
        y = L.Conv2D(f, 3, padding="same", use_bias=False)(x)
        y = L.ReLU()(L.BatchNormalization(momentum=0.9)(y))
        y = L.Conv2D(f, 3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization(momentum=0.9)(y)
        return L.ReLU()(L.Add()([x, y]))

    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(width, 3, padding="same", use_bias=False)(inp)
    h = L.ReLU()(L.BatchNormalization(momentum=0.9)(h))
    h = block(h, width)
    h = L.MaxPooling2D()(h)
    h = L.ReLU()(L.BatchNormalization(momentum=0.9)(L.Conv2D(2 * width, 3, padding="same", use_bias=False)(h)))
    h = block(h, 2 * width)
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(h))
    return keras.Model(inp, out, name="digits_resnet")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--budget_type", default="flops", choices=chipnet_tf.BUDGET_TYPES)
    parser.add_argument("--prune_epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8, help="dense training and fine-tuning epochs")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    x, y, xt, yt = load_digits()
    start = time.time()
    print(f"== 1/4 dense training on digits ({len(x)} train / {len(xt)} test images)")
    dense = residual_cnn()
    dense.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    dense.fit(x, y, batch_size=32, epochs=args.epochs, verbose=2)
    dense_acc = dense.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]

    print(f"== 2/4 ChipNet pruning to {args.budget:g} of {args.budget_type} ({args.prune_epochs} epochs)")
    pruned = chipnet_tf.prune_low_budget(dense, budget=args.budget, budget_type=args.budget_type)
    opt = keras.optimizers.AdamW(1e-2, weight_decay=1e-3)
    opt.exclude_from_weight_decay(var_names=["zeta"])  # the paper: no decay on mask logits
    pruned.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=32, epochs=args.prune_epochs, verbose=2, callbacks=[chipnet_tf.UpdatePruningStep()])

    print("== 3/4 hard masks that meet the budget, fine-tuning with frozen masks")
    masks = chipnet_tf.get_masks(pruned)
    chipnet_tf.apply_masks(pruned, masks)
    pruned.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=32, epochs=args.epochs, verbose=2, callbacks=[chipnet_tf.UpdatePruningStep()])
    pruned_acc = pruned.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]

    print("== 4/4 budget report (hard masks)")
    report = chipnet_tf.budget_report(pruned)
    print(report)
    print()
    rows = [("test accuracy", f"{dense_acc:.4f}", f"{pruned_acc:.4f}")]
    for t in chipnet_tf.BUDGET_TYPES:
        total = report.totals[t]
        rows.append((t, f"{total['dense']:,.0f}", f"{total['kept']:,.0f} ({total['fraction']:.1%})"))
    print(f"{'':<14}  {'dense':>14}  {'ChipNet':>22}")
    for name, a, b in rows:
        print(f"{name:<14}  {a:>14}  {b:>22}")
    print(f"\n(params counts every weight of the model; FLOPs are multiply-accumulates. {time.time() - start:.0f} s)")
    print("Stripping into a physically smaller model and TFLite export come with chipnet_tf.strip_pruning (planned).")


if __name__ == "__main__":
    main()
