"""Keras 3 parity: the same ChipNet run on tf_keras and on Keras 3 (TensorFlow, JAX, PyTorch)."""
