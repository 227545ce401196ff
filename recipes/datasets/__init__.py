"""tfds dataset builders the recipes need beyond the tfds catalogue."""

from recipes.datasets.digits import Digits
from recipes.datasets.fashion_mnist import FashionMnistLocal

__all__ = ["Digits", "FashionMnistLocal"]
