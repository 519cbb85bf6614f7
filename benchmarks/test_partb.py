"""Part B throughput: training images/s for each model at the course batch size (with the quick preset's
width, so it runs on a CPU) against a naive reference loop, and DDPM sampling images/s.

vs_naive_loop = time of the textbook step loop (`naive_steps`) / time of `Trainer.train_steps`, the same
steps of the same model and optimiser, timed in the same rounds (the per-epoch test loss is outside both).
gflops_per_s = the step's FLOPs (torch.utils.flop_counter) / time; matmul_gflops_per_s = a large fp32
matmul on the same device; their ratio says how close training runs to the hardware, and
naive time / (FLOPs / matmul rate) = vs_naive_ceiling bounds what any loop could gain over the naive one.

test_training_speed: each speed flag combination on the course's time-conditioned step (D=64, batch 128)
against the fp32 eager step from the same seed (weights, batches, draws), in paired rounds: vs_fp32 = fp32
time / its time; of_bf16_limit = (FLOPs / the bf16 matmul rate) / its time, the share of the arithmetic
limit that the CPU's bf16 units set.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.baselines import naive_steps
from benchmarks.conftest import paired_ratio, peak_memory, speed_flags, timed
from harness.devices import cpu_bf16_units
from harness.partb.evaluate import measure
from harness.partb.speed import CPU_DEFAULT, Speed
from harness.partb.sampling import ddpm_sample
from harness.partb.train import PRESETS, Trainer, build_model, train
from harness.schedules import linear_alphas_cumprod
from harness.seeding import generators

STEPS = 6
SPEED_STEPS = 4  # the D=64 step: about 1.2 s in fp32 on 2 cores


def matmul_gflops_per_s(device, n: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of an n x n matmul in ``dtype`` on ``device`` (the best of 6): the rate convolutions can approach."""
    a, b = (torch.randn(n, n, generator=torch.Generator().manual_seed(i)).to(device, dtype) for i in (0, 1))
    return 2 * n**3 / min(timed(lambda: a @ b, device) for _ in range(6)) / 1e9


def step_flops(trainer: Trainer) -> int:
    """FLOPs of one training step (forward and backward), counted by torch.utils.flop_counter."""
    with FlopCounterMode(display=False) as counter:
        trainer.train_steps(torch.randperm(len(trainer.x), generator=trainer.gen), 1)
    return counter.get_total_flops()


@pytest.mark.parametrize("kind", ["denoiser", "time", "class"])
def test_training(bench, benchmark, kind, device, tmp_path, request):
    course, quick = PRESETS["course"][kind], PRESETS["quick"][kind]
    recipe = dataclasses.replace(quick, batch_size=course.batch_size, subset=course.batch_size * STEPS, test_subset=64)
    speed = speed_flags(request.config)
    trainer = Trainer(recipe, tmp_path, device=device, speed=speed)
    steps = STEPS if not benchmark.disabled else 1
    benchmark.group = "partb training"
    losses, times = bench(lambda: trainer.train_steps(torch.randperm(len(trainer.x), generator=trainer.gen), steps),
                          {"naive": lambda: naive_steps(trainer, steps)})
    assert losses.shape == (steps,) and torch.isfinite(losses).all()
    if benchmark.disabled:
        return
    t = benchmark.stats.stats.median
    gflops = step_flops(trainer) * steps / t / 1e9
    peak = matmul_gflops_per_s(device)
    benchmark.extra_info.update({
        "images_per_s": steps * recipe.batch_size / t, "vs_naive_loop": paired_ratio(times, "naive"),
        "gflops_per_s": gflops, "matmul_gflops_per_s": peak,
        "vs_naive_ceiling": paired_ratio(times, "naive") * peak / gflops,
        "num_hiddens": recipe.num_hiddens, "batch_size": recipe.batch_size,
        "peak_memory_mib": peak_memory(device), **dataclasses.asdict(speed)})


SPEEDS = [Speed(bf16=True), Speed(channels_last=True), CPU_DEFAULT,
          pytest.param(dataclasses.replace(CPU_DEFAULT, compile=True), marks=pytest.mark.slow, id="bf16+channels_last+compile")]


@pytest.mark.parametrize("speed", SPEEDS, ids=lambda s: s.label())
def test_training_speed(bench, benchmark, speed, device, tmp_path):
    recipe = dataclasses.replace(PRESETS["course"]["time"], subset=128 * SPEED_STEPS, test_subset=64)
    ours, fp32 = Trainer(recipe, tmp_path / "ours", device=device, speed=speed), Trainer(recipe, tmp_path / "fp32", device=device)
    steps = SPEED_STEPS if not benchmark.disabled else 1

    def run(trainer: Trainer) -> torch.Tensor:
        return trainer.train_steps(torch.randperm(len(trainer.x), generator=trainer.gen), steps)

    benchmark.group = "partb training speed"
    losses, times = bench(lambda: run(ours), {"fp32": lambda: run(fp32)})
    assert losses.shape == (steps,) and torch.isfinite(losses).all()
    if benchmark.disabled:
        return
    step_s = min(times["ours"]) / steps
    flops = step_flops(fp32)  # the same convolutions in any dtype or layout
    bf16_rate = matmul_gflops_per_s(device, dtype=torch.bfloat16)
    benchmark.extra_info.update({
        "vs_fp32": paired_ratio(times, "fp32"), "step_s": step_s, "fp32_step_s": min(times["fp32"]) / steps,
        "gflop_per_step": flops / 1e9, "gflops_per_s": flops / step_s / 1e9,
        "bf16_matmul_gflops_per_s": bf16_rate, "fp32_matmul_gflops_per_s": matmul_gflops_per_s(device),
        "bf16_limit_step_s": flops / bf16_rate / 1e9, "of_bf16_limit": flops / bf16_rate / 1e9 / step_s,
        "bf16_units": cpu_bf16_units() if torch.device(device).type == "cpu" else None,
        "num_hiddens": recipe.num_hiddens, "batch_size": recipe.batch_size, **dataclasses.asdict(speed)})


@pytest.mark.parametrize("stride", [10, pytest.param(1, marks=pytest.mark.slow)])
def test_sampling(bench, benchmark, stride, device):
    model = build_model("class", PRESETS["quick"]["class"].num_hiddens, torch.Generator().manual_seed(0)).to(device)
    labels = torch.arange(10).repeat(4)
    benchmark.group = "partb sampling"
    (x, _), _ = bench(lambda: ddpm_sample(model, linear_alphas_cumprod(300), generators(0, "b", 40), labels, stride=stride))
    assert x.shape == (40, 1, 28, 28)
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = 40 / benchmark.stats.stats.median


@pytest.mark.slow
def test_course_recipe(benchmark, device, tmp_path, request):
    """The course's 20-epoch time-conditioned recipe end to end (D=64, batch 128, 60k digits; target on one
    H100: <= 60 s), with FID-lite of 1000 samples, which the speed flags must leave unchanged: compare a
    flagged run's fid_lite with an unflagged one's."""
    if torch.device(device).type != "cuda":
        pytest.skip("a GPU benchmark: the course recipe is about 6.7 hours on a 2-core CPU")
    speed = speed_flags(request.config)
    benchmark.group = "partb course recipe"
    run = lambda: train("time", "course", out_dir=tmp_path, device=device, resume=False, progress=False, speed=speed)  # noqa: E731
    trainer = benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1) if not benchmark.disabled else run()
    benchmark.extra_info.update({**measure("time", trainer.model, n=1000), **dataclasses.asdict(speed),
                                 "peak_memory_mib": peak_memory(device)})
