import math

import numpy as np
import pytest

from chipnet_tf.compat import tf
from chipnet_tf.search.heaviside import continuous_heaviside, crispness_loss, logistic, smooth_round


def _analytic(zeta, beta, gamma):
    zi = 1 / (1 + math.exp(-beta * zeta))
    z = 1 - math.exp(-gamma * zi) + zi * math.exp(-gamma)
    dz = (gamma * math.exp(-gamma * zi) + math.exp(-gamma)) * beta * zi * (1 - zi)
    return zi, z, dz


def test_values_at_zero_match_hand_computation():
    # zeta=0, beta=1, gamma=2: z_i = 0.5, z = 1 - e^-1 + 0.5 e^-2
    z = continuous_heaviside(0.0, 1.0, 2.0).numpy()
    assert z == pytest.approx(1 - math.exp(-1) + 0.5 * math.exp(-2), abs=1e-7)
    assert z == pytest.approx(0.6997882, abs=1e-6)
    assert logistic(0.0, 1.0).numpy() == pytest.approx(0.5)


@pytest.mark.parametrize("zeta,beta,gamma", [(0.0, 1.0, 2.0), (0.3, 1.5, 8.0), (-2.0, 6.0, 256.0), (1.7, 3.0, 45.25)])
def test_value_and_custom_gradient_match_analytic_derivative(zeta, beta, gamma):
    _, z_ref, dz_ref = _analytic(zeta, beta, gamma)
    x = tf.Variable([zeta], dtype=tf.float32)
    with tf.GradientTape() as tape:
        z = continuous_heaviside(x, beta, gamma)
    (grad,) = tape.gradient(z, [x])
    assert z.numpy()[0] == pytest.approx(z_ref, rel=1e-5, abs=1e-6)
    assert grad.numpy()[0] == pytest.approx(dz_ref, rel=1e-4, abs=1e-7)


def test_gradient_at_zero_is_hand_computed_value():
    # (2 e^-1 + e^-2) * 1 * 0.25
    x = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        z = continuous_heaviside(x, 1.0, 2.0)
    assert tape.gradient(z, x).numpy() == pytest.approx((2 * math.exp(-1) + math.exp(-2)) * 0.25, rel=1e-6)


def test_endpoints_map_to_zero_and_one():
    z = continuous_heaviside(np.array([-1e4, 1e4], np.float32), 6.0, 256.0).numpy()
    assert z.tolist() == [0.0, 1.0]


def test_extreme_inputs_give_finite_values_and_gradients():
    zeta = tf.Variable(np.array([-1e30, -1e4, -50.0, -1e-3, 0.0, 1e-3, 50.0, 1e4, 1e30], np.float32))
    for beta, gamma in [(1.0, 2.0), (6.0, 256.0), (6.0, 1e-3)]:
        with tf.GradientTape() as tape:
            z = continuous_heaviside(zeta, beta, gamma)
            loss = tf.reduce_sum(z) + crispness_loss(zeta, beta, gamma)
        grad = tape.gradient(loss, zeta)
        assert np.isfinite(z.numpy()).all()
        assert np.isfinite(grad.numpy()).all()
        assert ((z.numpy() >= 0) & (z.numpy() <= 1)).all()


def test_float16_inputs_compute_in_float32():
    z = continuous_heaviside(tf.constant([0.0], tf.float16), 1.0, 2.0)
    assert z.dtype == tf.float32


def test_smooth_round_values():
    r = smooth_round(np.array([0.5, 0.7, 0.0], np.float32), 10.0).numpy()
    assert r[0] == pytest.approx(0.5)
    assert r[1] == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-6)
    assert r[2] == pytest.approx(1 / (1 + math.exp(5.0)), rel=1e-5)


def test_crispness_is_zero_for_saturated_gates_and_positive_otherwise():
    assert crispness_loss(np.array([-1e4, 1e4], np.float32), 6.0, 256.0).numpy() == pytest.approx(0.0, abs=1e-12)
    zi = 0.5
    z = 1 - math.exp(-2 * zi) + zi * math.exp(-2)
    assert crispness_loss(np.zeros(3, np.float32), 1.0, 2.0).numpy() == pytest.approx((z - zi) ** 2, rel=1e-5)
