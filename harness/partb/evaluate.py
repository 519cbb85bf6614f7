"""Measurements of a Part B checkpoint: FID-lite of its samples (DDPM, or flow matching's Euler) against
test digits, how often class-conditioned samples are classified as the digit asked for, and the
single-step models' outputs against their targets.

Under torchrun (`harness.partb.distributed`) the samples split across ranks: rank r draws the samples
of seeds r, r + W, ... against the test digits of the same indices, and the FID-lite statistics and
the accuracy counts are summed over ranks, so a 10,000-sample FID-lite is a multi-GPU job.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.errors import BadValue
from harness.metrics import psnr
from harness.partb.distributed import World, sum_over_ranks
from harness.partb.fid import classify, fid_lite, load_classifier
from harness.partb.kinds import CLASS_KINDS, NUM_TS, check_kind
from harness.partb.mnist import load_mnist, to_float
from harness.partb.sampling import ddpm_sample, fm_sample
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
               batch_size: int = BATCH_SIZE, bf16: bool = False, num_ts: int | None = None) -> tuple[float, torch.Tensor]:
    """FID-lite of len(gens) samples against as many test digits, sampled batch_size at a time (`samples`);
    returns (fid, this rank's samples: all of them in one process). ``bf16``: the UNet under bf16 autocast (a
    measurement's speed; the sampler's own arithmetic, the draws and the goldens stay float32)."""
    rows = world.share(len(gens))
    real = test_digits(len(gens))[0][rows]
    gens, labels = gens[rows], None if labels is None else labels[rows]
    with torch.autocast(next(model.parameters()).device.type, torch.bfloat16, enabled=bf16):
        x = torch.cat([samples(model, gens[i:i + batch_size], None if labels is None else labels[i:i + batch_size],
                               cfg_scale, stride, num_ts) for i in range(0, len(gens), batch_size)])
    return fid_lite(real, x, over_ranks=world.distributed), x


def samples(model, gens, labels, cfg_scale: float, stride: int, num_ts: int | None) -> torch.Tensor:
    """float32 samples on the CPU: DDPM at every stride-th timestep, or with num_ts Euler's (flow matching)."""
    if num_ts is None:
        return ddpm_sample(model, linear_alphas_cumprod(300), gens, labels, cfg_scale, stride=stride)[0].float()
    return fm_sample(model, gens, labels, cfg_scale, num_ts)[0].float().cpu()


def accuracy(samples: torch.Tensor, labels: torch.Tensor, world: World = World()) -> float:
    """Share of samples the shipped classifier reads as their intended digit (over all ranks' samples:
    each rank passes its own and the labels of all)."""
    labels = labels[world.share(len(labels))]
    hits = (classify(samples, load_classifier()[0]) == labels).float()
    counts = sum_over_ranks(torch.stack([hits.sum(), torch.tensor(float(len(hits)))]))
    return float(counts[0] / counts[1])


def measure(kind: str, model, seed: int = 0, n: int = 1000, stride: int = 10, world: World = World(),
            bf16: bool = False, num_ts: int | None = None, guidance_scale: float = 5.0) -> dict[str, float]:
    """What a checkpoint records. denoiser: PSNR of D(x + 0.5 eps) on n test digits; pure-noise: MSE of D(eps)
    to the training set's mean image (what MSE learns from pure noise) over n draws; time, class: FID-lite
    of n samples (every stride-th timestep; the UNet in bf16 autocast with ``bf16``), split over ranks;
    fm-time, fm-class: the same with num_ts Euler steps (default the course's); class kinds: also the
    accuracy at guidance_scale."""
    check_kind(model, kind)
    if num_ts is not None and kind not in NUM_TS:
        raise BadValue(f"num_ts {num_ts}: Euler steps are for {' and '.join(NUM_TS)}; {kind} takes none (DDPM "
                       f"samples every stride-th timestep)")
    if kind in ("denoiser", "pure-noise"):
        return _single_step(kind, model, seed, n)
    if kind in CLASS_KINDS and n % 10:
        raise BadValue(f"{kind}: {n} samples cannot hold every digit equally often; ask for a multiple of 10")
    labels = torch.arange(10).repeat(n // 10) if kind in CLASS_KINDS else None
    num_ts = NUM_TS.get(kind) if num_ts is None else num_ts
    fid, x = sample_fid(model, generators(seed, f"measure/{kind}", n), labels, guidance_scale, stride, world, bf16=bf16,
                        num_ts=num_ts)
    out = {"fid_lite": fid, "fid_samples": n, "fid_bf16": bf16} | ({"fid_stride": stride} if num_ts is None else {"num_ts": num_ts})
    if labels is not None:
        out[f"accuracy_cfg{guidance_scale:g}"] = accuracy(x, labels, world)
    return out


@torch.inference_mode()
def _single_step(kind: str, model, seed: int, n: int) -> dict[str, float]:
    """denoiser: PSNR of D(x + 0.5 eps) against x on n test digits; pure-noise: MSE of D(eps) against the
    training set's mean image."""
    eps = randn((1, 28, 28), generators(seed, f"measure/{kind}", n))
    device = next(model.parameters()).device
    if kind == "denoiser":
        clean = test_digits(n)[0]
        x = model((clean + 0.5 * eps).to(device)).cpu()
        return {"psnr_sigma0.5": psnr(x.clamp(0, 1) * 2 - 1, clean * 2 - 1), "psnr_digits": n}
    mean = torch.from_numpy(load_mnist("train")[0].mean(0, dtype=np.float64) / 255).float()
    return {"mse_to_train_mean": float(((model(eps.to(device)).cpu() - mean) ** 2).mean()), "mse_samples": n}
