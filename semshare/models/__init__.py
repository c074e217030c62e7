"""The authors' three networks, with their state-dict keys: ``create_model(variant)`` + ``load_checkpoint``."""

from semshare.models.checkpoint import load_checkpoint
from semshare.models.registry import create_model, list_models

__all__ = ["create_model", "list_models", "load_checkpoint"]
