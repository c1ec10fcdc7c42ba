"""Training: configuration, run folders, distribution strategy, checkpoints and the fit loop."""
