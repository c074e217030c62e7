"""Loading the authors' (and users') checkpoints into semshare models."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from semshare.errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def extract_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A plain state dict from a plain, DataParallel (``module.``) or wrapped (``{"state_dict": ...}``) one."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{source} holds no state dict (expected a dict of tensors, or one under 'state_dict'/'model'); "
            "pass a .pth saved with torch.save(model.state_dict())"
        )
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    from semshare.validate import check_input_file

    path = check_input_file(path, "checkpoint", "pass the path of a .pth file", CheckpointError)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or weights-only errors: all mean "not a usable checkpoint"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read ({first[:160]}); is it a complete .pth file?") from None
    return extract_state_dict(obj, str(path))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(model: nn.Module, path_or_state_dict, strict: bool = True) -> nn.Module:
    """Load weights into ``model``; on any mismatch (strict) raise CheckpointError.

    The message is one line (counts and one example of each kind); the error's ``missing``, ``unexpected``
    and ``shape_mismatches`` attributes hold the full lists.
    """
    if isinstance(path_or_state_dict, (str, Path)):
        source = str(path_or_state_dict)
        sd = read_checkpoint(path_or_state_dict)
    else:
        source = "state dict"
        sd = extract_state_dict(path_or_state_dict, source)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and sd[k].shape != own[k].shape]
    if shapes or (strict and (missing or unexpected)):
        variant = getattr(model, "variant", type(model).__name__)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
        error = CheckpointError(
            f"{source} does not fit {variant}: {'; '.join(parts)}; is it a checkpoint of another variant?"
        )
        error.missing, error.unexpected, error.shape_mismatches = missing, unexpected, shapes  # the full lists
        raise error
    check_finite(sd, source, [k for k in own if k in sd])
    model.load_state_dict(sd, strict=strict)
    return model


def check_finite(sd: Mapping[str, torch.Tensor], source: str, keys: list[str]) -> None:
    """Refuse a state dict with a NaN or Inf in any of ``keys`` (a diverged or damaged checkpoint), naming the first."""
    for k in keys:
        t = sd[k]
        if t.is_floating_point() or t.is_complex():
            bad = ~torch.isfinite(t)
            if bad.any():
                n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
                raise CheckpointError(
                    f"{source}: tensor {k} holds {n_nan} NaN and {n_inf} Inf of {t.numel()} values (more tensors may "
                    "follow); the checkpoint is damaged or comes from a diverged training run: use an earlier or "
                    "another checkpoint"
                )
