"""The course's equations as pure tensor functions: no model, no I/O, no randomness of their own.

Notation: abar_t = alphas_cumprod[t]; a strided step goes from t to t' < t (t' = -1 means abar = 1).
Noise is always passed in by the caller (drawn from explicit generators), so every function here is
deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch

from harness.denoisers.base import VarianceType
from harness.devices import to_device


def abar_at(alphas_cumprod: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
    """abar_t broadcast to ``like`` (B, ...); t is an int or a (B,) tensor; t < 0 gives abar = 1."""
    t = torch.as_tensor(t, dtype=torch.long).reshape(-1)
    abar = torch.where(t >= 0, alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=alphas_cumprod.dtype))
    return to_device(abar.to(torch.float32), like.device).reshape(-1, *([1] * (like.dim() - 1)))


def forward(x0: torch.Tensor, t, alphas_cumprod: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The forward process (eq. A.2): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps ~ N(0, I)."""
    abar = abar_at(alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def estimate_x0(x_t: torch.Tensor, eps: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """One-step denoising, the forward process solved for x0: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    abar = abar_at(alphas_cumprod, t, x_t)
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def step_mean(x_t: torch.Tensor, x0: torch.Tensor, t, t_prev, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Mean of the strided DDPM step t -> t' (eq. A.3), with alpha_t = abar_t / abar_t', beta_t = 1 - alpha_t:

    x_t' = sqrt(abar_t') beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_t') / (1 - abar_t) x_t.
    """
    c = step_coefficients(alphas_cumprod, t, t_prev, x_t)
    return c.coef_x0 * x0 + c.coef_xt * x_t


def step_log_variance(
    t, t_prev, alphas_cumprod: torch.Tensor, variance_type: VarianceType, like: torch.Tensor,
    v: torch.Tensor | None = None,
) -> torch.Tensor:
    """log sigma^2 of the strided step t -> t', what diffusers' ``DDPMScheduler._get_variance`` gives once
    ``set_timesteps(timesteps=strided)`` has made t' the previous timestep:

    beta_tilde = (1 - abar_t') / (1 - abar_t) beta_t (clamped at 1e-20);
    fixed_small: log beta_tilde;  fixed_large: log beta_t;
    learned_range: f log beta_t + (1 - f) log beta_tilde with f = (v + 1) / 2 (v is the model's output).
    """
    return _log_variance(step_coefficients(alphas_cumprod, t, t_prev, like), variance_type, v)


def _log_variance(c: "StepCoefficients", variance_type: VarianceType, v: torch.Tensor | None) -> torch.Tensor:
    if variance_type == "fixed_small":
        return c.log_beta_tilde
    if variance_type == "fixed_large":
        return c.log_beta
    if variance_type == "learned_range":
        if v is None:
            raise ValueError("learned_range variance needs the model's variance output v")
        frac = (v + 1) / 2
        return frac * c.log_beta + (1 - frac) * c.log_beta_tilde
    raise ValueError(f"unknown variance_type {variance_type!r}; valid: learned_range, fixed_large, fixed_small")


@dataclass(frozen=True)
class StepCoefficients:
    """The scalars of the strided step t -> t' (float32, (1, 1, 1, 1) for an int t or (B, 1, 1, 1), on the
    sampler's device), computed once per loop so that a step is only tensor arithmetic, with no host work."""

    sqrt_one_minus_abar: torch.Tensor  # sqrt(1 - abar_t)
    sqrt_abar: torch.Tensor  # sqrt(abar_t)
    coef_x0: torch.Tensor  # sqrt(abar_t') beta_t / (1 - abar_t)
    coef_xt: torch.Tensor  # sqrt(alpha_t) (1 - abar_t') / (1 - abar_t)
    log_beta: torch.Tensor  # log beta_t
    log_beta_tilde: torch.Tensor  # log beta_tilde (clamped at 1e-20)


def step_coefficients(alphas_cumprod: torch.Tensor, t, t_prev, like: torch.Tensor) -> StepCoefficients:
    """The scalars of `estimate_x0`, `step_mean` and `step_log_variance` for one (t, t'), by the same
    float32 operations on ``like``'s device, so `strided_step` gives the same bits as `ddpm_step`."""
    abar_t = abar_at(alphas_cumprod, t, like)
    abar_prev = abar_at(alphas_cumprod, t_prev, like)
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    return StepCoefficients(
        sqrt_one_minus_abar=(1 - abar_t).sqrt(), sqrt_abar=abar_t.sqrt(),
        coef_x0=abar_prev.sqrt() * beta / (1 - abar_t), coef_xt=alpha.sqrt() * (1 - abar_prev) / (1 - abar_t),
        log_beta=torch.log(beta), log_beta_tilde=torch.log(((1 - abar_prev) / (1 - abar_t) * beta).clamp(min=1e-20)))


def step_schedule(alphas_cumprod: torch.Tensor, timesteps: Sequence[int], t_prevs: Sequence[int],
                  like: torch.Tensor) -> list[StepCoefficients]:
    """`step_coefficients` of every step (t_i, t'_i) of a loop, from one vectorised computation (elementwise
    float32 operations, so each equals the per-step call bit for bit; tests/test_properties.py checks it)."""
    c = step_coefficients(alphas_cumprod, torch.tensor(list(timesteps)), torch.tensor(list(t_prevs)), like)
    return [StepCoefficients(*(getattr(c, f.name)[i:i + 1] for f in fields(c))) for i in range(len(timesteps))]


def strided_step(
    x_t: torch.Tensor, eps: torch.Tensor, c: StepCoefficients, noise: torch.Tensor,
    variance_type: VarianceType = "fixed_small", v: torch.Tensor | None = None, x0_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`ddpm_step` with precomputed coefficients: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
    x_t' = coef_x0 x0 + coef_xt x_t + exp(log_var / 2) z.  Returns (x_t', x0)."""
    x0 = (x_t - c.sqrt_one_minus_abar * eps) / c.sqrt_abar
    if x0_clip is not None:
        x0 = x0.clamp(-x0_clip, x0_clip)
    mean = c.coef_x0 * x0 + c.coef_xt * x_t
    return mean + torch.exp(0.5 * _log_variance(c, variance_type, v)) * noise, x0


def ddpm_step(
    x_t: torch.Tensor, eps: torch.Tensor, t, t_prev, alphas_cumprod: torch.Tensor, noise: torch.Tensor,
    variance_type: VarianceType = "fixed_small", v: torch.Tensor | None = None, x0_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One strided step: x0 = estimate_x0 (clamped to +-x0_clip if given), then
    x_t' = step_mean(x_t, x0) + exp(log_var / 2) * noise.  Returns (x_t', x0)."""
    return strided_step(x_t, eps, step_coefficients(alphas_cumprod, t, t_prev, x_t), noise, variance_type, v, x0_clip)


def cfg(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """Classifier-free guidance (eq. A.4): eps = eps_u + gamma (eps_c - eps_u); flow matching combines
    velocities the same way (Algorithm B.4): u = u_u + gamma (u_c - u_u)."""
    return eps_uncond + cfg_scale * (eps_cond - eps_uncond)
