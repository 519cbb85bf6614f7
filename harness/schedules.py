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


def strided_timesteps(start: int = 990, stride: int = 30, num_train_timesteps: int = 1000) -> list[int]:
    """The course's list on IF's 1000-step scale: start, start - stride, ..., ending with 0 (appended if
    the stride skips it), mapped onto a model trained with T = num_train_timesteps steps as
    t -> floor(t T / 1000) (the same fraction of the schedule); steps that collide there are merged.

    strided_timesteps(990, 30) == [990, 960, ..., 30, 0] (34 values);
    strided_timesteps(990, 30, 300) == [297, 288, ..., 9, 0] (34 values: i_start keeps its meaning
    whenever stride >= 1000 / T).
    """
    if stride <= 0 or start < 0 or start >= 1000:
        raise ValueError(f"need 0 <= start < 1000 and stride > 0, got start={start}, stride={stride}")
    steps = list(range(start, -1, -stride))
    if steps[-1] != 0:
        steps.append(0)
    mapped = [course_t(t, num_train_timesteps) for t in steps]
    return [t for i, t in enumerate(mapped) if i == 0 or t != mapped[i - 1]]


def course_t(t: int, num_train_timesteps: int = 1000) -> int:
    """A timestep on the course's 1000-step scale mapped onto T steps: floor(t T / 1000)."""
    return t * num_train_timesteps // 1000
