"""Argument checks shared by the entry points, the layers and the mask selection.

They live here, not in a layer module, so that ``prune``, ``masks`` and the layers read
one definition without importing each other.
"""

import math

import numpy as np


def check_budget(budget):
    """``budget`` as a float in (0, 1].

    Raises:
        TypeError: not a number (bools are rejected).
        ValueError: outside (0, 1] or not finite.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.floating, np.integer)):
        raise TypeError(f"budget must be a number in (0, 1]. Received: budget={budget!r}")
    if not (math.isfinite(float(budget)) and 0.0 < float(budget) <= 1.0):
        raise ValueError(f"budget must be a fraction in (0, 1]. Received: budget={budget!r}")
    return float(budget)


def check_weight(name, value):
    """``value`` (a penalty weight called ``name``) as a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


def check_gate_leak(gate_leak):
    """``gate_leak`` (the forward factor of a closed channel under hard gates) as a float in [0, 0.5)."""
    if isinstance(gate_leak, bool) or not isinstance(gate_leak, (int, float)) or not 0 <= gate_leak < 0.5:
        raise ValueError(f"gate_leak must be a number in [0, 0.5). Received: gate_leak={gate_leak!r}")
    return float(gate_leak)


def check_round_to(round_to):
    """``round_to`` (channels are kept in multiples of it) as a positive int."""
    if isinstance(round_to, bool) or not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise ValueError(f"round_to must be a positive integer. Received: round_to={round_to!r}")
    return int(round_to)


def first_line(error):
    """The first line of an exception's message (its class name when it has none): one-line
    errors that quote the cause without its traceback."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
