"""Properties of the pure math over generated inputs (Hypothesis, derandomized: the same examples on every
run): views are inverses, low-pass plus high-pass is the identity, strided timesteps are well formed, and
the loop's step coefficients are the per-step equations."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.diffusion import ddpm_step, step_coefficients, step_schedule, strided_step
from harness.filters import high_pass, low_pass
from harness.guides import VIEWS
from harness.partb.sampling import partb_timesteps
from harness.schedules import cosine_alphas_cumprod, linear_alphas_cumprod, strided_timesteps

# No clock: no deadline, and no too_slow health check (generation time on a loaded machine).
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SCHEDULES = {"cosine": cosine_alphas_cumprod(), "linear": linear_alphas_cumprod(300)}


def images(min_side: int = 1, max_side: int = 8, unique: bool = False) -> st.SearchStrategy[np.ndarray]:
    """float32 batches (N, C, H, W) with values in [-1, 1]."""
    side = st.integers(min_side, max_side)
    shapes = st.tuples(st.integers(1, 2), st.integers(1, 3), side, side)
    return shapes.flatmap(lambda shape: arrays(np.float32, shape, elements=st.floats(-1, 1, width=32), unique=unique))


@SETTINGS
@given(st.sampled_from(sorted(VIEWS)), images(unique=True))
def test_views_are_inverses(name, x):
    """invert(apply(x)) = apply(invert(x)) = x; a view other than the identity moves distinct pixels."""
    view, x = VIEWS[name], torch.from_numpy(x)
    assert torch.equal(view.invert(view.apply(x)), x) and torch.equal(view.apply(view.invert(x)), x)
    if name != "identity" and min(x.shape[-2:]) >= 2:
        assert not torch.equal(view.apply(x), x)


@SETTINGS
@given(images(min_side=2, max_side=20), st.integers(0, 9), st.floats(0.1, 10))
def test_low_pass_plus_high_pass_is_the_identity(x, half, sigma):
    """f_low(x) + f_high(x) = x for every odd kernel the image can be reflect-padded for."""
    x = torch.from_numpy(x)
    k = 2 * min(half, min(x.shape[-2:]) - 1) + 1
    torch.testing.assert_close(low_pass(x, k, sigma) + high_pass(x, k, sigma), x, atol=1e-6, rtol=0)


@SETTINGS
@given(st.integers(0, 999), st.integers(1, 1000), st.integers(1, 1000))
@example(990, 30, 1000)
@example(990, 30, 300)
def test_strided_timesteps_are_well_formed(start, stride, T):
    """From floor(start T / 1000) strictly down to 0; on IF's scale start, start - stride, ..., then 0 if
    the stride skips it; on T steps with stride >= 1000 / T, those steps mapped one to one."""
    ts = strided_timesteps(start, stride, T)
    course = list(range(start, -1, -stride))
    assert ts[0] == start * T // 1000 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert strided_timesteps(start, stride) == course + ([0] if course[-1] else [])
    if stride * T >= 1000:
        assert ts[:len(course)] == [t * T // 1000 for t in course]


@SETTINGS
@given(st.integers(1, 1000), st.integers(1, 400))
def test_partb_timesteps_are_well_formed(T, stride):
    """T-1, T-1-stride, ... strictly down to 0: gaps of stride but the last, which may be shorter."""
    ts = partb_timesteps(T, stride)
    gaps = [a - b for a, b in zip(ts, ts[1:])]
    assert ts[0] == T - 1 and ts[-1] == 0
    assert all(g == stride for g in gaps[:-1]) and all(0 < g <= stride for g in gaps[-1:])


@st.composite
def loops(draw) -> tuple[str, list[int]]:
    """A schedule and a strictly decreasing list of its timesteps."""
    name = draw(st.sampled_from(sorted(SCHEDULES)))
    ts = draw(st.lists(st.integers(0, len(SCHEDULES[name]) - 1), min_size=1, max_size=40, unique=True))
    return name, sorted(ts, reverse=True)


def oracle(abar: torch.Tensor, t: int, t_prev: int) -> dict[str, float]:
    """The step t -> t' in float64 from abar_t, abar_t' (1 at t' = -1): alpha = abar_t / abar_t',
    beta = 1 - alpha, beta_tilde = (1 - abar_t') / (1 - abar_t) beta (clamped at 1e-20)."""
    a_t, a_p = float(abar[t]), float(abar[t_prev]) if t_prev >= 0 else 1.0
    alpha = a_t / a_p
    beta = 1 - alpha
    return {"sqrt_one_minus_abar": (1 - a_t) ** 0.5, "sqrt_abar": a_t ** 0.5,
            "coef_x0": a_p ** 0.5 * beta / (1 - a_t), "coef_xt": alpha ** 0.5 * (1 - a_p) / (1 - a_t),
            "log_beta": np.log(beta), "log_beta_tilde": np.log(max((1 - a_p) / (1 - a_t) * beta, 1e-20))}


@SETTINGS
@given(loops())
@example(("cosine", strided_timesteps(990, 30)))
@example(("cosine", strided_timesteps(990, 1)))
@example(("linear", partb_timesteps(300, 1)))
@example(("linear", partb_timesteps(300, 7)))
def test_step_schedule_is_the_per_step_equations(loop):
    """step_schedule (one vectorised computation) == step_coefficients per step, bit for bit (t' = -1
    last), and == the float64 equations (`oracle`) on abar rounded to float32, to 1e-6 (1 + |value|) plus,
    for what is proportional to beta, a relative 2^-22 / beta (float32's 1 - abar_t / abar_t' is off by up
    to 2^-22, much of a small beta); strided steps with them == ddpm_step, bit for bit."""
    name, ts = loop
    abar, like = SCHEDULES[name], torch.zeros(1, 1, 4, 4)
    t_prevs = ts[1:] + [-1]
    for t, t_prev, c in zip(ts, t_prevs, step_schedule(abar, ts, t_prevs, like)):
        one, want = step_coefficients(abar, t, t_prev, like), oracle(abar.float(), t, t_prev)
        beta_err = 2 ** -22 / np.exp(want["log_beta"])  # relative error of float32's beta
        slack = {"coef_x0": beta_err * want["coef_x0"], "log_beta": beta_err, "log_beta_tilde": beta_err}
        for f in dataclasses.fields(c):
            got, w = getattr(c, f.name), want[f.name]
            assert torch.equal(got, getattr(one, f.name)), (t, t_prev, f.name)
            assert abs(float(got) - w) <= 1e-6 * (1 + abs(w)) + slack.get(f.name, 0), (t, t_prev, f.name)
    gen = torch.Generator().manual_seed(len(ts))
    x, eps, noise = (torch.randn(2, 1, 4, 4, generator=gen) for _ in range(3))
    v = torch.rand(2, 1, 4, 4, generator=gen) * 2 - 1
    i = len(ts) // 2
    for variance in ("fixed_small", "fixed_large", "learned_range"):
        ours = strided_step(x, eps, step_schedule(abar, ts, t_prevs, like)[i], noise, variance, v)[0]
        assert torch.equal(ours, ddpm_step(x, eps, ts[i], t_prevs[i], abar, noise, variance, v)[0])
