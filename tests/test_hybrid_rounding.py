"""A1.9's shared-vs-separate relations under reduced precision, on the CPU. The mnist UNet runs in float16 or
bfloat16 with kernels that depend on the batch, as a GPU's do: a batch of four rows (the separate variant's
branches at one seed) runs a channels_last copy of the weights, which sums in another order, so the 3-row and
the 4-row call round differently. The relations hold there, and fail when the shared variant is wrong."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from harness import backends
from harness.backends import BackendSpec, get_backend
from harness.denoisers.backend import DenoiserBackend
from harness.denoisers.base import NoiseEstimate
from harness.denoisers.mnist import MnistDenoiser
from harness.devices import kernel_eps
from harness.guides import Hybrid
from harness.runner import run_case
from harness.sections import get_section, part_a

PARAMS = {"hybrids": [["8", "4"]], "kernel_size": 9, "sigma": 1.5, "num_seeds": 1, "stride": 330}  # 3 steps
ONE_STEP, AFTER_LOOP = (r.text for r in get_section("A1.9").relations[:2])


class BatchDependent(MnistDenoiser):
    """The mnist UNet in ``dtype``; a batch of a multiple of 4 rows runs a channels_last copy of it."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        super().__init__(model)
        self.dtype = dtype
        self.layouts = [copy.deepcopy(model).to(dtype, memory_format=layout)
                        for layout in (torch.contiguous_format, torch.channels_last)]

    def __call__(self, x_t, t, cond):
        model = self.layouts[x_t.shape[0] % 4 == 0]
        return NoiseEstimate(model(x_t.to(self.dtype), (t.float() / self.T).to(self.dtype), cond.to(self.dtype)).float())


class LowPrecision(DenoiserBackend):
    def __init__(self, dtype: torch.dtype, device: str):
        self.name, self.device = f"mnist-{dtype}", device
        self.denoiser = BatchDependent(get_backend("mnist").denoiser.model, dtype)


@pytest.fixture
def low(monkeypatch, request):
    """A throwaway backend (not trained, not judged: only the rounding relations apply) in request.param."""
    name = f"mnist-{str(request.param).removeprefix('torch.')}"
    monkeypatch.setitem(backends.BACKENDS, name, BackendSpec(lambda device: LowPrecision(request.param, device)))
    yield name
    get_backend.cache_clear()


def relations(out) -> dict[str, bool]:
    return {r.text: r.holds(out.metrics) for r in get_section("A1.9").relations if r.applies_to(out.meta["backend"])}


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], indirect=True, ids=["float16", "bfloat16"])
def test_the_relations_hold_where_rounding_separates_the_variants(low):
    out = run_case("A1.9", low, params=PARAMS)
    assert relations(out) == {ONE_STEP: True, AFTER_LOOP: True}
    assert out.metrics["hybrid0_shared_vs_separate_one_step_max_abs"] > 1e-2  # float32: 1e-6
    assert out.metrics["hybrid0_shared_vs_separate_max_abs"] > 1e-2  # the old bound fails, as on the H200


def wrong_shared(change):
    """Hybrid whose shared variant takes the fields ``change(guide)``; the separate one is right."""

    class Wrong(Hybrid):
        def __call__(self, denoiser, x_t, t):
            return Hybrid.__call__(replace(self, **change(self)) if self.shared_uncond else self, denoiser, x_t, t)

    return Wrong


@pytest.mark.parametrize("low", [torch.float16], indirect=True, ids=["float16"])
@pytest.mark.parametrize("change", [lambda h: {"cond_low": h.cond_high, "cond_high": h.cond_low},
                                    lambda h: {"uncond": h.cond_low}, lambda h: {"cfg_scale": 1.0}],
                         ids=["low_pass(eps_2) + high_pass(eps_1)", "c_1 as the unconditional", "no guidance"])
def test_a_wrong_shared_variant_fails_at_one_step(low, change, monkeypatch):
    monkeypatch.setattr(part_a, "Hybrid", wrong_shared(change))
    assert not relations(run_case("A1.9", low, params=PARAMS))[ONE_STEP]


def test_kernel_eps_is_the_precision_the_kernels_round_to():
    assert kernel_eps(torch.float32, "cpu") == 2.0**-23 and kernel_eps(torch.bfloat16, "cpu") == 2.0**-7
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(allow_tf32=True):  # PyTorch's default
            assert kernel_eps(torch.float32, "cuda") == kernel_eps(torch.float16, "cuda") == 2.0**-10
        with torch.backends.cudnn.flags(allow_tf32=False):  # harness.devices.deterministic_cuda
            assert kernel_eps(torch.float32, "cuda") == 2.0**-23
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
