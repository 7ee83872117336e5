"""Data: manifests and their validation, HF datasets builders, samplers and collators."""
