"""Guides: turn one batch x_t at timestep t into one noise estimate.

Each guide stacks all of its branches (conditional, unconditional, views, prompts) into ONE batched
denoiser call per step, so a step costs one UNet call whatever the guide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from harness.denoisers.base import Denoiser, NoiseEstimate
from harness.diffusion import cfg
from harness.filters import low_pass


def _call(denoiser: Denoiser, xs: Sequence[torch.Tensor], t: int, conds: Sequence[torch.Tensor]) -> list[NoiseEstimate]:
    """One denoiser call on the concatenated branches; returns one estimate per branch."""
    x = torch.cat(list(xs))
    tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    est = denoiser(x, tt, torch.cat(list(conds)))
    n = len(xs)
    eps = est.eps.chunk(n)
    v = est.v.chunk(n) if est.v is not None else (None,) * n
    return [NoiseEstimate(e, vv) for e, vv in zip(eps, v)]


@dataclass
class Plain:
    """eps = eps(x_t, t, c): one conditional branch, no guidance."""

    cond: torch.Tensor

    def __call__(self, denoiser: Denoiser, x_t: torch.Tensor, t: int) -> NoiseEstimate:
        return _call(denoiser, [x_t], t, [self.cond])[0]


@dataclass
class CFG:
    """Classifier-free guidance: eps = eps_u + cfg_scale (eps_c - eps_u); the variance comes from the
    conditional branch (the course keeps the conditional model's predicted variance)."""

    cond: torch.Tensor
    uncond: torch.Tensor
    cfg_scale: float = 7.0

    def __call__(self, denoiser: Denoiser, x_t: torch.Tensor, t: int) -> NoiseEstimate:
        c, u = _call(denoiser, [x_t, x_t], t, [self.cond, self.uncond])
        return NoiseEstimate(cfg(c.eps, u.eps, self.cfg_scale), c.v)


@dataclass(frozen=True)
class View:
    """An invertible image transform for visual anagrams: ``apply`` and its inverse ``invert``."""

    name: str
    apply: Callable[[torch.Tensor], torch.Tensor]
    invert: Callable[[torch.Tensor], torch.Tensor]


VIEWS = {
    "identity": View("identity", lambda x: x, lambda x: x),
    "flip": View("flip", lambda x: x.flip(-2), lambda x: x.flip(-2)),  # upside down
    "rot90": View("rot90", lambda x: x.rot90(1, (-2, -1)), lambda x: x.rot90(-1, (-2, -1))),
    "rot180": View("rot180", lambda x: x.rot90(2, (-2, -1)), lambda x: x.rot90(-2, (-2, -1))),
}


@dataclass
class Anagram:
    """Visual anagrams (1.8): eps = mean_i invert_i(CFG(eps(apply_i(x_t), t, c_i))) over the views,
    with CFG inside each branch; the learned variance is averaged the same way."""

    views: Sequence[View]
    conds: Sequence[torch.Tensor]
    uncond: torch.Tensor
    cfg_scale: float = 7.0

    def __call__(self, denoiser: Denoiser, x_t: torch.Tensor, t: int) -> NoiseEstimate:
        xs = [view.apply(x_t) for view in self.views]
        ests = _call(denoiser, xs + xs, t, list(self.conds) + [self.uncond] * len(xs))
        n = len(xs)
        eps = [view.invert(cfg(c.eps, u.eps, self.cfg_scale)) for view, c, u in zip(self.views, ests[:n], ests[n:])]
        v = None
        if ests[0].v is not None:
            v = torch.stack([view.invert(c.v) for view, c in zip(self.views, ests[:n])]).mean(0)
        return NoiseEstimate(torch.stack(eps).mean(0), v)


@dataclass
class Hybrid:
    """Hybrid images (1.9): eps = low_pass(eps_1) + high_pass(eps_2), each eps_i a CFG estimate.

    shared_uncond=True (writeup 2) computes eps_u once: eps = eps_u + g (low(c_1) + high(c_2) - eps_u),
    three branches instead of four. Since low + high is the identity, it equals the separate form
    low(eps_u + g(c_1 - eps_u)) + high(eps_u + g(c_2 - eps_u)) exactly in exact arithmetic.
    The learned variance is the mean of the two conditional branches' (a filtered v could leave [-1, 1]).
    """

    cond_low: torch.Tensor
    cond_high: torch.Tensor
    uncond: torch.Tensor
    cfg_scale: float = 7.0
    kernel_size: int = 33
    sigma: float = 2.0
    shared_uncond: bool = True

    def _combine(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """low_pass(low) + high_pass(high) = high + G * (low - high): the blur is linear, so one blur a step."""
        return high + low_pass(low - high, self.kernel_size, self.sigma)

    def __call__(self, denoiser: Denoiser, x_t: torch.Tensor, t: int) -> NoiseEstimate:
        if self.shared_uncond:
            c1, c2, u = _call(denoiser, [x_t] * 3, t, [self.cond_low, self.cond_high, self.uncond])
            eps = cfg(self._combine(c1.eps, c2.eps), u.eps, self.cfg_scale)
        else:
            c1, u1, c2, u2 = _call(denoiser, [x_t] * 4, t, [self.cond_low, self.uncond, self.cond_high, self.uncond])
            eps = self._combine(cfg(c1.eps, u1.eps, self.cfg_scale), cfg(c2.eps, u2.eps, self.cfg_scale))
        v = None if c1.v is None else (c1.v + c2.v) / 2
        return NoiseEstimate(eps, v)
