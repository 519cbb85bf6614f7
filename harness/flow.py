"""Flow matching's equations (Part B as the course teaches it since 2025) as pure tensor functions: no
model, no I/O, no randomness of their own (the caller passes every draw).

Notation: x_0 ~ N(0, I) is noise, x_1 a clean image, t in [0, 1] with t = 0 noise and t = 1 data; T = num_ts
Euler steps. Classifier-free guidance combines velocities as Part A combines noise estimates,
u = u_uncond + gamma (u_cond - u_uncond) (Algorithm B.4): `harness.diffusion.cfg`, through the guides.
"""

from __future__ import annotations

import torch


def interpolate(x_0: torch.Tensor, x_1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The interpolation (eq. B.3): x_t = (1 - t) x_0 + t x_1, t (B,) in [0, 1] broadcast over each image."""
    t = t.reshape(-1, *([1] * (x_1.dim() - 1))).to(x_1.dtype)
    return (1 - t) * x_0 + t * x_1


def velocity_target(x_0: torch.Tensor, x_1: torch.Tensor) -> torch.Tensor:
    """The target the UNet regresses (eq. B.4): u(x_t, t) = d/dt x_t = x_1 - x_0."""
    return x_1 - x_0


def step_time(i: torch.Tensor, num_ts: int) -> torch.Tensor:
    """The time of Euler step i (Algorithm B.2): t_i = i / T for i = 0 .. T-1, in [0, 1)."""
    return i.to(torch.float32) / num_ts


def euler_step(x: torch.Tensor, u: torch.Tensor, num_ts: int) -> torch.Tensor:
    """One Euler step of Algorithm B.2: x <- x + (1/T) u, u the velocity at t_i = i / T."""
    return x + u / num_ts
