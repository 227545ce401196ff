"""Third-party CNNs (keras-cv-attention-models, built offline with random weights): a sample
of the benchmark :mod:`benchmarks.strip.zoo_kecam`, one model per cause that used to stop
their channel groups (the whole zoo is the benchmark)."""

import warnings

import pytest

from benchmarks.strip import zoo_kecam
from benchmarks.strip.zoo_reach import smallest_flops_fraction, strip_check
from chipnet_tf.compat import keras


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.backend.clear_session()
        yield


# model -> (smallest reachable FLOPs fraction, groups); before: 0.222, 0.113 and 0.724.
REACH = {
    "MobileNetV3Small075": (0.0083, 27),  # Activation("hard_sigmoid_torch"): a user-registered function
    "FasterNetT0": (0.0095, 35),  # tf.split(x, [c, -1]) and Add(x, concat([conv(part), rest]))
    "GhostNetV2_100": (0.0096, 31),  # ghost modules, tf.image.resize(x, tf.shape(inputs)[1:-1])
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "GhostNetV2_100" else n for n in REACH]
)
def test_third_party_cnn_reaches_the_smallest_network_with_no_stopped_group(name):
    fraction, analysis = smallest_flops_fraction(zoo_kecam.build(name))
    assert analysis.stopped == []
    assert (round(fraction, 4), len(analysis.groups)) == REACH[name]


@pytest.mark.slow
def test_third_party_cnn_strips_exactly_at_flops_0_1():
    model = zoo_kecam.build("MobileNetV3Small075")
    _, analysis = smallest_flops_fraction(model)
    check = strip_check(model, analysis)
    assert check["rel_max_diff"] <= 1e-5
    assert check["params_exact"] and check["flops_exact"] and check["profiler_exact"]
    assert 0.09 <= check["flops_fraction"] <= 0.1
