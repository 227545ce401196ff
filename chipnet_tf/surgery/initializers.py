"""Building a stripped layer without paying for initial values it never keeps.

``strip_pruning`` builds every rebuilt layer by calling it, which runs its initializers, and
then overwrites each variable with the sliced weights. On Keras 3's JAX backend every new
kernel shape's random initializer is compiled by XLA on first use (ResNet50: 85 compilations,
about 30 s of a 50 s first strip in a fresh process). While a layer is built for strip, its
own initializers are zeros; they are put back right after, so its config is unchanged.
"""

import contextlib

from chipnet_tf.compat import is_keras3_object, keras3


@contextlib.contextmanager
def zero_initialized(layer):
    """Within the block, ``layer``'s initializer attributes (``kernel_initializer``,
    ``gamma_initializer``, ...) are ``Zeros`` when it is a Keras 3 layer on the JAX backend;
    elsewhere nothing changes (tf_keras and TensorFlow initialise without compiling)."""
    if not is_keras3_object(layer) or keras3().backend.backend() != "jax":
        yield
        return
    k = keras3()
    saved = {name: value for name, value in vars(layer).items() if isinstance(value, k.initializers.Initializer)}
    for name in saved:
        setattr(layer, name, k.initializers.Zeros())
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(layer, name, value)
