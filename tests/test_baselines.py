"""The benchmarks' baselines do the same work as the loops they are compared with, so a ratio compares
two ways of doing one thing (`make test` runs the benchmarks untimed, without their baselines)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks.baselines import Counting, Stub, diffusers_cfg_loop, naive_steps, unet_loop
from benchmarks.test_sampler import BRANCHES, make_guide
from harness.backends import get_backend
from harness.guides import CFG
from harness.partb.sampling import VelocityUNet, class_guide
from harness.partb.train import PRESETS, Trainer, build_model
from harness.sampling import euler_sample, sample
from harness.schedules import strided_timesteps
from harness.seeding import generators

STRIDES = {"tiny-if": 99, "mnist": 30}  # 11 and 34 steps


@pytest.mark.parametrize("name", list(STRIDES))
def test_diffusers_cfg_loop_gives_our_sample(name):
    """diffusers' DDPMScheduler.step loop (the denoiser's schedule, variance and x0 clip) and `sample` draw
    the same noise for one image from the same generator, so they give the same image."""
    den = get_backend(name, "cpu").denoiser
    ts = strided_timesteps(990, STRIDES[name], len(den.alphas_cumprod))
    cond, uncond = den.condition(["a lithograph of a skull"]), den.condition([None])
    with torch.inference_mode():
        ours = sample(den, ts, CFG(cond, uncond, 7.0), generators(0, "b", 1))
        theirs = diffusers_cfg_loop(den, ts, cond, uncond, 7.0, generators(0, "b", 1)[0])
        other_seed = diffusers_cfg_loop(den, ts, cond, uncond, 7.0, generators(1, "b", 1)[0])
    torch.testing.assert_close(theirs, ours, atol=1e-3, rtol=0)  # float32 rounding: the two order the step's operations differently
    assert (other_seed - ours).abs().max() > 0.1  # the comparison can fail


@pytest.mark.parametrize("guide", list(BRANCHES))
def test_split_calls_give_the_batched_result_and_count_calls(guide):
    den = get_backend("mnist", "cpu").denoiser
    ts = strided_timesteps(990, 99, len(den.alphas_cumprod))
    batched, split = Counting(den), Counting(den, split=BRANCHES[guide])
    with torch.inference_mode():
        a = sample(batched, ts, make_guide(batched, guide, 2), generators(0, "b", 2))
        b = sample(split, ts, make_guide(split, guide, 2), generators(0, "b", 2))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    steps = len(ts) - 1
    assert batched.calls == steps and split.calls == steps * BRANCHES[guide]
    assert batched.rows == split.rows == steps * 2 * BRANCHES[guide]


def test_unet_loop_makes_the_loops_calls_and_the_stub_costs_no_unet_call():
    den = get_backend("mnist", "cpu").denoiser
    ts = strided_timesteps(990, 99, len(den.alphas_cumprod))
    counting = Counting(den)
    unet_loop(counting, ts, rows=3)
    assert counting.calls == len(ts) - 1 and counting.rows == 3 * (len(ts) - 1)
    stub = Stub(counting)
    with torch.inference_mode():
        x = sample(stub, ts, make_guide(stub, "hybrid", 1), generators(0, "b", 1))
    assert torch.isfinite(x).all() and counting.calls == len(ts) - 1  # the stub never reached the UNet


def test_naive_steps_trains_the_same_model(tmp_path):
    recipe = dataclasses.replace(PRESETS["quick"]["time"], batch_size=8, subset=32, test_subset=8)
    trainer = Trainer(recipe, tmp_path)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    naive_steps(trainer, 2)
    assert trainer.opt.state and any((p - q).abs().max() > 0 for p, q in zip(trainer.model.parameters(), before))


def test_unet_loop_over_euler_steps_makes_the_euler_loops_calls():
    """unet_loop over the step indices 0 .. T with the guide's rows: T calls of the rows an Euler loop sends,
    its UNet at t = i / T (the same limit `benchmarks/test_euler.py` measures the loop against)."""
    model = build_model("fm-class", 4, torch.Generator().manual_seed(0))
    counting = Counting(VelocityUNet(model, 5, class_conditioned=True))
    guide = class_guide(torch.arange(3), 5.0, 3, counting.device)
    with torch.inference_mode():
        euler_sample(counting, 5, guide, generators(0, "b", 3))
        calls, rows = counting.calls, counting.rows
        unet_loop(counting, range(6), 6, torch.cat([guide.cond, guide.uncond]))
    assert (calls, rows) == (5, 30) and (counting.calls, counting.rows) == (2 * calls, 2 * rows)
