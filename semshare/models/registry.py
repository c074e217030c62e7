"""Variant registry: a dict filled by a decorator; the factory is a lookup plus a call."""

from __future__ import annotations

from collections.abc import Callable

from semshare.errors import SemshareError

_MODELS: dict[str, Callable] = {}


def register_model(name: str) -> Callable:
    def deco(cls: Callable) -> Callable:
        _MODELS[name] = cls
        return cls

    return deco


def list_models() -> list[str]:
    """The variant names (the authors' ``--model-mode`` values)."""
    _load_variants()
    return sorted(_MODELS)


def create_model(variant: str, num_classes: int = 6, **kw):
    """Build a variant with random weights, in eval mode: ``create_model("mobilenetv3_tightly")``.

    Keyword arguments: ``rig`` (:class:`semshare.rig.Rig`), ``scale`` (0.4), ``input_size`` ((1216, 1920)).
    """
    _load_variants()
    if variant not in _MODELS:
        raise SemshareError(f"unknown variant {variant!r}; choose one of: {', '.join(sorted(_MODELS))}")
    return _MODELS[variant](num_classes=num_classes, **kw).eval()


def _load_variants() -> None:
    import semshare.models.semshare  # noqa: F401  (registers the variants)
