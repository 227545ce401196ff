"""Training-step overhead of the wrapped model against a plain model and tfmot."""
