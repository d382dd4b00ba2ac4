"""Shipped model weights (safetensors) with their JSON configs, and the registry that names them."""

from .registry import MODELS, ModelEntry, resolve_model

__all__ = ["MODELS", "ModelEntry", "resolve_model"]
