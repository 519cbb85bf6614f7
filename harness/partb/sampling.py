"""DDPM ancestral sampling for the Part B UNets (Algorithm 2 of the course, and a strided subset), on the
course's one loop, `harness.sampling.iterative_denoise`.

x_T ~ N(0, I); for t = T-1 .. 0 (or a strided subset, t' the next one, -1 after 0):
    eps = eps(x_t, t/T[, c])   (class: eps_u + gamma (eps_c - eps_u), one batched call: the CFG guide)
    x_t' = sqrt(abar_t') beta/(1 - abar_t) x0 + sqrt(alpha)(1 - abar_t')/(1 - abar_t) x_t + sqrt(beta) z,
with beta = 1 - abar_t / abar_t' and z = 0 on the last step (`harness.diffusion.strided_step`).
Images are in [0, 1] as the course trains them; one generator per image.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from harness.denoisers.base import NoiseEstimate, VarianceType
from harness.devices import to_device
from harness.guides import CFG, Plain
from harness.sampling import iterative_denoise
from harness.seeding import randn


class UNetDenoiser:
    """A Part B UNet behind the `Denoiser` interface: eps(x_t, t/T) for the time-conditioned UNet, and
    eps(x_t, t/T, c) for the class-conditioned one, whose conditions are one-hot rows (B, 10), a zero row
    being the unconditional branch it learned with p_uncond. No learned variance: ``variance_type`` is
    fixed_large (beta_t, Algorithm 2) or fixed_small (the posterior variance); x0 is not clipped."""

    name = "partb-unet"
    x0_clip = None
    image_shape = (1, 28, 28)
    data_range = (0.0, 1.0)
    dtype = torch.float32

    def __init__(self, model: torch.nn.Module, alphas_cumprod: torch.Tensor, class_conditioned: bool,
                 variance_type: VarianceType = "fixed_small"):
        self.model, self.alphas_cumprod, self.class_conditioned = model.eval(), alphas_cumprod, class_conditioned
        self.variance_type, self.T = variance_type, len(alphas_cumprod)
        self.device = next(model.parameters()).device

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> NoiseEstimate:
        t_in = t.to(self.device, torch.float32) / self.T
        x_t = x_t.to(self.device)
        eps = self.model(x_t, t_in, cond.to(self.device)) if self.class_conditioned else self.model(x_t, t_in)
        return NoiseEstimate(eps.float())


def partb_timesteps(T: int = 300, stride: int = 1) -> list[int]:
    """T-1, T-1-stride, ..., 0 (0 appended if the stride skips it)."""
    ts = list(range(T - 1, -1, -stride))
    return ts if ts[-1] == 0 else ts + [0]


@torch.inference_mode()
def ddpm_sample(model: torch.nn.Module, alphas_cumprod: torch.Tensor, generators: Sequence[torch.Generator],
                labels: torch.Tensor | None = None, cfg_scale: float = 5.0, stride: int = 1,
                keep_every: int = 0, variance_type: VarianceType | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
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
              keep_every: int = 0, variance_type: VarianceType | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`ddpm_sample`'s loop, its results left on the model's device (no host synchronisation): the
    UNet as a `UNetDenoiser`, a Plain (time) or CFG (class) guide, and `iterative_denoise` from pure noise
    over the timesteps and -1 (the last step gives x_0 with z = 0)."""
    den = UNetDenoiser(model, alphas_cumprod, labels is not None,
                       variance_type or ("fixed_large" if stride == 1 else "fixed_small"))
    gens = list(generators)
    if labels is None:
        guide = Plain(torch.zeros(len(gens), 0, device=den.device))
    else:
        onehot = to_device(F.one_hot(labels, 10).float(), den.device)  # one_hot on CPU labels
        guide = CFG(onehot, torch.zeros_like(onehot), cfg_scale)
    timesteps = partb_timesteps(len(alphas_cumprod), stride) + [-1]
    after = timesteps[1:]
    keep = [t for i, t in enumerate(after) if keep_every and (i % keep_every == 0 or t < 0)]
    x, kept = iterative_denoise(den, randn(den.image_shape, gens, den.device), timesteps, 0, guide, gens, keep=keep)
    return x.clamp(0, 1), [kept[t].clamp(0, 1) for t in keep]
