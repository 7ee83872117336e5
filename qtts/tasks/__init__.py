"""Lightning tasks: each composes a model with its losses, optimizer and validation metrics."""
