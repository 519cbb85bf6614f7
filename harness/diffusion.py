"""The course's equations as pure tensor functions: no model, no I/O, no randomness of their own.

Notation: abar_t = alphas_cumprod[t]; a strided step goes from t to t' < t (t' = -1 means abar = 1).
Noise is always passed in by the caller (drawn from explicit generators), so every function here is
deterministic.
"""

from __future__ import annotations

import torch

from harness.denoisers.base import VarianceType


def abar_at(alphas_cumprod: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
    """abar_t broadcast to ``like`` (B, ...); t is an int or a (B,) tensor; t < 0 gives abar = 1."""
    t = torch.as_tensor(t, dtype=torch.long).reshape(-1)
    abar = torch.where(t >= 0, alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=alphas_cumprod.dtype))
    return abar.to(like.device, torch.float32).reshape(-1, *([1] * (like.dim() - 1)))


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
    abar_t = abar_at(alphas_cumprod, t, x_t)
    abar_prev = abar_at(alphas_cumprod, t_prev, x_t)
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    return abar_prev.sqrt() * beta / (1 - abar_t) * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar_t) * x_t


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
    abar_t = abar_at(alphas_cumprod, t, like)
    abar_prev = abar_at(alphas_cumprod, t_prev, like)
    beta = 1 - abar_t / abar_prev
    log_beta_tilde = torch.log(((1 - abar_prev) / (1 - abar_t) * beta).clamp(min=1e-20))
    if variance_type == "fixed_small":
        return log_beta_tilde
    if variance_type == "fixed_large":
        return torch.log(beta)
    if variance_type == "learned_range":
        if v is None:
            raise ValueError("learned_range variance needs the model's variance output v")
        frac = (v + 1) / 2
        return frac * torch.log(beta) + (1 - frac) * log_beta_tilde
    raise ValueError(f"unknown variance_type {variance_type!r}; valid: learned_range, fixed_large, fixed_small")


def ddpm_step(
    x_t: torch.Tensor, eps: torch.Tensor, t, t_prev, alphas_cumprod: torch.Tensor, noise: torch.Tensor,
    variance_type: VarianceType = "fixed_small", v: torch.Tensor | None = None, x0_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One strided step: x0 = estimate_x0 (clamped to +-x0_clip if given), then
    x_t' = step_mean(x_t, x0) + exp(log_var / 2) * noise.  Returns (x_t', x0)."""
    x0 = estimate_x0(x_t, eps, t, alphas_cumprod)
    if x0_clip is not None:
        x0 = x0.clamp(-x0_clip, x0_clip)
    mean = step_mean(x_t, x0, t, t_prev, alphas_cumprod)
    log_var = step_log_variance(t, t_prev, alphas_cumprod, variance_type, x_t, v)
    return mean + torch.exp(0.5 * log_var) * noise, x0


def cfg(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """Classifier-free guidance (eq. A.4): eps = eps_u + gamma (eps_c - eps_u)."""
    return eps_uncond + cfg_scale * (eps_cond - eps_uncond)
