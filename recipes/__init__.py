"""absl-flag recipes that reproduce the ChipNet pipeline (thin entry points; logic in modules)."""
