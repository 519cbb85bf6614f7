"""Sampler throughput over backend, stride, guide (plain = no guidance, CFG gamma 7, anagram, hybrid)
and batch, with ratios against baselines timed in the same rounds (`bench`, `paired_ratio`):

efficiency = time of the UNet calls alone (`unet_loop`) / sampler time   (limit 1)
batched_speedup = time with each branch a separate UNet call / time with one batched call
vs_diffusers = time of diffusers' DDPMScheduler.step loop at the same timesteps / our time (CFG)
loop_ms_per_step (and diffusers_loop_ms_per_step): the loop alone, timed with a denoiser that costs nothing
efficiency_loop_only = 1 - loop time / sampler time: the efficiency if the UNet cost the same inside the loop
    as alone; it does not move with the machine's load as much as `efficiency`, whose two timings each
    wander by several percent on a shared 2-core VM
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.baselines import Counting, Stub, diffusers_cfg_loop, unet_loop
from benchmarks.conftest import paired_ratio, peak_memory
from harness.backends import backends_for, get_backend
from harness.errors import BackendUnavailable
from harness.guides import CFG, VIEWS, Anagram, Hybrid, Plain
from harness.sampling import sample
from harness.schedules import strided_timesteps
from harness.sections.registry import get_section
from harness.seeding import generators

BRANCHES = {"plain": 1, "cfg": 2, "anagram": 4, "hybrid": 3}
SLOW = pytest.mark.slow


def make_guide(den, name: str, batch: int):
    """The guide with the writeups' prompts (and, for hybrids, the filter the backend's A1.9 uses)."""
    c = lambda p: den.condition([p] * batch)  # noqa: E731
    if name == "plain":
        return Plain(c("a high quality photo"))
    if name == "cfg":
        return CFG(c("a high quality photo"), c(None), 7.0)
    if name == "anagram":
        return Anagram([VIEWS["identity"], VIEWS["flip"]], [c("an oil painting of an old man"),
                       c("an oil painting of people around a campfire")], c(None), 7.0)
    p = get_section("A1.9").params_for(den.name)
    return Hybrid(c("a lithograph of a skull"), c("a lithograph of waterfalls"), c(None), 7.0, p["kernel_size"], p["sigma"])


@pytest.fixture(scope="module", params=backends_for("A"))
def backend(request, device):
    try:
        return get_backend(request.param, device)
    except BackendUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("batch", [1, pytest.param(8, marks=SLOW)])
@pytest.mark.parametrize("guide", list(BRANCHES))
@pytest.mark.parametrize("stride", [30, 15, pytest.param(7, marks=SLOW), pytest.param(1, marks=SLOW)])
def test_sampler(bench, benchmark, backend, device, stride, guide, batch):
    den = Counting(backend.denoiser)
    ts = strided_timesteps(990, stride, len(den.alphas_cumprod))
    steps, rows = len(ts) - 1, batch * BRANCHES[guide]
    g = make_guide(den, guide, batch)
    ours = lambda d: sample(d, ts, g, generators(0, "bench", batch))  # noqa: E731
    baselines = {"unet": lambda: unet_loop(backend.denoiser, ts, rows), "loop": lambda: ours(Stub(backend.denoiser))}
    if guide != "plain":
        baselines["split"] = lambda: ours(Counting(backend.denoiser, split=BRANCHES[guide]))
    if guide == "cfg":
        diffusers = lambda d: diffusers_cfg_loop(d, ts, g.cond, g.uncond, g.cfg_scale, torch.Generator().manual_seed(0))  # noqa: E731
        baselines |= {"diffusers": lambda: diffusers(backend.denoiser), "diffusers_loop": lambda: diffusers(Stub(backend.denoiser))}
    benchmark.group = f"sampler {backend.name} {guide} batch {batch}"
    with torch.inference_mode():
        x, times = bench(lambda: ours(den), baselines)
    assert torch.isfinite(x).all() and x.shape[0] == batch
    assert den.calls % steps == 0 and den.rows == den.calls * rows  # one batched call per step
    if benchmark.disabled:
        return
    t = benchmark.stats.stats.median
    info = {"images_per_s": batch / t, "unet_calls_per_s": steps / t, "peak_memory_mib": peak_memory(device),
            "efficiency": paired_ratio(times, "unet"), "efficiency_loop_only": 1 - paired_ratio(times, "loop"),
            "loop_ms_per_step": 1e3 * min(times["loop"]) / steps}
    if "split" in times:
        info["batched_speedup"] = paired_ratio(times, "split")
    if "diffusers" in times:
        info |= {"vs_diffusers": paired_ratio(times, "diffusers"),
                 "diffusers_loop_ms_per_step": 1e3 * min(times["diffusers_loop"]) / steps}
    benchmark.extra_info.update(info)
