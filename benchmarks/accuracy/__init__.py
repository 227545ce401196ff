"""Accuracy at a budget: ChipNet against L1-norm, network slimming, random and tfmot; the search ablation."""
