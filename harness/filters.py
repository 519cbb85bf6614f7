"""The course's Gaussian blur (1.2) and the low/high-pass filters of hybrid images (1.9).

Semantics are torchvision's ``transforms.functional.gaussian_blur``, which the course calls: a
separable kernel w(x) = exp(-x^2 / (2 sigma^2)) over x = -(k-1)/2 .. (k-1)/2, normalised to sum 1,
applied per channel after padding (k-1)/2 pixels by reflection (``mode="reflect"``: the edge pixel
is not repeated). That equals ``scipy.ndimage.gaussian_filter(x, sigma, mode="mirror",
radius=(k-1)//2)`` per channel (tests/test_filters.py checks it).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from harness.devices import to_device


def gaussian_kernel1d(kernel_size: int, sigma: float) -> torch.Tensor:
    """w_i = exp(-x_i^2 / (2 sigma^2)) / sum_j w_j,  x = linspace(-(k-1)/2, (k-1)/2, k)."""
    if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise ValueError(f"need an odd kernel_size >= 1 and sigma > 0, got kernel_size={kernel_size}, sigma={sigma}")
    x = torch.linspace(-(kernel_size - 1) / 2, (kernel_size - 1) / 2, kernel_size)
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Blur (C, H, W) or (N, C, H, W) with the separable Gaussian, reflect padding of (k-1)/2."""
    pad = (kernel_size - 1) // 2
    if pad >= min(x.shape[-2:]):
        raise ValueError(f"kernel_size {kernel_size} needs images larger than {pad} pixels for reflect padding, "
                         f"got {tuple(x.shape[-2:])}")
    batch = x if x.dim() == 4 else x[None]
    c = batch.shape[1]
    w_row, w_col = _separable_weights(kernel_size, sigma, c, batch.device, batch.dtype)
    y = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, w_row, groups=c)
    y = F.conv2d(y, w_col, groups=c)
    return y if x.dim() == 4 else y[0]


@lru_cache(maxsize=32)
def _separable_weights(kernel_size: int, sigma: float, c: int, device: torch.device, dtype: torch.dtype):
    """The depthwise row (c, 1, 1, k) and column (c, 1, k, 1) kernels, built once per (k, sigma, c, device,
    dtype): a sampling loop blurs every step and would otherwise rebuild (and copy to the GPU) each time.
    The first build happens inside the loop (hybrids blur at their first step), so the copy must not block:
    a plain ``.to("cuda")`` synchronises, which tests/test_loops.py's CUDA sync-debug guard rejects."""
    w = to_device(gaussian_kernel1d(kernel_size, sigma), device).to(dtype)
    return w.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), w.reshape(1, 1, -1, 1).expand(c, 1, -1, 1)


def low_pass(x: torch.Tensor, kernel_size: int = 33, sigma: float = 2.0) -> torch.Tensor:
    """f_low(x) = G_sigma * x."""
    return gaussian_blur(x, kernel_size, sigma)


def high_pass(x: torch.Tensor, kernel_size: int = 33, sigma: float = 2.0) -> torch.Tensor:
    """f_high(x) = x - G_sigma * x, so f_low + f_high is the identity."""
    return x - gaussian_blur(x, kernel_size, sigma)
