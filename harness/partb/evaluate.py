"""Measurements of a Part B checkpoint: FID-lite of its samples against test digits, and how often
class-conditioned samples are classified as the digit asked for."""

from __future__ import annotations

import torch

from harness.partb.fid import classify, fid_lite, load_classifier
from harness.partb.mnist import load_mnist, to_float
from harness.partb.sampling import ddpm_sample
from harness.schedules import linear_alphas_cumprod
from harness.metrics import psnr
from harness.seeding import generators, randn


def test_digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n MNIST test digits in [0, 1] and their labels."""
    images, labels = load_mnist("test")
    return to_float(images[:n]), torch.from_numpy(labels[:n])


def sample_fid(model, gens, labels=None, cfg_scale: float = 5.0, stride: int = 5) -> tuple[float, torch.Tensor]:
    """FID-lite of len(gens) samples against as many test digits; returns (fid, samples)."""
    x, _ = ddpm_sample(model, linear_alphas_cumprod(300), gens, labels, cfg_scale, stride=stride)
    return fid_lite(test_digits(len(gens))[0], x), x


def accuracy(samples: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of samples the shipped classifier reads as their intended digit."""
    return float((classify(samples, load_classifier()[0]) == labels).float().mean())


def measure(kind: str, model, seed: int = 0, n: int = 200, stride: int = 10) -> dict[str, float]:
    """What a checkpoint records. denoiser: PSNR of D(x + 0.5 eps) on n test digits; time, class:
    FID-lite of n samples (every stride-th timestep); class: also the accuracy at cfg_scale 5."""
    if kind == "denoiser":
        clean = test_digits(n)[0]
        z = clean + 0.5 * randn((1, 28, 28), generators(seed, "measure/denoiser", n))
        with torch.inference_mode():
            return {"psnr_sigma0.5": psnr(model(z).clamp(0, 1) * 2 - 1, clean * 2 - 1), "psnr_digits": n}
    labels = torch.arange(10).repeat(n // 10) if kind == "class" else None
    fid, x = sample_fid(model, generators(seed, f"measure/{kind}", n), labels, stride=stride)
    out = {"fid_lite": fid, "fid_samples": n, "fid_stride": stride}
    if labels is not None:
        out["accuracy_cfg5"] = accuracy(x, labels)
    return out
