"""Training the model library: configuration, data, the training loop, checkpoints and resume."""
