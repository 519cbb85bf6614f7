"""Weight-only int8, symmetric, one scale per output channel c of a conv or linear weight w:

    s_c = max_i |w_ci| / 127,    q_ci = round(w_ci / s_c) in [-127, 127],    w_ci ~ s_c q_ci,

so |w_ci - s_c q_ci| <= s_c / 2. The scale (float32) keeps w's rank, 1 on every axis but the output
channel's, so that ``q * s`` broadcasts back to w.
"""

from __future__ import annotations

import torch
from torch import nn


def transposed(model: nn.Module) -> set[str]:
    """The model's transposed-conv weights, whose output channels are axis 1 (in, out, kH, kW); every other
    weight's are axis 0."""
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)}


def quantize(w: torch.Tensor, axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8, s float32) with w ~ q * s, one s per index of ``axis``."""
    w = w.float()
    s = w.abs().amax(dim=[d for d in range(w.dim()) if d != axis], keepdim=True) / 127
    s = s.clamp_min(torch.finfo(torch.float32).tiny)  # an all-zero channel: q = 0
    return torch.round(w / s).clamp(-127, 127).to(torch.int8), s


def dequantize(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """s_c q_ci, float32."""
    return q.float() * s
