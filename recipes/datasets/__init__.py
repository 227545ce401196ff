"""tfds dataset builders the recipes need beyond the tfds catalogue."""

from recipes.datasets.digits import Digits

__all__ = ["Digits"]
