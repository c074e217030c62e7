"""Weights that look trained to every layer: the authors' initialisation, then BatchNorm statistics
calibrated on a real camera pair.

A freshly initialised model keeps every BatchNorm's running statistics at (0, 1), so activations grow or
shrink layer after layer and the logits stay tiny: accuracy checks on such weights hide real failures
(export tolerances, INT8 ranges). A trained checkpoint normalises every layer. :func:`realistic_model`
reproduces that: a train-mode forward of a real pair under ``no_grad`` with ``momentum=None`` (cumulative
average) sets every BatchNorm's running mean and variance to the statistics the layer actually sees, and
the model is returned in eval mode. ``perturb`` draws the BatchNorm affine parameters around (1, 0) first,
so channels differ as they do after training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semshare.models.registry import create_model


def authors_init(model: nn.Module) -> nn.Module:
    """The authors' initialisation: their MobileNetV3 (``pretrained.*``) draws every conv from
    ``xavier_uniform_(gain=calculate_gain('relu'))`` with zero biases and BatchNorm (1, 0); the head, PWC-Net and
    fusion modules keep PyTorch's defaults (light/model/base_model/mobilenetv3.py ``_init_weights``)."""
    for m in model.pretrained.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("relu"))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def calibrate_batchnorm(model: nn.Module, pairs: list[tuple[Tensor, Tensor]]) -> nn.Module:
    """Set every BatchNorm's running statistics to the cumulative average over ``pairs`` (model inputs
    ``(img120, img60)``, each (B, 3, H, W) normalised); returns ``model`` in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for img120, img60 in pairs:
                model(img120, img60)
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        model.eval()
    return model


def realistic_model(
    variant: str,
    pair: tuple[Tensor, Tensor] | None = None,
    size: tuple[int, int] = (784, 800),
    perturb: float = 0.0,
    seed: int = 0,
    **kw,
) -> nn.Module:
    """``create_model(variant, **kw)`` with :func:`authors_init` (seeded) with BatchNorm statistics
    calibrated on ``pair`` (``(img120, img60)`` tensors from :func:`semshare.data.load_pair`); without one,
    on the synthetic pair of :func:`semshare.data.synthetic_pair` at ``size`` (H, W).

    ``perturb`` > 0 draws each BatchNorm's weight from N(1, perturb) and bias from N(0, perturb) before
    calibrating. The returned model is in eval mode, on the CPU, float32.
    """
    gen = torch.Generator().manual_seed(seed)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = authors_init(create_model(variant, **kw))
    finally:
        torch.random.set_rng_state(state)
    if perturb > 0:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                    m.weight.copy_(1 + perturb * torch.randn(m.weight.shape, generator=gen))
                    m.bias.copy_(perturb * torch.randn(m.bias.shape, generator=gen))
    if pair is None:
        from semshare.data import preprocess, synthetic_pair

        im120, im60 = synthetic_pair(rig=kw.get("rig"))
        pair = (preprocess(im120, size), preprocess(im60, size))
    return calibrate_batchnorm(model, [pair])
