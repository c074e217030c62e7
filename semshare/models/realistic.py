"""Weights that look trained to every layer: the authors' initialisation, then BatchNorm statistics
calibrated on a real camera pair.

A freshly initialised model keeps every BatchNorm's running statistics at (0, 1), so activations grow or
shrink layer after layer and the logits stay tiny: accuracy checks on such weights hide real failures
(export tolerances, INT8 ranges). A trained checkpoint normalises every layer. :func:`realistic_model`
reproduces that: a train-mode forward of a real pair under ``no_grad`` with ``momentum=None`` (cumulative
average) sets every BatchNorm's running mean and variance to the statistics the layer actually sees, and
the model is returned in eval mode. ``perturb`` draws the BatchNorm affine parameters around (1, 0) first,
so channels differ as they do after training.

The PWC-Net (``flow_Network``) has no BatchNorm. Left at PyTorch's default initialisation its features fade
layer by layer (tightly: cost volume std ~0.005, flow a near-constant bias): the correlation barely reaches
the logits, which no trained flow network does. The same calibration pass therefore rescales each of its
convs on the first pair so its output has unit standard deviation (layer-sequential unit variance, Mishkin
& Matas 2016), and each flow estimator's last conv so its flow residual has :data:`FLOW_RESIDUAL_STD`
pixels of its level: measured on pair 02450 at 784x800 the cost volume then has std 0.07-0.5 and the flow
std 1.5 px (tightly) and 6 px (loosely), and one dropped correlation displacement moves the logits by
percents, not 1e-5.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semshare.models.registry import create_model

#: Target std, in pixels of its pyramid level, of each flow estimator's residual flow (its last conv's output).
FLOW_RESIDUAL_STD = 0.1


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


def flow_conv_targets(model: nn.Module, flow_std: float = FLOW_RESIDUAL_STD) -> dict[nn.Conv2d, float]:
    """Every conv of the model's PWC-Net (none for ``mobilenetv3``) -> the std its output should have: 1, and
    ``flow_std`` for each flow estimator's last conv (``FlowEstimator(Lv{l}).convs.5``)."""
    flow = getattr(model, "flow_Network", None)
    if flow is None:
        return {}
    return {m: (flow_std if name.endswith("convs.5") else 1.0)
            for name, m in flow.named_modules() if isinstance(m, nn.Conv2d)}


def calibrate_batchnorm(
    model: nn.Module, pairs: list[tuple[Tensor, Tensor]], rescale: dict[nn.Conv2d, float] | None = None
) -> nn.Module:
    """Set every BatchNorm's running statistics to the cumulative average over ``pairs`` (model inputs
    ``(img120, img60)``, each (B, 3, H, W) normalised); returns ``model`` in eval mode.

    ``rescale`` (conv -> std): on its first call (the first pair) each of these convs has its weight and bias
    scaled so that its output has that standard deviation, and the layers after it, BatchNorms included, see
    the rescaled output in the same pass. A conv that never runs (loosely's ``FlowEstimator(Lv5/Lv6)``) is
    left as it is."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    done: set[nn.Module] = set()

    def unit_variance(conv: nn.Module, _args, out: Tensor) -> Tensor:
        if conv in done:
            return out
        done.add(conv)
        gain = rescale[conv] / max(float(out.std()), 1e-12)
        conv.weight.mul_(gain)
        if conv.bias is not None:
            conv.bias.mul_(gain)
        return out * gain

    handles = [conv.register_forward_hook(unit_variance) for conv in (rescale or {})]
    model.train()
    try:
        with torch.no_grad():
            for img120, img60 in pairs:
                model(img120, img60)
    finally:
        for h in handles:
            h.remove()
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
    flow_std: float | None = FLOW_RESIDUAL_STD,
    **kw,
) -> nn.Module:
    """``create_model(variant, **kw)`` with :func:`authors_init` (seeded) with BatchNorm statistics
    calibrated on ``pair`` (``(img120, img60)`` tensors from :func:`semshare.data.load_pair`); without one,
    on the synthetic pair of :func:`semshare.data.synthetic_pair` at ``size`` (H, W).

    ``perturb`` > 0 draws each BatchNorm's weight from N(1, perturb) and bias from N(0, perturb) before
    calibrating. ``flow_std`` is the flow residual target of :func:`flow_conv_targets`; ``None`` keeps the
    PWC-Net at PyTorch's default initialisation. The returned model is in eval mode, on the CPU, float32.
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
    targets = flow_conv_targets(model, flow_std) if flow_std is not None else None
    return calibrate_batchnorm(model, [pair], targets)
