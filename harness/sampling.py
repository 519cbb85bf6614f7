"""The course's iterative denoising loop (1.4), sampling from pure noise (1.5, 1.6), and flow matching's
Euler loop (Part B, Algorithms B.2 and B.4).

x is float32 throughout; the denoiser may run in fp16. Every noise draw comes from one generator per
image (`harness.seeding.randn`), so an image's result does not depend on what else is in the batch.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from harness import finite
from harness.denoisers.base import Denoiser
from harness.diffusion import step_schedule, strided_step
from harness.flow import euler_step
from harness.seeding import randn

AfterStep = Callable[[torch.Tensor, int, int], torch.Tensor]  # (x_t', i, t') -> x_t'


def iterative_denoise(
    denoiser: Denoiser,
    x: torch.Tensor,
    timesteps: Sequence[int],
    i_start: int,
    guide: Callable,
    generators: Sequence[torch.Generator],
    keep: Sequence[int] = (),
    after_step: AfterStep | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Denoise x = x_{timesteps[i_start]} down to timesteps[-1] with the strided DDPM step:

    for i in i_start .. len(timesteps) - 2:  t, t' = timesteps[i], timesteps[i + 1];
        eps, v = guide(x_t, t);  x_t' = step_mean(x_t, x0) + sigma_{t->t'} z,  z ~ N(0, I) per image,
    and z = 0 on a step to t' = -1 (abar = 1: x_0 itself, Part B's last step; Part A's lists end at 0).

    keep: timesteps t whose x_t to return (the writeup's intermediates at 690, 540, 390, 240, 90).
    after_step(x_t', i, t'): a hook run after each step (inpainting re-imposes the known region there).
    Inside `finite.watching()` (every case) each step's x_t' is watched for NaN/Inf without a host read.
    Returns the clean image (x at timesteps[-1]) and {t: x_t} for t in keep.
    """
    if not 0 <= i_start < len(timesteps):
        raise ValueError(f"i_start={i_start} is outside the {len(timesteps)} timesteps")
    if len(generators) != x.shape[0]:
        raise ValueError(f"need one generator per image: {len(generators)} generators, {x.shape[0]} images")
    abar = denoiser.alphas_cumprod
    x = x.float()
    kept: dict[int, torch.Tensor] = {}
    steps = range(i_start, len(timesteps) - 1)
    coefs = dict(zip(steps, step_schedule(abar, timesteps[i_start:-1], timesteps[i_start + 1:], x)))
    watch = finite.current()
    if watch is not None:
        watch.start_loop()
    for i in tqdm(steps, desc="iterative_denoise", disable=not progress, leave=False):
        t, t_prev = timesteps[i], timesteps[i + 1]
        if t in keep:
            kept[t] = x.clone()
        est = guide(denoiser, x, t)
        noise = randn(tuple(x.shape[1:]), generators, x.device) if t_prev >= 0 else torch.zeros_like(x)
        x, _ = strided_step(x, est.eps.float(), coefs[i], noise, denoiser.variance_type,
                            None if est.v is None else est.v.float(), denoiser.x0_clip)
        if after_step is not None:
            x = after_step(x, i + 1, t_prev)
        if watch is not None:
            watch.step(x, i, t_prev)
    if timesteps[-1] in keep:
        kept[timesteps[-1]] = x.clone()
    return x, kept


def sample(
    denoiser: Denoiser,
    timesteps: Sequence[int],
    guide: Callable,
    generators: Sequence[torch.Generator],
    progress: bool = False,
) -> torch.Tensor:
    """Sampling from pure noise (1.5): x_{timesteps[0]} ~ N(0, I) per image, then iterative_denoise from i_start=0."""
    x = randn(denoiser.image_shape, generators, denoiser.device)
    return iterative_denoise(denoiser, x, timesteps, 0, guide, generators, progress=progress)[0]


def euler(
    velocity: Callable,
    x: torch.Tensor,
    num_ts: int,
    guide: Callable,
    keep: Sequence[int] = (),
    progress: bool = False,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Integrate a velocity field from x = x_0 (t = 0) to t = 1 in num_ts = T Euler steps:

    for i in 0 .. T-1:  u = guide(velocity, x, i);  x <- x + (1/T) u   (`harness.flow.euler_step`),
    where ``velocity`` (a Denoiser's call, ``image_shape`` and ``device``) takes the step index i (it
    evaluates u at t_i = i / T, `harness.flow.step_time`) and its estimate's ``eps`` holds the velocity, so
    the guides combine velocities as they combine noise.

    keep: step indices i whose x (at t_i) to return; T returns the result. Inside `finite.watching()` each
    step's x is watched for NaN/Inf without a host read (a bad step is named by the index it stepped to,
    i + 1). Returns (x at t = 1, {i: x at t_i} for i in keep).
    """
    x = x.float()
    kept: dict[int, torch.Tensor] = {}
    watch = finite.current()
    if watch is not None:
        watch.start_loop()
    for i in tqdm(range(num_ts), desc="euler", disable=not progress, leave=False):
        if i in keep:
            kept[i] = x.clone()
        x = euler_step(x, guide(velocity, x, i).eps.float(), num_ts)
        if watch is not None:
            watch.step(x, i, i + 1)
    if num_ts in keep:
        kept[num_ts] = x.clone()
    return x, kept


def euler_sample(
    velocity: Callable,
    num_ts: int,
    guide: Callable,
    generators: Sequence[torch.Generator],
    keep: Sequence[int] = (),
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Flow matching's sampling from pure noise: x_0 ~ N(0, I) per image, then `euler`."""
    return euler(velocity, randn(velocity.image_shape, generators, velocity.device), num_ts, guide, keep)
