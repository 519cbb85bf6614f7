"""Benchmark set-up: machine info that keeps runs from different GPUs apart, and the `bench` fixture:
pytest-benchmark with CUDA synchronised and baselines timed in the same rounds."""

from __future__ import annotations

import math
import platform
import time
from typing import Callable

import pytest
import torch

from harness.partb.speed import Speed


def pytest_addoption(parser):
    group = parser.getgroup("diffusion-harness benchmarks")
    Speed.add_flags(group.addoption)  # Part B training's speed flags, recorded in extra_info
    group.addoption("--bench-budget-s", type=float, default=20.0,
                    help="seconds of timed rounds per benchmark case (after the warm-up; default 20)")
    group.addoption("--bench-min-rounds", type=int, default=5, help="fewest timed rounds per case (default 5)")


def speed_flags(config) -> Speed:
    return Speed.from_flags(lambda name: config.getoption(name))


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


def timed(fn: Callable[[], object], device) -> float:
    """Wall time of one fn() call, with CUDA synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def peak_memory(device) -> float:
    """CUDA max allocated (MiB), or this process's peak RSS (MiB) on CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
def bench(benchmark, device, request):
    """``bench(fn, baselines={name: fn_b})`` times fn with pytest-benchmark (pedantic, CUDA synchronised)
    and returns (fn's result, {name: per-round times, "ours": fn's}).

    Paired rounds: every round first times each baseline once with the same timer (in pedantic's untimed
    ``setup``), then fn, so a drift in machine load hits all of them alike; compare them with
    `paired_ratio`. An untimed warm-up round, then one that sizes the run: as many rounds as fit in
    ``budget_s``, within [min_rounds, max_rounds]. Every round's times are saved in extra_info
    (``round_times_s``); images/s in extra_info come from pytest-benchmark's median.
    Under --benchmark-disable fn runs once, the baselines not at all (tests/test_baselines.py checks
    them), and the times are empty."""
    def run(fn: Callable[[], object], baselines: dict[str, Callable[[], object]] | None = None,
            budget_s: float | None = None, min_rounds: int | None = None, max_rounds: int = 20):
        if benchmark.disabled:
            return benchmark(fn), {}
        baselines = baselines or {}
        for warm_up in (fn, *baselines.values()):
            warm_up()
        budget_s = request.config.getoption("--bench-budget-s") if budget_s is None else budget_s
        min_rounds = request.config.getoption("--bench-min-rounds") if min_rounds is None else min_rounds
        per_round = timed(fn, device) + sum(timed(base, device) for base in baselines.values())
        rounds = min(max_rounds, max(min_rounds, math.ceil(budget_s / per_round)))
        times: dict[str, list[float]] = {name: [] for name in baselines}

        def setup():
            for name, base in baselines.items():
                times[name].append(timed(base, device))
            synchronize(device)

        def target():
            out = fn()
            synchronize(device)
            return out

        result = benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)
        times["ours"] = list(benchmark.stats.stats.data)
        benchmark.extra_info |= {"rounds": rounds, "round_times_s": times}
        return result, times
    return run


def paired_ratio(times: dict[str, list[float]], num: str, den: str = "ours") -> float:
    """min time(num) / min time(den) over the same rounds: noise on a shared machine only ever adds time,
    so each one's best round is its closest estimate (the medians of this 2-core VM wander by 5-10%)."""
    return min(times[num]) / min(times[den])
