"""HomographyWarp: resample an image through a 3x3 homography (kornia ``HomographyWarper`` semantics).

Function first (the math), module second (stores the output size and the homography as a buffer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: |z| at or below this leaves the projected point undivided (kornia's convention).
Z_EPS = 1e-8


def homography_grid(src_from_dst: Tensor, out_size: tuple[int, int], align_corners: bool = True) -> Tensor:
    """Sampling grid (B, Hd, Wd, 2) of normalised source coordinates for every destination pixel.

    Convention: destination pixel (u, v) has the normalised coordinate ``p = (2u/(Wd-1) - 1, 2v/(Hd-1) - 1)``
    (a ``linspace(-1, 1)`` grid) when ``align_corners`` is True, the half-pixel ``(2u+1)/Wd - 1`` otherwise;
    ``q = src_from_dst @ (p, 1)``; the grid holds ``q.xy / q.z`` (``q.xy`` where ``|q.z| <= 1e-8``).
    The math runs in float32 (float64 if the homography is float64), whatever the image dtype.
    """
    hd, wd = out_size
    dtype = torch.float64 if src_from_dst.dtype == torch.float64 else torch.float32
    hom = src_from_dst.to(dtype)
    dev = hom.device
    if align_corners:
        xs = torch.linspace(-1.0, 1.0, wd, dtype=dtype, device=dev)
        ys = torch.linspace(-1.0, 1.0, hd, dtype=dtype, device=dev)
    else:
        xs = (torch.arange(wd, dtype=dtype, device=dev) * 2 + 1) / wd - 1
        ys = (torch.arange(hd, dtype=dtype, device=dev) * 2 + 1) / hd - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, hd * wd, 3)  # (1, N, 3)
    q = pts @ hom.transpose(1, 2)  # (B, N, 3)
    z = q[..., 2:]
    scale = torch.where(z.abs() > Z_EPS, 1.0 / z, torch.ones_like(z))
    return (q[..., :2] * scale).reshape(-1, hd, wd, 2)


def homography_warp(
    src: Tensor, src_from_dst: Tensor, out_size: tuple[int, int], align_corners: bool = True
) -> Tensor:
    """Warp ``src`` into a destination view of size ``out_size`` through a homography.

    Args:
        src: (B, C, Hs, Ws) float32 or float16 (float64 for gradcheck).
        src_from_dst: (B, 3, 3) or (1, 3, 3), normalised coordinates, mapping a destination point to the
            source point it samples (kornia's ``src_homo_dst``).
        out_size: (Hd, Wd), each >= 2.
        align_corners: the grid and ``grid_sample`` convention. True (default) is the training-time
            semantics of the authors' models (kornia 0.1 / PyTorch 1.2) and equals current kornia's
            ``HomographyWarper(Hd, Wd, align_corners=True)``.

    Convention: see :func:`homography_grid`; bilinear sampling with zero padding.

    Returns:
        (B, C, Hd, Wd) in the dtype of ``src``.
    """
    if src.dim() != 4:
        raise ValueError(f"homography_warp: src must be (B, C, H, W), got shape {tuple(src.shape)}")
    if src_from_dst.dim() != 3 or src_from_dst.shape[1:] != (3, 3):
        raise ValueError(
            f"homography_warp: src_from_dst must be (B, 3, 3) or (1, 3, 3), got shape {tuple(src_from_dst.shape)}"
        )
    b = src.shape[0]
    if src_from_dst.shape[0] not in (1, b):
        raise ValueError(
            f"homography_warp: src_from_dst batch {src_from_dst.shape[0]} must be 1 or the image batch {b}"
        )
    hd, wd = (int(s) for s in out_size)
    if hd < 2 or wd < 2:
        raise ValueError(f"homography_warp: out_size must be at least (2, 2), got {tuple(out_size)}")
    grid = homography_grid(src_from_dst, (hd, wd), align_corners)
    if grid.shape[0] != b:
        grid = grid.expand(b, -1, -1, -1)
    work = src if src.dtype == torch.float64 else src.float()
    out = F.grid_sample(work, grid.to(work.dtype), mode="bilinear", padding_mode="zeros",
                        align_corners=align_corners)
    return out.to(src.dtype)


class HomographyWarp(nn.Module):
    """Module form of :func:`homography_warp` with a fixed homography.

    The homography is a non-persistent buffer: ``.to(device)`` moves it, ``state_dict()`` omits it (the
    authors' checkpoints hold no homography keys). ``forward(src, src_from_dst=None, out_size=None)``
    overrides either when given (a graph input for multi-rig engines; a size derived from the input).
    """

    def __init__(self, src_from_dst: Tensor, out_size: tuple[int, int], align_corners: bool = True) -> None:
        super().__init__()
        if src_from_dst.dim() == 2:
            src_from_dst = src_from_dst.unsqueeze(0)
        self.register_buffer("src_from_dst", src_from_dst.to(torch.float32), persistent=False)
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.align_corners = bool(align_corners)

    def forward(self, src: Tensor, src_from_dst: Tensor | None = None,
                out_size: tuple[int, int] | None = None) -> Tensor:
        hom = self.src_from_dst if src_from_dst is None else src_from_dst
        return homography_warp(src, hom, out_size or self.out_size, self.align_corners)

    def extra_repr(self) -> str:
        return f"out_size={self.out_size}, align_corners={self.align_corners}"
