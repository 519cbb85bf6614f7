"""Benchmark set-up: machine info that keeps runs from different GPUs apart, a synchronising timer,
and a denoiser wrapper that counts (or splits) UNet calls."""

from __future__ import annotations

import platform
import statistics
import time
from typing import Callable

import pytest
import torch

from harness.denoisers.base import NoiseEstimate
from harness.partb.train import Speed


def pytest_addoption(parser):
    group = parser.getgroup("diffusion-harness benchmarks")
    group.addoption("--bf16", action="store_true", help="Part B training under bf16 autocast (recorded in extra_info)")
    group.addoption("--channels-last", action="store_true", help="Part B training with channels_last weights")
    group.addoption("--compile", action="store_true", help="Part B training with a torch.compile'd UNet")


def speed_flags(config) -> Speed:
    return Speed(bf16=config.getoption("--bf16"), channels_last=config.getoption("--channels-last"),
                 compile=config.getoption("--compile"))


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["threads"] = torch.get_num_threads()
    machine_info["python"] = platform.python_version()
    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name()
        machine_info["cuda"] = torch.version.cuda
        machine_info["driver"] = _driver()


def _driver() -> str:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except OSError:
        return "unknown"


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], device, repeats: int = 3) -> float:
    """Median wall time of fn() over repeats (after one warm-up), synchronising CUDA around each."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(device) -> float:
    """CUDA max allocated (MiB), or this process's peak RSS (MiB) on CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Counting:
    """Wraps a denoiser: counts calls and rows; with ``split`` > 1 it makes ``split`` separate calls
    per step instead of one batched call (the naive loop that batching is measured against)."""

    def __init__(self, denoiser, split: int = 1):
        self.inner, self.split, self.calls, self.rows = denoiser, split, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, t, cond) -> NoiseEstimate:
        parts = [self.inner(xs, ts, cs) for xs, ts, cs in zip(x.chunk(self.split), t.chunk(self.split), cond.chunk(self.split))]
        self.calls += len(parts)
        self.rows += x.shape[0]
        v = None if parts[0].v is None else torch.cat([p.v for p in parts])
        return NoiseEstimate(torch.cat([p.eps for p in parts]), v)


@pytest.fixture
def bench(benchmark, request):
    """benchmark.pedantic with warm-up when enabled; one plain call under --benchmark-disable."""
    def run(fn, rounds: int = 3):
        if benchmark.disabled:
            return benchmark(fn)
        return benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
    return run
