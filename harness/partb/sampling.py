"""DDPM ancestral sampling for the Part B UNets (Algorithm 2 of the course, and a strided subset).

x_T ~ N(0, I); for t = T-1 .. 0 (or a strided subset, t' the next one, -1 after 0):
    eps = eps(x_t, t/T[, c])   (class: eps_u + gamma (eps_c - eps_u), one batched call)
    x_t' = sqrt(abar_t') beta/(1 - abar_t) x0 + sqrt(alpha)(1 - abar_t')/(1 - abar_t) x_t + sqrt(beta) z,
with beta = 1 - abar_t / abar_t' and z = 0 on the last step (`harness.diffusion.ddpm_step`).
Images are in [0, 1] as the course trains them; one generator per image.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from harness.diffusion import cfg, step_schedule, strided_step
from harness.seeding import randn, to_device


def partb_timesteps(T: int = 300, stride: int = 1) -> list[int]:
    """T-1, T-1-stride, ..., 0 (0 appended if the stride skips it)."""
    ts = list(range(T - 1, -1, -stride))
    return ts if ts[-1] == 0 else ts + [0]


@torch.inference_mode()
def ddpm_sample(model: torch.nn.Module, alphas_cumprod: torch.Tensor, generators: Sequence[torch.Generator],
                labels: torch.Tensor | None = None, cfg_scale: float = 5.0, stride: int = 1,
                keep_every: int = 0, variance_type: str | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Samples (N, 1, 28, 28) clamped to [0, 1] and, if keep_every > 0, every keep_every-th x_t
    (the GIF's frames), on the CPU. labels: digits for the class-conditioned model (None: time-conditioned).

    variance_type None: beta_t (fixed_large, the course's Algorithm 2) at stride 1; on a strided subset
    the posterior variance beta-tilde (fixed_small), because the strided beta injects more noise in the
    last steps than the model removes at t = 0 (speckled backgrounds, measured on the quick checkpoints).
    """
    x, frames = ddpm_loop(model, alphas_cumprod, generators, labels, cfg_scale, stride, keep_every, variance_type)
    return x.cpu(), [f.cpu() for f in frames]


@torch.inference_mode()
def ddpm_loop(model: torch.nn.Module, alphas_cumprod: torch.Tensor, generators: Sequence[torch.Generator],
              labels: torch.Tensor | None = None, cfg_scale: float = 5.0, stride: int = 1,
              keep_every: int = 0, variance_type: str | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`ddpm_sample`'s loop, its results left on the model's device (no host synchronisation)."""
    variance_type = variance_type or ("fixed_large" if stride == 1 else "fixed_small")
    model.eval()
    device = next(model.parameters()).device
    T = len(alphas_cumprod)
    ts = partb_timesteps(T, stride)
    x = randn((1, 28, 28), list(generators), device)
    onehot = None if labels is None else to_device(F.one_hot(labels, 10).float(), device)  # one_hot on CPU labels
    frames = []
    t_prevs = ts[1:] + [-1]
    coefs = step_schedule(alphas_cumprod, ts, t_prevs, x)
    for i, (t, t_prev) in enumerate(zip(ts, t_prevs)):
        t_in = torch.full((x.shape[0],), t / T, device=device)
        if onehot is None:
            eps = model(x, t_in)
        else:
            both = model(torch.cat([x, x]), torch.cat([t_in, t_in]), torch.cat([onehot, torch.zeros_like(onehot)]))
            eps = cfg(*both.chunk(2), cfg_scale)
        noise = randn((1, 28, 28), list(generators), device) if t_prev >= 0 else torch.zeros_like(x)
        x, _ = strided_step(x, eps, coefs[i], noise, variance_type)
        if keep_every and (i % keep_every == 0 or t_prev < 0):
            frames.append(x.clamp(0, 1))
    return x.clamp(0, 1), frames
