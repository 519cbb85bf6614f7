"""The sampling and training loops: no host synchronisation inside them (the per-loop step coefficients
against the per-step equations are in tests/test_properties.py).

On CPU a host synchronisation cannot happen, so the loops run with every way of reading a tensor's value
on the host (``item``, ``tolist``, ``float()``, ``bool()``, ...) made to raise when called from harness code.
On a GPU (``--device cuda``) the same loops run under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

import harness
from harness.backends import get_backend
from harness.editing import inpaint
from harness.finite import watching
from harness.guides import CFG, VIEWS, Anagram, Hybrid, Plain
from harness.partb.sampling import ddpm_loop, fm_sample
from harness.partb.kinds import KINDS
from harness.partb.train import PRESETS, Trainer, build_model
from harness.sampling import sample
from harness.schedules import linear_alphas_cumprod
from harness.seeding import generators

HOST_READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")
HARNESS_DIR = str(Path(harness.__file__).parent)


class HostSync(AssertionError):
    pass


@contextlib.contextmanager
def forbid_host_reads(under: str = HARNESS_DIR):
    """Make torch.Tensor's host reads raise HostSync when called from a file under ``under``."""
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def guard(name, original):
        def read(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(under):
                raise HostSync(f"Tensor.{name} called from {caller}:{sys._getframe(1).f_lineno} inside a loop")
            return original(self, *args, **kwargs)
        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, guard(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.fixture
def no_sync(device):
    """The guard for this device: sync debug mode on CUDA, the host-read guard on CPU."""
    if torch.device(device).type == "cuda":
        @contextlib.contextmanager
        def cuda_guard():
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return cuda_guard
    return forbid_host_reads


def test_the_guard_catches_a_host_read():
    x = torch.ones(2)
    with forbid_host_reads(under=str(Path(__file__).parent)):
        with pytest.raises(HostSync, match="item"):
            x.sum().item()
        with pytest.raises(HostSync, match="__float__"):
            float(x.sum())
    assert x.sum().item() == 2.0  # restored


def _guides(den):
    c = lambda p: den.condition([p])  # noqa: E731
    return {"plain": Plain(c("a high quality photo")), "cfg": CFG(c("a high quality photo"), c(None), 7.0),
            "anagram": Anagram([VIEWS["identity"], VIEWS["flip"]], [c("an oil painting of an old man"),
                               c("an oil painting of people around a campfire")], c(None), 7.0),
            "hybrid": Hybrid(c("a lithograph of a skull"), c("a lithograph of waterfalls"), c(None), 7.0)}


def test_part_a_sampling_loops_do_not_synchronise(no_sync, device):
    den = get_backend("tiny-if", device).denoiser
    ts = [990, 660, 330, 0]
    guides = _guides(den)
    x_orig = torch.zeros(1, *den.image_shape, device=den.device)
    mask = torch.zeros(den.image_shape[-2:], device=den.device)
    with torch.inference_mode(), no_sync(), watching():  # as every case runs: its NaN watch reads nothing either
        for guide in guides.values():
            sample(den, ts, guide, generators(0, "s", 1))
        inpaint(den, x_orig, mask, ts, guides["cfg"], generators(0, "s", 1), generators(0, "r", 1))


def test_part_b_sampling_loop_does_not_synchronise(no_sync, device):
    model = build_model("class", 8, torch.Generator().manual_seed(0)).to(device)
    with no_sync(), watching():
        ddpm_loop(model, linear_alphas_cumprod(300), generators(0, "p", 2), torch.arange(2), stride=100, keep_every=1)


@pytest.mark.parametrize("kind", ["fm-time", "fm-class"])
def test_euler_loop_does_not_synchronise(no_sync, device, kind):
    model = build_model(kind, 8, torch.Generator().manual_seed(0)).to(device)
    with no_sync(), watching():
        fm_sample(model, generators(0, "p", 2), torch.arange(2) if kind == "fm-class" else None, num_ts=3, keep=[0, 3])


@pytest.mark.parametrize("kind", KINDS)
def test_training_step_loop_does_not_synchronise(no_sync, device, kind, tmp_path):
    recipe = dataclasses.replace(PRESETS["quick"][kind], num_hiddens=8, subset=64, batch_size=16, test_subset=16)
    trainer = Trainer(recipe, tmp_path, device=device)
    with no_sync():
        losses = trainer.train_steps(torch.randperm(64, generator=trainer.gen), 3)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
