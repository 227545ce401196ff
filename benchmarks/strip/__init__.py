"""Wrap, mask and strip time and memory, and how much of keras.applications the analysis reaches."""
