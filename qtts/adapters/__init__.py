"""Adapters on a trained model: named speakers (custom voices), LoRA, language additions."""
