"""The one interface every model meets.

A `Denoiser` maps a noisy batch ``x_t`` at integer timesteps ``t`` under a batch of conditions to a
`NoiseEstimate`: the noise ``eps`` and, for models with a learned variance (DeepFloyd IF), the
learned-range interpolation value ``v`` in [-1, 1]. Conditions are tensors whose first dimension is the
batch, so guides can stack conditional and unconditional rows into one call with ``torch.cat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, Sequence, runtime_checkable

import torch

VarianceType = Literal["learned_range", "fixed_large", "fixed_small"]


@dataclass(frozen=True)
class NoiseEstimate:
    """eps: predicted noise, shape of x_t. v: learned-range value (same shape) or None."""

    eps: torch.Tensor
    v: torch.Tensor | None = None


@runtime_checkable
class Denoiser(Protocol):
    """What samplers, guides and sections may rely on; nothing else about a backend.

    Attributes:
        name: backend name (``"tiny-if"``, ``"deepfloyd"``, ``"mnist"``).
        alphas_cumprod: abar_t for t = 0..T-1, float64 on CPU, the schedule the model was trained with.
        image_shape: (C, H, W) of the images it denoises.
        data_range: (lo, hi) of the clean images it was trained on: IF (-1, 1), the Part B UNets (0, 1).
            A variance-preserving process does not survive rescaling its data, so callers hand the
            model images in this range (`to_data_range`) and show results in [-1, 1] (`from_data_range`).
        variance_type: how a strided step draws its noise (``learned_range`` uses ``v``).
        x0_clip: if not None, the clean estimate is clamped to [-x0_clip, x0_clip] in every step
            (a declared property: random-weight twins need it to stay finite; real IF does not).
        device, dtype: where and in which precision the model runs; samplers keep x in float32.
    """

    name: str
    alphas_cumprod: torch.Tensor
    image_shape: tuple[int, int, int]
    data_range: tuple[float, float]
    variance_type: VarianceType
    x0_clip: float | None
    device: torch.device
    dtype: torch.dtype

    def condition(self, prompts: Sequence[str | None]) -> torch.Tensor:
        """Batch of conditions for ``prompts``; ``None`` or ``""`` is the null (unconditional) prompt."""
        ...

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> NoiseEstimate:
        """Noise estimate for x_t (B, C, H, W) at timesteps t (B,) under cond (B, ...)."""
        ...


def to_data_range(denoiser: Denoiser, x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> the denoiser's data_range (lo, hi): x (hi - lo) / 2 + (hi + lo) / 2 (exact identity for IF)."""
    lo, hi = denoiser.data_range
    return x * ((hi - lo) / 2) + (hi + lo) / 2


def from_data_range(denoiser: Denoiser, x: torch.Tensor) -> torch.Tensor:
    """The denoiser's data_range -> [-1, 1], the inverse of `to_data_range`."""
    lo, hi = denoiser.data_range
    return (x - (hi + lo) / 2) / ((hi - lo) / 2)
