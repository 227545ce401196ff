"""Transformer benchmark: ChipNet on a small vision transformer (see __main__)."""
