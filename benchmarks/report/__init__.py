"""RESULTS.md and its plots, written from the results JSON files."""
