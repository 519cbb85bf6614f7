"""Image metrics against the clean image: PSNR and SSIM through torchmetrics.

Images are in [-1, 1] and mapped to [0, 1] (data range 1) first, so PSNR = 10 log10(1 / mse) on [0, 1].
A batch gives the mean over its images.
"""

from __future__ import annotations

import torch

from harness.errors import BadImage


def _prepare(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != ref.shape:
        raise BadImage(f"metric inputs differ in shape: {tuple(x.shape)} vs {tuple(ref.shape)}")
    for name, t in (("image", x), ("reference", ref)):
        lo, hi = float(t.min()), float(t.max())
        if lo < -1 - 1e-4 or hi > 1 + 1e-4:
            raise BadImage(f"{name} has values in [{lo:.3g}, {hi:.3g}], expected [-1, 1]: clamp the output first")
    x, ref = (t if t.dim() == 4 else t[None] for t in (x, ref))
    return ((x.double().clamp(-1, 1) + 1) / 2), ((ref.double().clamp(-1, 1) + 1) / 2)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean over images of 10 log10(1 / mse) on the [0, 1] scale (inf for identical images)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, ref = _prepare(x, ref)
    return float(peak_signal_noise_ratio(x, ref, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean())


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean over images of SSIM (Gaussian window 11, sigma 1.5, data range 1), in [-1, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, ref = _prepare(x, ref)
    return float(structural_similarity_index_measure(x, ref, data_range=1.0))
