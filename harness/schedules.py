"""Noise schedules as float64 CPU tensors, and the course's strided timesteps."""

from __future__ import annotations

import math

import torch


def cosine_alphas_cumprod(num_train_timesteps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """DeepFloyd IF's schedule (Nichol & Dhariwal's cosine, diffusers' ``squaredcos_cap_v2``).

    f(t) = cos^2(((t/T + 0.008) / 1.008) * pi/2),  beta_t = min(1 - f(t+1)/f(t), max_beta),
    abar_t = prod_{s<=t} (1 - beta_s).
    """
    def f(t: float) -> float:
        return math.cos((t / num_train_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = torch.tensor(
        [min(1 - f(i + 1) / f(i), max_beta) for i in range(num_train_timesteps)], dtype=torch.float64
    )
    return torch.cumprod(1 - betas, dim=0)


def linear_alphas_cumprod(num_train_timesteps: int = 300, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Part B's schedule: beta_t = linspace(beta_start, beta_end, T), abar_t = prod_{s<=t} (1 - beta_s)."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def strided_timesteps(start: int = 990, stride: int = 30) -> list[int]:
    """The course's list: start, start - stride, ..., ending with 0 (appended if the stride skips it).

    strided_timesteps(990, 30) == [990, 960, ..., 30, 0] (34 values).
    """
    if stride <= 0 or start < 0:
        raise ValueError(f"need start >= 0 and stride > 0, got start={start}, stride={stride}")
    steps = list(range(start, -1, -stride))
    if steps[-1] != 0:
        steps.append(0)
    return steps
