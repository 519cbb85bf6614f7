"""Flow matching's Euler sampler (`harness.sampling.euler_sample`, as `fm_sample` runs it) over num_ts and
guidance, on the quick preset's D=64 UNets with random weights (the loop's cost does not depend on them):
guidance 0 is the time-conditioned model (one branch, the Plain guide), 5 the class-conditioned one (CFG's
two branches in one batched call); 10 images, one per digit.

efficiency = time of the UNet calls alone (`unet_loop` over the step indices) / sampler time   (limit 1;
    goal >= 0.97, as for the DDPM loop)
efficiency_loop_only = 1 - loop time / sampler time, the loop timed with a velocity that costs nothing (`Stub`)
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.baselines import Counting, Stub, unet_loop
from benchmarks.conftest import paired_ratio, peak_memory
from harness.partb.sampling import VelocityUNet, class_guide
from harness.partb.train import PRESETS, build_model
from harness.sampling import euler_sample
from harness.seeding import generators

BATCH = 10
SLOW = pytest.mark.slow


@pytest.mark.parametrize("guidance", [0, 5])
@pytest.mark.parametrize("num_ts", [10, pytest.param(50, marks=SLOW), pytest.param(300, marks=SLOW)])
def test_euler(bench, benchmark, device, num_ts, guidance):
    kind = "fm-class" if guidance else "fm-time"
    model = build_model(kind, PRESETS["quick"][kind].num_hiddens, torch.Generator().manual_seed(0)).to(device)
    velocity = Counting(VelocityUNet(model, num_ts, class_conditioned=bool(guidance)))
    labels = torch.arange(BATCH) if guidance else None
    guide = class_guide(labels, guidance, BATCH, velocity.device)
    rows = BATCH * (2 if guidance else 1)
    cond = torch.cat([guide.cond, guide.uncond]) if guidance else guide.cond.expand(rows, -1)
    ours = lambda v: euler_sample(v, num_ts, guide, generators(0, "bench", BATCH))  # noqa: E731
    baselines = {"unet": lambda: unet_loop(velocity.inner, range(num_ts + 1), rows, cond),
                 "loop": lambda: ours(Stub(velocity.inner))}
    benchmark.group = f"euler guidance {guidance}"
    with torch.inference_mode():
        (x, _), times = bench(lambda: ours(velocity), baselines)
    assert torch.isfinite(x).all() and x.shape == (BATCH, 1, 28, 28)
    assert velocity.calls % num_ts == 0 and velocity.rows == velocity.calls * rows  # one batched call per step
    if benchmark.disabled:
        return
    t = benchmark.stats.stats.median
    benchmark.extra_info.update({
        "images_per_s": BATCH / t, "unet_calls_per_s": num_ts / t, "peak_memory_mib": peak_memory(device),
        "efficiency": paired_ratio(times, "unet"), "efficiency_loop_only": 1 - paired_ratio(times, "loop"),
        "loop_ms_per_step": 1e3 * min(times["loop"]) / num_ts, "num_hiddens": PRESETS["quick"][kind].num_hiddens})
