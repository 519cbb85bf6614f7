"""Sampler throughput over backend, stride, guide (plain = no guidance, CFG gamma 7, anagram, hybrid)
and batch; with the efficiency ratio against the UNet alone and baselines measured in the same run.

efficiency = (UNet calls x time of one UNet call at that batch) / sampler time   (limit 1)
batched_speedup = time with each branch a separate UNet call / time with one batched call
vs_diffusers = time of diffusers' DDPMScheduler.step loop at the same timesteps / our time (CFG)
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import Counting, median_time, peak_memory
from harness.backends import get_backend
from harness.errors import WeightsUnavailable
from harness.guides import CFG, VIEWS, Anagram, Hybrid, Plain
from harness.sampling import sample
from harness.schedules import strided_timesteps
from harness.seeding import generators

BRANCHES = {"plain": 1, "cfg": 2, "anagram": 4, "hybrid": 3}
SLOW = pytest.mark.slow


def make_guide(den, name: str, batch: int):
    c = lambda p: den.condition([p] * batch)  # noqa: E731
    if name == "plain":
        return Plain(c("a high quality photo"))
    if name == "cfg":
        return CFG(c("a high quality photo"), c(None), 7.0)
    if name == "anagram":
        return Anagram([VIEWS["identity"], VIEWS["flip"]], [c("an oil painting of an old man"),
                       c("an oil painting of people around a campfire")], c(None), 7.0)
    return Hybrid(c("a lithograph of a skull"), c("a lithograph of waterfalls"), c(None), 7.0)


@pytest.fixture(scope="module", params=["tiny-if", "mnist", "deepfloyd"])
def backend(request, device):
    try:
        return get_backend(request.param, device)
    except WeightsUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("batch", [1, pytest.param(8, marks=SLOW)])
@pytest.mark.parametrize("guide", list(BRANCHES))
@pytest.mark.parametrize("stride", [30, 15, pytest.param(7, marks=SLOW), pytest.param(1, marks=SLOW)])
def test_sampler(bench, benchmark, backend, device, stride, guide, batch):
    den = Counting(backend.denoiser)
    ts = strided_timesteps(990, stride, len(den.alphas_cumprod))
    g = make_guide(den, guide, batch)
    benchmark.group = f"sampler {backend.name} {guide} batch {batch}"
    with torch.inference_mode():
        x = bench(lambda: sample(den, ts, g, generators(0, "bench", batch)))
    steps = len(ts) - 1
    assert torch.isfinite(x).all() and x.shape[0] == batch
    assert den.calls % steps == 0 and den.rows == den.calls * batch * BRANCHES[guide]  # one batched call per step
    if benchmark.disabled:
        return
    t = benchmark.stats.stats.median
    rows = batch * BRANCHES[guide]
    xr = torch.randn(rows, *backend.denoiser.image_shape, generator=torch.Generator().manual_seed(0)).to(device)
    cond = torch.cat([backend.denoiser.condition([None])] * rows)
    tt = torch.full((rows,), 500, device=device)
    with torch.inference_mode():
        t_call = median_time(lambda: backend.denoiser(xr, tt, cond), device, repeats=5)
        info = {"images_per_s": batch / t, "unet_calls_per_s": steps / t, "efficiency": steps * t_call / t,
                "peak_memory_mib": peak_memory(device)}
        if guide != "plain":
            split = Counting(backend.denoiser, split=BRANCHES[guide])
            info["batched_speedup"] = median_time(
                lambda: sample(split, ts, make_guide(split, guide, batch), generators(0, "bench", batch)), device, 2) / t
        if guide == "cfg":
            info["vs_diffusers"] = median_time(lambda: diffusers_cfg_loop(backend, ts, batch), device, 2) / t
    benchmark.extra_info.update(info)


def diffusers_scheduler(backend):
    """diffusers' DDPMScheduler for the backend's schedule, thresholding and clipping off (the course's loop)."""
    from diffusers import DDPMScheduler

    if hasattr(backend, "stage1"):  # IF: its own scheduler config (cosine, learned_range)
        return DDPMScheduler.from_config(backend.stage1.scheduler.config, thresholding=False)
    den = backend.denoiser  # Part B's linear schedule; the posterior variance, as our strided steps use
    return DDPMScheduler(num_train_timesteps=len(den.alphas_cumprod), beta_schedule="linear", beta_start=1e-4,
                         beta_end=0.02, variance_type=den.variance_type, clip_sample=False)


def diffusers_cfg_loop(backend, ts: list[int], batch: int) -> torch.Tensor:
    """The same strided CFG sampling (one batched denoiser call per step) with diffusers'
    DDPMScheduler.step doing the update."""
    den = backend.denoiser
    sched = diffusers_scheduler(backend)
    sched.set_timesteps(timesteps=ts)
    gen = torch.Generator().manual_seed(0)
    g = make_guide(den, "cfg", batch)
    cond = torch.cat([g.cond, g.uncond])
    x = torch.randn(batch, *den.image_shape, generator=gen).to(den.device)
    for t in ts[:-1]:
        est = den(torch.cat([x, x]), torch.full((2 * batch,), t, device=x.device), cond)
        c, u = est.eps.float().chunk(2)
        out = u + 7.0 * (c - u)
        if est.v is not None:
            out = torch.cat([out, est.v.float().chunk(2)[0]], 1)
        x = sched.step(out, t, x, generator=gen).prev_sample
    return x
