"""absl-flag recipes that reproduce the ChipNet pipeline (thin entry points; logic in modules)."""

from chipnet_tf import compat  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow/tfds load)


class RecipeError(ValueError):
    """A bad flag value or missing input: the entry point prints it as one line, no traceback."""
