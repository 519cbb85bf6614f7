"""DDPM ancestral sampling for the Part B UNets (Algorithm 2 of the course, and a strided subset), on the
course's one loop, `harness.sampling.iterative_denoise`.

x_T ~ N(0, I); for t = T-1 .. 0 (or a strided subset, t' the next one, -1 after 0):
    eps = eps(x_t, t/T[, c])   (class: eps_u + gamma (eps_c - eps_u), one batched call: the CFG guide)
    x_t' = sqrt(abar_t') beta/(1 - abar_t) x0 + sqrt(alpha)(1 - abar_t')/(1 - abar_t) x_t + sqrt(beta) z,
with beta = 1 - abar_t / abar_t' and z = 0 on the last step (`harness.diffusion.strided_step`).
Images are in [0, 1] as the course trains them; one generator per image.

Flow matching (`fm_sample`, Algorithms B.2 and B.4): x_0 ~ N(0, I); for i = 0 .. T-1 (T = num_ts):
    u = u(x, i/T[, c])   (class: u_u + gamma (u_c - u_u), the same CFG guide);   x <- x + (1/T) u,
on the course's Euler loop, `harness.sampling.euler`.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Sequence

import torch
import torch.nn.functional as F

from harness.denoisers.base import NoiseEstimate, VarianceType
from harness.devices import to_device
from harness.errors import BadValue
from harness.flow import step_time
from harness.guides import CFG, Plain
from harness.partb.kinds import NUM_TS, check_kind
from harness.sampling import euler_sample, iterative_denoise
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
    guide = class_guide(labels, cfg_scale, len(gens), den.device)
    timesteps = partb_timesteps(len(alphas_cumprod), stride) + [-1]
    after = timesteps[1:]
    keep = [t for i, t in enumerate(after) if keep_every and (i % keep_every == 0 or t < 0)]
    x, kept = iterative_denoise(den, randn(den.image_shape, gens, den.device), timesteps, 0, guide, gens, keep=keep)
    return x.clamp(0, 1), [kept[t].clamp(0, 1) for t in keep]


def class_guide(labels: torch.Tensor | None, cfg_scale: float, n: int, device: torch.device) -> Plain | CFG:
    """Plain with an empty condition (time-conditioned: labels None), else CFG of the one-hot digits
    against the zero class."""
    if labels is None:
        return Plain(torch.zeros(n, 0, device=device))
    onehot = to_device(F.one_hot(labels, 10).float(), device)  # one_hot on CPU labels
    return CFG(onehot, torch.zeros_like(onehot), cfg_scale)


class VelocityUNet:
    """A flow-matching UNet behind the guides' interface: called with Euler's step index i, it gives the
    velocity u(x, t_i[, c]) at t_i = i / num_ts in the estimate's ``eps`` (no variance)."""

    image_shape = (1, 28, 28)

    def __init__(self, model: torch.nn.Module, num_ts: int, class_conditioned: bool):
        self.model, self.num_ts, self.class_conditioned = model.eval(), num_ts, class_conditioned
        self.device = next(model.parameters()).device

    def __call__(self, x: torch.Tensor, i: torch.Tensor, cond: torch.Tensor) -> NoiseEstimate:
        t = step_time(i, self.num_ts).to(self.device)
        u = self.model(x, t, cond.to(self.device)) if self.class_conditioned else self.model(x, t)
        return NoiseEstimate(u.float())


@torch.inference_mode()
def fm_sample(model: torch.nn.Module, generators: Sequence[torch.Generator], labels: torch.Tensor | None = None,
              guidance_scale: float = 5.0, num_ts: int | None = None,
              keep: Sequence[int] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The course's time_fm_sample (labels None) and class_fm_sample: Euler from pure noise in num_ts steps
    (default: 50 time-conditioned, 300 class-conditioned, the notebook's), CFG with guidance_scale against
    the zero class. Returns the samples clamped to [0, 1] (the course clamps for display only) and
    {i: x at t_i} for i in keep, on the model's device (no host synchronisation)."""
    kind = "fm-time" if labels is None else "fm-class"
    num_ts = NUM_TS[kind] if num_ts is None else num_ts
    check_flow(model, kind, num_ts, guidance_scale)
    velocity = VelocityUNet(model, num_ts, labels is not None)
    gens = list(generators)
    x, kept = euler_sample(velocity, num_ts, class_guide(labels, guidance_scale, len(gens), velocity.device), gens, keep)
    return x.clamp(0, 1), kept


def check_flow(model: torch.nn.Module, kind: str, num_ts: int, guidance_scale: float) -> None:
    """BadValue (one line naming the fix) for a model built for another kind, num_ts not a positive count or a
    guidance scale that is not a finite number."""
    check_kind(model, kind)
    if isinstance(num_ts, bool) or not isinstance(num_ts, int) or num_ts < 1:
        raise BadValue(f"num_ts {num_ts!r}: Euler needs a positive count of steps (the course: "
                       f"{NUM_TS['fm-time']} time-conditioned, {NUM_TS['fm-class']} class-conditioned)")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, Real) or not math.isfinite(guidance_scale):
        raise BadValue(f"guidance scale {guidance_scale!r} is not a number: pass one such as 5.0 (the course's gamma)")
