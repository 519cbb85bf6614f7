"""Measurements of a Part B checkpoint: FID-lite of its samples against test digits, and how often
class-conditioned samples are classified as the digit asked for.

Under torchrun (`harness.partb.distributed`) the samples split across ranks: rank r draws the samples
of seeds r, r + W, ... against the test digits of the same indices, and the FID-lite statistics and
the accuracy counts are summed over ranks, so a 10,000-sample FID-lite is a multi-GPU job.
"""

from __future__ import annotations

import torch

from harness.errors import BadValue
from harness.metrics import psnr
from harness.partb.distributed import World, sum_over_ranks
from harness.partb.fid import classify, fid_lite, load_classifier
from harness.partb.mnist import load_mnist, to_float
from harness.partb.sampling import ddpm_sample
from harness.schedules import linear_alphas_cumprod
from harness.seeding import generators, randn

BATCH_SIZE = 1000  # samples per sampler call


def test_digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n MNIST test digits in [0, 1] and their labels."""
    images, labels = load_mnist("test")
    if n > len(images):
        raise BadValue(f"FID-lite compares samples with as many test digits, and MNIST has {len(images)}: "
                           f"ask for at most {len(images)} samples (asked for {n})")
    return to_float(images[:n]), torch.from_numpy(labels[:n])


def sample_fid(model, gens, labels=None, cfg_scale: float = 5.0, stride: int = 5, world: World = World(),
               batch_size: int = BATCH_SIZE, bf16: bool = False) -> tuple[float, torch.Tensor]:
    """FID-lite of len(gens) samples against as many test digits, sampled batch_size at a time; returns
    (fid, this rank's samples: all of them in one process). ``bf16``: the UNet under bf16 autocast (a
    measurement's speed; the sampler's own arithmetic, the draws and the goldens stay float32)."""
    rows = world.share(len(gens))
    real = test_digits(len(gens))[0][rows]
    gens, labels = gens[rows], None if labels is None else labels[rows]
    abar = linear_alphas_cumprod(300)
    with torch.autocast(next(model.parameters()).device.type, torch.bfloat16, enabled=bf16):
        x = torch.cat([ddpm_sample(model, abar, gens[i:i + batch_size], None if labels is None else labels[i:i + batch_size],
                                   cfg_scale, stride=stride)[0].float() for i in range(0, len(gens), batch_size)])
    return fid_lite(real, x, over_ranks=world.distributed), x


def accuracy(samples: torch.Tensor, labels: torch.Tensor, world: World = World()) -> float:
    """Share of samples the shipped classifier reads as their intended digit (over all ranks' samples:
    each rank passes its own and the labels of all)."""
    labels = labels[world.share(len(labels))]
    hits = (classify(samples, load_classifier()[0]) == labels).float()
    counts = sum_over_ranks(torch.stack([hits.sum(), torch.tensor(float(len(hits)))]))
    return float(counts[0] / counts[1])


def measure(kind: str, model, seed: int = 0, n: int = 1000, stride: int = 10, world: World = World(),
            bf16: bool = False) -> dict[str, float]:
    """What a checkpoint records. denoiser: PSNR of D(x + 0.5 eps) on n test digits; time, class:
    FID-lite of n samples (every stride-th timestep; the UNet in bf16 autocast with ``bf16``), split over
    ranks; class: also the accuracy at cfg_scale 5."""
    if kind == "denoiser":
        clean = test_digits(n)[0]
        z = clean + 0.5 * randn((1, 28, 28), generators(seed, "measure/denoiser", n))
        with torch.inference_mode():
            x = model(z.to(next(model.parameters()).device)).cpu()
            return {"psnr_sigma0.5": psnr(x.clamp(0, 1) * 2 - 1, clean * 2 - 1), "psnr_digits": n}
    if kind == "class" and n % 10:
        raise BadValue(f"class: {n} samples cannot hold every digit equally often; ask for a multiple of 10")
    labels = torch.arange(10).repeat(n // 10) if kind == "class" else None
    fid, x = sample_fid(model, generators(seed, f"measure/{kind}", n), labels, stride=stride, world=world, bf16=bf16)
    out = {"fid_lite": fid, "fid_samples": n, "fid_stride": stride, "fid_bf16": bf16}
    if labels is not None:
        out["accuracy_cfg5"] = accuracy(x, labels, world)
    return out
