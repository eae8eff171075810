"""Encoders and classifiers: the built-in models and loaders for local Hugging Face checkpoints."""
