"""The search's optimiser: the paper's AdamW with its learning rate cosine-decayed over the search."""

import math

from chipnet_tf.compat import is_keras3_object, keras, keras3


def _number(name, value, low, inclusive):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (value == low and not inclusive):
        bound = f">= {low}" if inclusive else f"> {low}"
        raise ValueError(f"search_optimizer: {name} must be a finite number {bound}. Received: {name}={value!r}")


def search_optimizer(total_steps, learning_rate=1e-3, weight_decay=1e-3, model=None):
    """AdamW for a search of ``total_steps`` optimizer steps: the paper's settings (lr 1e-3,
    weight decay 1e-3, none on the mask logits ``zeta``) with the learning rate cosine-decayed
    to 0 over the search.

    A short search takes large logit steps (the progress schedule scales the logits to the
    search's length), so at a constant learning rate the gates end the search still moving
    and the soft budget settles above a low target (Fashion-MNIST, 188 steps: 0.127 for a
    channels target of 0.1, 0.073 for 0.05); decayed to 0 they settle at 0.103 and 0.066
    (docs/design/search-defaults.md).

    Args:
        total_steps: the search's optimizer steps (``epochs * steps_per_epoch``), > 0.
        learning_rate: the starting learning rate, > 0.
        weight_decay: AdamW's decoupled weight decay, >= 0; never applied to the mask logits.
        model: the model it will train; a Keras 3 model gets a Keras 3 optimizer (default:
            tf_keras).

    Returns:
        A ``keras.optimizers.AdamW`` (of ``model``'s Keras) to pass to ``compile``.

    Raises:
        ValueError: a value outside the ranges above.

    Example:
        >>> opt = chipnet_tf.search_optimizer(total_steps=100)
        >>> opt.get_config()["learning_rate"]["class_name"]
        'CosineDecay'
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"search_optimizer: total_steps must be a positive integer. Received: {total_steps!r}")
    _number("learning_rate", learning_rate, 0.0, inclusive=False)
    _number("weight_decay", weight_decay, 0.0, inclusive=True)
    k = keras3() if model is not None and is_keras3_object(model) else keras
    schedule = k.optimizers.schedules.CosineDecay(float(learning_rate), total_steps)
    optimizer = k.optimizers.AdamW(schedule, weight_decay=float(weight_decay))
    optimizer.exclude_from_weight_decay(var_names=["zeta"])
    return optimizer
