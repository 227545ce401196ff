"""Probe: what a per-channel gate costs after BatchNorm, and what folding it into BN saves.

Not a chipnet_tf benchmark: it evaluates a possible design change. Three ResNet-20
variants with the same layout as ``benchmarks.overhead`` are timed interleaved with
``model.fit``:

  ``plain``:    Conv-BN-ReLU, no gates;
  ``explicit``: every BN followed by ``x * sigmoid(zeta)`` (what ChannelGate does after BN:
                a multiply over the whole N*H*W*C activation, and in the backward pass a
                multiply for d/dx plus a multiply and an N*H*W reduction for d/dmask);
  ``folded``:   the same mask folded into BN's per-channel scale and offset,
                ``BN(x; gamma * m, beta * m)`` == ``m * BN(x; gamma, beta)``, so the forward
                cost is O(C) and d/dmask comes from the gamma/beta gradients that the fused
                BN backward already computes.

Each gate owns its own logits ``zeta`` (no ChipNet controller), so the difference between
``explicit`` and ``folded`` is the cost of where the multiply happens, nothing else.

Usage::

    python -m benchmarks.overhead.gate_fusion_probe [--rounds 5 --steps 20]
"""

import argparse
import statistics
import time

from benchmarks.overhead.variants import compile_model, synthetic_dataset, timed_fit
from chipnet_tf.compat import keras, tf  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)

L = keras.layers


class ExplicitGate(L.Layer):
    """``x * sigmoid(zeta)`` on the channel axis, like ChannelGate after a BN."""

    def build(self, input_shape):
        self.zeta = self.add_weight(name="zeta", shape=(input_shape[-1],), initializer="ones")
        super().build(input_shape)

    def call(self, x):
        return x * tf.cast(tf.sigmoid(self.zeta), x.dtype)


class FoldedGateBN(L.BatchNormalization):
    """BatchNormalization whose scale and offset are multiplied by ``sigmoid(zeta)``."""

    def build(self, input_shape):
        super().build(input_shape)
        self.zeta = self.add_weight(name="zeta", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs, training=None):
        gamma, beta = self.gamma, self.beta
        m = tf.sigmoid(self.zeta)
        # Swap in the gated per-channel vectors for the duration of the (traced) call.
        object.__setattr__(self, "gamma", gamma * m)
        object.__setattr__(self, "beta", beta * m)
        try:
            return super().call(inputs, training=training)
        finally:
            object.__setattr__(self, "gamma", gamma)
            object.__setattr__(self, "beta", beta)


def resnet20(mode, seed=0):
    keras.utils.set_random_seed(seed)

    def bn(x, name):
        if mode == "folded":
            return FoldedGateBN(name=name)(x)
        x = L.BatchNormalization(name=name)(x)
        return ExplicitGate(name=f"{name}_gate")(x) if mode == "explicit" else x

    inputs = keras.Input((32, 32, 3))
    x = L.ReLU()(bn(L.Conv2D(16, 3, padding="same", use_bias=False)(inputs), "stem_bn"))
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            stride = 2 if stage > 1 and block == 1 else 1
            y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
            y = L.ReLU()(bn(y, f"s{stage}b{block}_bn1"))
            y = bn(L.Conv2D(filters, 3, padding="same", use_bias=False)(y), f"s{stage}b{block}_bn2")
            if stride != 1 or x.shape[-1] != filters:
                x = bn(L.Conv2D(filters, 1, strides=stride, use_bias=False)(x), f"s{stage}b{block}_proj_bn")
            x = L.ReLU()(L.Add()([x, y]))
    outputs = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name=f"resnet20_{mode}")


def check_equivalence():
    """The explicit and folded gates compute the same function (same weights)."""
    a, b = resnet20("explicit"), resnet20("folded")
    x = tf.random.stateless_normal((8, 32, 32, 3), seed=(1, 2))
    for layer in a.layers:
        if isinstance(layer, ExplicitGate):
            layer.zeta.assign(tf.random.stateless_normal(layer.zeta.shape, seed=(3, len(layer.name))))
            b.get_layer(layer.name[: -len("_gate")]).zeta.assign(layer.zeta)
    for training in (False, True):
        diff = float(tf.reduce_max(tf.abs(a(x, training=training) - b(x, training=training))))
        print(f"  max |explicit - folded| (training={training}): {diff:.2e}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead.gate_fusion_probe")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=64)
    args = p.parse_args(argv)
    check_equivalence()
    dataset = synthetic_dataset(args.batch_size, 0)
    modes = ["plain", "explicit", "folded"]
    models = {}
    for mode in modes:
        models[mode] = compile_model(resnet20(mode))
        models[mode].fit(dataset, steps_per_epoch=5, epochs=1, verbose=0)
    times = {m: [] for m in modes}
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for mode in modes[r % 3 :] + modes[: r % 3]:
            wall, _, _ = timed_fit(models[mode], list, dataset, args.steps)
            times[mode].extend(wall)
    med = {m: statistics.median(times[m]) for m in modes}
    for m in modes:
        print(f"  {m:<9} {med[m] * 1e3:7.1f} ms/step  {med[m] / med['plain']:.3f}x plain")
    print(f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
