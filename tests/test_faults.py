"""Faults a GPU run meets, injected on the CPU: a sample that turns NaN at step k fails its case naming the
step (nothing saved, no relation judged), and running out of GPU memory is one line saying how to need less."""

from __future__ import annotations

import pytest
import torch

from harness import backends
from harness.backends import BackendSpec, get_backend
from harness.cli import main
from harness.finite import NonFiniteSample, watching
from harness.runner import run_case
from harness.schedules import strided_timesteps
from harness.sampling import sample
from harness.seeding import generators
from tests.analytic import ToyBackend, ToyDenoiser, patterns

BAD_T = 540  # on A1.4's path: stride 30 from i_start 10 (t = 690)


class FaultyDenoiser(ToyDenoiser):
    """The toy denoiser with a fault at timestep BAD_T: NaN noise, or ``fault`` raised."""

    fault: BaseException | None = None

    def __call__(self, x_t, t, cond):
        est = super().__call__(x_t, t, cond)
        if int(t[0]) != BAD_T:
            return est
        if self.fault is not None:
            raise self.fault
        return type(est)(torch.full_like(est.eps, float("nan")))


class FaultyBackend(ToyBackend):
    name = "faulty"
    denoiser_class = FaultyDenoiser


@pytest.fixture
def faulty(monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "faulty", BackendSpec(FaultyBackend))
    yield get_backend("faulty")
    get_backend.cache_clear()


def test_a_sample_that_turns_nan_fails_its_case_naming_the_step(faulty, tmp_path, capsys):
    ts = strided_timesteps(990, 30, 1000)
    i = ts.index(BAD_T)
    with pytest.raises(NonFiniteSample, match=rf"A1.4 on faulty: the sample turned NaN/Inf at step {i} "
                                              rf"\(to t = {ts[i + 1]}\) of sampling loop 1"):
        run_case("A1.4", "faulty")
    assert main(["run", "A1.4", "--backend", "faulty", "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "nothing was saved" in err and not any(tmp_path.iterdir())


def test_the_watch_names_the_first_bad_loop_and_step():
    den = FaultyDenoiser(patterns(16))
    cond = den.condition(["a"])
    guide = lambda d, x, t: d(x, torch.full((x.shape[0],), t), cond)  # noqa: E731
    with watching() as watch:
        sample(den, [990, 660, 330, 0], guide, generators(0, "s", 1))  # never at BAD_T: finite
        sample(den, [990, BAD_T, 300, 0], guide, generators(0, "s", 1))
    with pytest.raises(NonFiniteSample, match=r"step 1 \(to t = 300\) of sampling loop 2"):
        watch.check("two loops")


def test_running_out_of_gpu_memory_is_one_line(faulty, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(FaultyDenoiser, "fault", torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"))
    assert main(["run", "A1.4", "--backend", "faulty", "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: out of GPU memory while running `run` (Tried to allocate 2.00 GiB): "
                                "run one section at a time (`run SECTION`), or --device cpu, which needs no GPU memory"]
