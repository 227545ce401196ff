"""The numerical tests of the probe (:mod:`chipnet_tf.registry.probe`) on a function ``fn``
from a numpy batch to an output batch: does each output channel move with its own input
channel only, at a cut-down and at the real shape; does ``fn`` give the same on a subset
of the channels; is it finite, with a finite gradient, at zero (a pruned channel).

Each test returns None when it passes, else the reason (a short phrase for warnings and
reports).
"""

import numpy as np

from chipnet_tf.compat import tf
from chipnet_tf.registry.vocabulary import Kind

RTOL = 1e-5
_MAX_ELEMENTS = 1 << 22  # probe batches are chunked to about 16 MB of float32
MIXES = "mixes channels under the probe"
MIXES_AT_SCALE = "mixes channels at its real input shape (not on 4x4 positions)"
NOT_RUN = "does not run on the probe's inputs, or changes the channel count"
NOT_FINITE = "is not finite on some inputs (a pruned channel could give inf or NaN)"
NOT_FINITE_AT_ZERO = "is not finite, or has no finite gradient, at zero (a pruned channel)"
NOT_ON_SUBSETS = "differs on a subset of its channels (per-channel constants, or the channel count)"


def run(fn, x):
    return np.asarray(fn(x))


def small_shape(fn, shape):
    """``shape`` with each spatial size cut to at most 4 when ``fn`` accepts that (the
    probe's cost grows with channels x positions x channels); else ``shape``."""
    small = tuple(min(int(d), 4) for d in shape[:-1]) + (shape[-1],)
    if small == shape:
        return shape
    try:
        out = run(fn, np.zeros((1, *small), "float32"))
    except Exception:  # noqa: BLE001 - e.g. per-position weights: probe at the real shape
        return shape
    return small if out.ndim == len(shape) + 1 and out.shape[-1] == shape[-1] else shape


def probe_inputs(shape, rng):
    """Five random inputs of ``shape``: normal, x100, x0.01, positive, negative."""
    base = rng.normal(size=(5, *shape))
    scales = np.array([1.0, 100.0, 0.01, 1.0, 1.0]).reshape(-1, *[1] * len(shape))
    x = base * scales
    x[3] = np.abs(x[3])
    x[4] = -np.abs(x[4])
    return x.astype("float32")


def _reference(fn, shape, rng):
    """``((x, fn(x)), None)`` on the probe inputs, or ``(None, reason)``."""
    x = probe_inputs(shape, rng)
    try:
        y = run(fn, x)
    except Exception:  # noqa: BLE001 - a layer the probe cannot run stays opaque
        return None, NOT_RUN
    if y.shape[:1] != x.shape[:1] or y.shape[-1] != shape[-1]:
        return None, NOT_RUN
    return ((x, y), None) if np.all(np.isfinite(y)) else (None, NOT_FINITE)


def _moved(fn, x, y, perturbed, rng):
    """Perturbs the channels ``perturbed[i]`` (a boolean row over channels) in copy ``i`` of
    the probe inputs. Returns ``[i, c]``: whether output channel ``c`` moved in copy ``i``,
    or None when an output is not finite."""
    channels = x.shape[-1]
    xp = np.repeat(x[None], len(perturbed), axis=0)
    noise = rng.normal(size=xp.shape).astype("float32") * (np.abs(xp) + 1.0)
    xp += noise * perturbed.reshape(len(perturbed), *[1] * (x.ndim - 1), channels).astype("float32")
    yp = run(fn, xp.reshape(-1, *x.shape[1:])).reshape(len(perturbed), *y.shape)
    if not np.all(np.isfinite(yp)):
        return None
    moved = np.abs(yp - y[None]).reshape(len(perturbed), -1, channels).max(axis=1)
    tol = RTOL * (np.abs(y).reshape(-1, channels).max(axis=0) + 1.0)
    return moved > tol[None, :]


def _only_perturbed_move(fn, shape, rng, sets, reason):
    """None when, for every channel set in ``sets`` (boolean rows), only its channels move."""
    ref, why = _reference(fn, shape, rng)
    if ref is None:
        return why
    x, y = ref
    per_chunk = max(1, _MAX_ELEMENTS // x.size)
    for start in range(0, len(sets), per_chunk):
        chunk = sets[start : start + per_chunk]
        moved = _moved(fn, x, y, chunk, rng)
        if moved is None:
            return NOT_FINITE
        if np.any(moved & ~chunk):
            return reason
    return None


def channel_local(fn, shape, rng):
    """Perturbs one input channel at a time: None when only that output channel moves."""
    return _only_perturbed_move(fn, shape, rng, np.eye(shape[-1], dtype=bool), MIXES)


def channel_local_at_scale(fn, shape, rng):
    """The perturbation test at ``shape`` with channel sets chosen by the bits of the
    channel index and their complements: any two channels differ in one bit, so each one is
    perturbed without the other in one of ``2 * ceil(log2(channels))`` runs."""
    channels = shape[-1]
    bits = (np.arange(channels)[None, :] >> np.arange(max(1, (channels - 1).bit_length()))[:, None]) & 1
    return _only_perturbed_move(fn, shape, rng, np.concatenate([bits == 1, bits == 0]), MIXES_AT_SCALE)


def same_on_subsets(fn, shape, rng):
    """None when ``fn`` on a subset of the channels gives those channels of ``fn`` on all
    (random halves and all but the last)."""
    channels = shape[-1]
    x = probe_inputs(shape, rng)
    y = run(fn, x)
    for keep in (np.sort(rng.permutation(channels)[: max(1, channels // 2)]), np.arange(channels - 1)):
        try:
            got = run(fn, np.ascontiguousarray(x[..., keep]))
        except Exception:  # noqa: BLE001 - e.g. a per-channel constant that no longer broadcasts
            return NOT_ON_SUBSETS
        want = y[..., keep]
        if got.shape != want.shape or not np.all(np.abs(got - want) <= RTOL * (np.abs(want) + 1.0)):
            return NOT_ON_SUBSETS
    return None


def at_zero(fn, shape):
    """``(fn(0), None)``, or ``(None, reason)`` when its value or gradient at zero is not
    finite (``1 / x``; ``sqrt(x)``, whose gradient at a pruned channel is infinite)."""
    x = tf.zeros((1, *shape), tf.float32)
    try:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.convert_to_tensor(fn(x))
            total = tf.reduce_sum(y)
        grad = tape.gradient(total, x)
    except Exception:  # noqa: BLE001 - ran on random inputs before; anything else stays opaque
        return None, NOT_FINITE_AT_ZERO
    y = np.asarray(y)
    if not np.all(np.isfinite(y)) or (grad is not None and not np.all(np.isfinite(np.asarray(grad)))):
        return None, NOT_FINITE_AT_ZERO
    return y, None


def function_kind(fn, shape):
    """``(kind, None)`` for a weight-free function found channel-local on any subset of its
    channels at its cut-down and real shapes (``passthrough`` when it maps zeros to zeros,
    else ``channelwise``), or ``(None, reason)``."""
    rng = np.random.default_rng(0)
    small = small_shape(fn, shape)
    why = channel_local(fn, small, rng) or same_on_subsets(fn, small, rng)
    if why is None and small != shape:
        why = channel_local_at_scale(fn, shape, rng) or same_on_subsets(fn, shape, rng)
    if why is not None:
        return None, why
    zero, why = at_zero(fn, small)
    if why is not None:
        return None, why
    return (Kind.PASSTHROUGH if not np.any(zero) else Kind.CHANNELWISE), None
