"""An analytic denoiser for testing samplers: the data is a point mass at a prompt's pattern.

For data x0 = mu(c), the exact noise estimate is eps = (x_t - sqrt(abar_t) mu) / sqrt(1 - abar_t), so
estimate_x0 returns mu exactly and every correct sampler must end at mu (up to the last step's noise).
"""

from __future__ import annotations

import torch

from harness.denoisers.backend import DenoiserBackend
from harness.denoisers.base import NoiseEstimate
from harness.schedules import cosine_alphas_cumprod


class AnalyticDenoiser:
    name = "analytic"
    variance_type = "fixed_small"
    x0_clip = None
    data_range = (-1.0, 1.0)
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, patterns: dict[str | None, torch.Tensor], size: int = 16):
        self.alphas_cumprod = cosine_alphas_cumprod()
        self.image_shape = (3, size, size)
        self.prompts = list(patterns)
        self.patterns = torch.stack([patterns[p] for p in self.prompts])
        self.calls: list[int] = []  # batch size of each call

    def condition(self, prompts):
        return torch.tensor([self.prompts.index(p or None) for p in prompts])

    def __call__(self, x_t, t, cond):
        self.calls.append(x_t.shape[0])
        abar = self.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
        mu = self.patterns[cond]
        return NoiseEstimate((x_t - abar.sqrt() * mu) / (1 - abar).sqrt())


def patterns(size: int = 16) -> dict[str | None, torch.Tensor]:
    """Three distinct smooth-ish patterns in [-1, 1], one per prompt, zeros for the null prompt."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    return {
        None: torch.zeros(3, size, size),
        "a": (yy * 0.8).expand(3, size, size).clone(),
        "b": (xx * 0.5).expand(3, size, size).clone(),
        "c": torch.stack([xx * yy, -yy, xx]) * 0.6,
    }


class ToyDenoiser(AnalyticDenoiser):
    """Data: a point mass at one of three smooth patterns, picked by the prompt's length; the null prompt's
    pattern is zero (any prompt a section sends is understood)."""

    def condition(self, prompts):
        return torch.tensor([1 + len(p) % 3 if p else 0 for p in prompts])


class ToyBackend(DenoiserBackend):
    """The whole backend: a denoiser; A0's text-to-image, no judge and no upsampler come from DenoiserBackend."""

    name = "toy"
    denoiser_class = ToyDenoiser

    def __init__(self, device: str):
        self.device, self.denoiser = device, self.denoiser_class(patterns(64), size=64)


class AnalyticFlow(torch.nn.Module):
    """Flow matching's exact velocity when the data is a point mass at a pattern mu: x_t = (1 - t) x_0 + t mu
    gives x_0 = (x_t - t mu) / (1 - t) and u(x_t, t) = mu - x_0 = (mu - x_t) / (1 - t). Time-conditioned
    (no c): mu = patterns[0]; class-conditioned: mu = sum_k c_k patterns[k], 0 for the zero class.

    Euler with steps 1/T at t_i = i / T follows the straight line exactly, x at t_i = (1 - t_i) x_0 + t_i mu,
    ending at mu; under CFG u_u + g (u_c - u_u) is the exact velocity towards mu_u + g (mu_c - mu_u).
    Records the t of every call."""

    def __init__(self, patterns: torch.Tensor):
        super().__init__()
        self.patterns = torch.nn.Parameter(patterns, requires_grad=False)
        self.times: list[torch.Tensor] = []

    def target(self, c: torch.Tensor | None) -> torch.Tensor:
        """mu for each row of c (one-hot or zero rows), or patterns[0] without c."""
        if c is None:
            return self.patterns[:1]
        return torch.einsum("nk,kchw->nchw", c.to(self.patterns.dtype), self.patterns)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        self.times.append(t.clone())
        return (self.target(c) - x) / (1 - t.reshape(-1, 1, 1, 1))


def digit_patterns(size: int = 28) -> torch.Tensor:
    """Ten distinct smooth patterns (10, 1, size, size) in [0.1, 0.9], one per digit."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin(torch.pi * (k + 1) * (xx + 0.5 * yy) / 4) for k in range(10)])[:, None]
