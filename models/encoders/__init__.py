"""Sentence encoders behind one interface: the built-in n-gram encoder and local Hugging Face checkpoints."""

from models.encoders.base import Encoder, EncoderError
from models.encoders.factory import default_encoder_path, load_encoder

__all__ = ["Encoder", "EncoderError", "default_encoder_path", "load_encoder"]
