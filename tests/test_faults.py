"""Faults a GPU run meets, injected on the CPU: a sample that turns NaN at step k fails its case naming the
step (nothing saved, no relation judged), running out of GPU memory is one line saying how to need less, and
a CUDA error that loses a process's context fails that process's later cases only (`harness.cuda_faults`)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from harness import backends
from harness.backends import BackendSpec, get_backend
from harness.cli import main
from harness.devices import context_lost
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


def test_which_cuda_errors_lose_the_context():
    assert context_lost(torch.AcceleratorError("CUDA error: device-side assert triggered\nCUDA kernel errors ..."))
    assert context_lost(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not context_lost(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not context_lost(RuntimeError("CUDA error: invalid argument"))
    assert not context_lost(ValueError("CUDA error: device-side assert triggered"))


# test_a.py hits the fault first, then has three cases on its device and one without; test_b.py three of its own.
# Under --dist loadfile each file runs on one worker, in order.
LOST_CONTEXT_CASES = {"test_a.py": '''
import pytest, torch

def test_fault(device):
    if device == "cuda":  # a real device-side assert: an index out of range inside a kernel
        torch.zeros(3, device=device)[torch.tensor([5], device=device)] = 1.0
        torch.cuda.synchronize()
    raise torch.AcceleratorError("CUDA error: device-side assert triggered\\nCUDA kernel errors might be reported later")

@pytest.mark.parametrize("k", range(3))
def test_later(device, k):
    assert torch.ones(2, device=device).sum().item() == 2

def test_no_device():
    pass
''', "test_b.py": '''
import pytest, torch

@pytest.mark.parametrize("k", range(3))
def test_other(device, k):
    assert torch.ones(2, device=device).sum().item() == 2
''', "conftest.py": '''
import pytest

@pytest.fixture
def device():
    return {device!r}
'''}


def _lost_context_run(tmp_path, device: str, *args: str) -> tuple[int, str]:
    for name, text in LOST_CONTEXT_CASES.items():
        (tmp_path / name).write_text(text.replace("{device!r}", repr(device)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-p", "harness.cuda_faults",
                           "test_a.py", "test_b.py", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def _outcomes(out: str) -> dict[str, str]:
    """file::test -> PASSED / FAILED / ERROR, from pytest's -rA summary lines."""
    return {m[2]: m[1] for m in re.finditer(r"^(PASSED|FAILED|ERROR) (test_\w\.py::\S+)", out, re.M)}


LATER = [f"test_a.py::test_later[{k}]" for k in range(3)]
OTHER = [f"test_b.py::test_other[{k}]" for k in range(3)]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="a real device-side assert needs CUDA"))])
def test_a_lost_cuda_context_fails_its_workers_later_cases_and_no_other_workers(tmp_path, device):
    """On the CPU the fault is injected (torch raises an AcceleratorError as CUDA would); on a GPU it is real."""
    code, out = _lost_context_run(tmp_path, device, "-n", "2", "--dist", "loadfile")
    got = _outcomes(out)
    assert code == 1, out
    assert got["test_a.py::test_fault"] == "FAILED", out
    assert [got[n] for n in LATER] == ["ERROR"] * 3, out
    assert got["test_a.py::test_no_device"] == "PASSED" and [got[n] for n in OTHER] == ["PASSED"] * 3, out
    worker = re.search(r"(gw\d) lost its CUDA context at test_a\.py::test_fault \(AcceleratorError: CUDA error: "
                       r"device-side assert triggered\)", out)
    assert worker, out
    assert f"not run: {worker[0]}; a lost context cannot be used again in its process" in out
    assert f"{worker[0]}: 3 later case(s) of that process not run" in out


def test_in_one_process_a_lost_context_refuses_every_later_device_case_and_the_run_ends(tmp_path):
    code, out = _lost_context_run(tmp_path, "cpu", "-p", "no:xdist")
    got = _outcomes(out)
    assert code == 1, out
    assert [got[n] for n in LATER + OTHER] == ["ERROR"] * 6 and got["test_a.py::test_no_device"] == "PASSED", out
    assert "this process lost its CUDA context at test_a.py::test_fault" in out
    assert "6 later case(s) of that process not run" in out
