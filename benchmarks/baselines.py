"""What the harness's loops are measured against, each doing the same work another way:

- `unet_loop`: the UNet calls of a sampling loop and nothing else (the limit of `efficiency`; for an Euler
  loop of T steps, its step indices 0 .. T as the timesteps);
- `diffusers_cfg_loop`: the same strided CFG sampling with diffusers' `DDPMScheduler.step` doing the update;
- `Counting(split=n)`: every guide branch as its own UNet call (what batching the branches buys);
- `Stub`: a denoiser that costs nothing, so a loop timed with it is the loop alone;
- `naive_steps`: the textbook training loop.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import DataLoader, TensorDataset

from harness.denoisers.base import NoiseEstimate
from harness.partb.train import Trainer, loss_fn


class Counting:
    """Wraps a denoiser: counts calls and rows; with ``split`` > 1 it makes ``split`` separate calls
    per step instead of one batched call (the naive loop that batching is measured against)."""

    def __init__(self, denoiser, split: int = 1):
        self.inner, self.split, self.calls, self.rows = denoiser, split, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, t, cond) -> NoiseEstimate:
        parts = [self.inner(xs, ts, cs) for xs, ts, cs in zip(x.chunk(self.split), t.chunk(self.split), cond.chunk(self.split))]
        self.calls += len(parts)
        self.rows += x.shape[0]
        v = None if parts[0].v is None else torch.cat([p.v for p in parts])
        return NoiseEstimate(torch.cat([p.eps for p in parts]), v)


class Stub:
    """The denoiser's interface with a UNet that costs nothing: eps = x / 2 (and v = 0 where the variance is
    learned). A loop timed with it is the loop's own cost per step."""

    def __init__(self, denoiser):
        self.inner = denoiser

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, t, cond) -> NoiseEstimate:
        learned = getattr(self.inner, "variance_type", None) == "learned_range"  # a velocity model has none
        return NoiseEstimate(x * 0.5, torch.zeros_like(x) if learned else None)


def unet_loop(denoiser, timesteps: Sequence[int], rows: int, cond: torch.Tensor | None = None) -> None:
    """One batched UNet call of ``rows`` rows per step of ``timesteps``, on a fixed input: what a sampling
    loop would cost if everything around its UNet calls were free. ``cond``: the rows' condition (default:
    the denoiser's null prompt)."""
    x = torch.randn(rows, *denoiser.image_shape, generator=torch.Generator().manual_seed(0)).to(denoiser.device)
    cond = torch.cat([denoiser.condition([None])] * rows) if cond is None else cond
    for t in timesteps[:-1]:
        denoiser(x, torch.full((rows,), t, device=x.device), cond)


def diffusers_scheduler(denoiser):
    """diffusers' DDPMScheduler with the denoiser's schedule, variance and x0 clipping (the course's loop):
    ``trained_betas`` from its alphas_cumprod, ``clip_sample`` where it declares ``x0_clip``."""
    from diffusers import DDPMScheduler

    abar = denoiser.alphas_cumprod
    betas = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
    return DDPMScheduler(num_train_timesteps=len(abar), trained_betas=betas.tolist(), variance_type=denoiser.variance_type,
                         clip_sample=denoiser.x0_clip is not None, clip_sample_range=denoiser.x0_clip or 1.0)


def diffusers_cfg_loop(denoiser, timesteps: Sequence[int], cond: torch.Tensor, uncond: torch.Tensor, cfg_scale: float,
                       generator: torch.Generator) -> torch.Tensor:
    """Strided CFG sampling (one batched denoiser call per step) with diffusers' ``DDPMScheduler.step``
    doing the update, all noise from ``generator``. For one image and the generator of `sample`'s
    image 0 it draws the same noise as `harness.sampling.sample`, so the two give the same image."""
    sched = diffusers_scheduler(denoiser)
    sched.set_timesteps(timesteps=list(timesteps))
    batch = cond.shape[0]
    x = torch.randn(batch, *denoiser.image_shape, generator=generator).to(denoiser.device)
    conds = torch.cat([cond, uncond])
    for t in timesteps[:-1]:
        est = denoiser(torch.cat([x, x]), torch.full((2 * batch,), t, device=x.device), conds)
        c, u = est.eps.float().chunk(2)
        out = u + cfg_scale * (c - u)
        if est.v is not None:
            out = torch.cat([out, est.v.float().chunk(2)[0]], 1)
        x = sched.step(out, t, x, generator=generator).prev_sample
    return x


def naive_steps(trainer: Trainer, steps: int) -> None:
    """The textbook training loop: a DataLoader collating batches item by item from a CPU Dataset, each
    batch copied to the device, and loss.item() (a host sync) every step."""
    r = trainer.recipe
    data = DataLoader(TensorDataset(trainer.x.cpu(), trainer.y), batch_size=r.batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(0))
    trainer.model.train()
    losses = []
    for i, (x, y) in enumerate(data):
        if i == steps:
            break
        loss = loss_fn(trainer.model, r.kind, x.to(trainer.device), y, r, trainer.gen, trainer.abar)
        trainer.opt.zero_grad()
        loss.backward()
        trainer.opt.step()
        losses.append(loss.item())
