"""Image-to-image editing built on `iterative_denoise`: SDEdit (1.7, 1.7.1), text-conditional
image-to-image (1.7.3) and inpainting (1.7.2)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from harness.denoisers.base import Denoiser
from harness.diffusion import forward
from harness.sampling import iterative_denoise
from harness.seeding import randn


def sdedit(
    denoiser: Denoiser, x_orig: torch.Tensor, timesteps: Sequence[int], i_start: int, guide: Callable,
    generators: Sequence[torch.Generator], progress: bool = False,
) -> torch.Tensor:
    """SDEdit: x_t = forward(x_orig, t = timesteps[i_start]), then iterative_denoise from i_start.

    With a guide conditioned on another prompt this is text-conditional image-to-image (1.7.3).
    Smaller i_start means more noise, hence an edit further from x_orig.
    """
    eps = randn(tuple(x_orig.shape[1:]), generators, x_orig.device)
    x_t = forward(x_orig, timesteps[i_start], denoiser.alphas_cumprod, eps)
    return iterative_denoise(denoiser, x_t, timesteps, i_start, guide, generators, progress=progress)[0]


def inpaint(
    denoiser: Denoiser, x_orig: torch.Tensor, mask: torch.Tensor, timesteps: Sequence[int], guide: Callable,
    generators: Sequence[torch.Generator], renoise_generators: Sequence[torch.Generator], progress: bool = False,
) -> torch.Tensor:
    """Inpainting (RePaint-style, the course's rule): sample from pure noise and after every step set

    x_t' <- m x_t' + (1 - m) forward(x_orig, t'),   m = 1 where new content is generated,

    so the known region is re-noised to the current t' each step (fresh noise from renoise_generators).
    """
    if mask.shape[-2:] != x_orig.shape[-2:]:
        raise ValueError(f"mask is {tuple(mask.shape[-2:])} but the image is {tuple(x_orig.shape[-2:])}")
    mask = mask.to(x_orig.device, torch.float32)

    def keep_known(x: torch.Tensor, i: int, t: int) -> torch.Tensor:
        eps = randn(tuple(x_orig.shape[1:]), renoise_generators, x_orig.device)
        known = x_orig if t == 0 else forward(x_orig, t, denoiser.alphas_cumprod, eps)
        return mask * x + (1 - mask) * known

    x = randn(tuple(x_orig.shape[1:]), generators, x_orig.device)
    return iterative_denoise(denoiser, x, timesteps, 0, guide, generators, after_step=keep_known, progress=progress)[0]
