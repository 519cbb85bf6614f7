"""The course's equations against diffusers' DDPMScheduler and against closed forms."""

import pytest
import torch
from diffusers import DDPMScheduler

from harness.diffusion import cfg, ddpm_step, estimate_x0, forward, step_log_variance, step_mean
from harness.schedules import cosine_alphas_cumprod, linear_alphas_cumprod, strided_timesteps
from harness.seeding import generators, randn


def if_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
                         thresholding=False, clip_sample=False, prediction_type="epsilon")


def test_cosine_schedule_equals_diffusers():
    ours = cosine_alphas_cumprod()
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    # diffusers accumulates in float32; ours in float64
    assert torch.allclose(ours.float(), if_scheduler().alphas_cumprod, atol=1e-6, rtol=0)


def test_linear_schedule():
    abar = linear_alphas_cumprod(300, 1e-4, 0.02)
    betas = 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    assert torch.allclose(betas, torch.linspace(1e-4, 0.02, 300, dtype=torch.float64))


def test_strided_timesteps():
    ts = strided_timesteps(990, 30)
    assert ts[:3] == [990, 960, 930] and ts[-1] == 0 and len(ts) == 34
    assert strided_timesteps(990, 15)[-2:] == [15, 0]
    assert strided_timesteps(990, 7)[-2:] == [3, 0]  # 0 appended when the stride skips it
    with pytest.raises(ValueError):
        strided_timesteps(990, 0)


def test_forward_and_estimate_x0_invert_each_other():
    abar = cosine_alphas_cumprod()
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    eps = randn((3, 8, 8), generators(0, "eps", 2))
    for t in (0, 250, 500, 750, 999):
        x_t = forward(x0, t, abar, eps)
        torch.testing.assert_close(estimate_x0(x_t, eps, t, abar), x0, atol=2e-4 * (1 + t / 10), rtol=0)
    # per-row timesteps
    t = torch.tensor([250, 750])
    x_t = forward(x0, t, abar, eps)
    torch.testing.assert_close(x_t[1], forward(x0[1:], 750, abar, eps[1:])[0])


@pytest.mark.parametrize("stride", [30, 15, 7])
def test_strided_step_equals_diffusers_step(stride):
    """Mean and learned-range variance of our strided step equal DDPMScheduler.step on the same custom
    timesteps with thresholding off, given the same noise: max abs diff <= 1e-5 in fp32."""
    ts = strided_timesteps(990, stride)
    sched = if_scheduler()
    sched.set_timesteps(timesteps=ts)
    abar = sched.alphas_cumprod  # the same schedule tensor, so only the equations are compared
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 16, 16, generator=gen)
    worst = 0.0
    for t, t_prev in zip(ts[:-1], ts[1:]):
        eps = torch.randn(1, 3, 16, 16, generator=gen)
        v = torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1
        seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        ref = sched.step(torch.cat([eps, v], 1), t, x, generator=torch.Generator().manual_seed(seed)).prev_sample
        noise = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
        ours, _ = ddpm_step(x, eps, t, t_prev, abar, noise, "learned_range", v)
        worst = max(worst, (ours - ref).abs().max().item())
        x = ref
    assert worst <= 1e-5


def test_log_variance_matches_scheduler_get_variance():
    ts = strided_timesteps(990, 30)
    sched = if_scheduler()
    sched.set_timesteps(timesteps=ts)
    abar = sched.alphas_cumprod
    like = torch.zeros(1, 1, 1, 1)
    v = torch.full((1, 1, 1, 1), 0.3)
    for t, t_prev in zip(ts[:-1], ts[1:]):
        ref = sched._get_variance(t, predicted_variance=v)
        ours = step_log_variance(t, t_prev, abar, "learned_range", like, v)
        assert abs(ours.item() - ref.item()) < 1e-5
    ours = step_log_variance(990, 960, abar, "learned_range", like, torch.zeros(1, 1, 1, 1))
    assert abs(ours.item() - -0.0565) < 5e-4  # NOTES.md: the strided log-variance at t=990


def test_step_mean_with_exact_x0_keeps_the_trajectory_on_the_forward_marginal():
    """With the true x0, mean + beta-tilde noise has the forward marginal's mean sqrt(abar_t') x0."""
    abar = cosine_alphas_cumprod()
    x0 = torch.full((1, 1, 1, 1), 0.5)
    # E[x_t] = sqrt(abar_t) x0 -> E[mean] = sqrt(abar_t') x0 (posterior mean is unbiased)
    m = step_mean(torch.sqrt(abar[690]).float() * x0, x0, 690, 660, abar)
    assert abs(m.item() - (abar[660].sqrt() * 0.5).item()) < 1e-5


def test_fixed_variances():
    abar = linear_alphas_cumprod()
    like = torch.zeros(1)
    beta = 1 - abar[10] / abar[9]
    assert torch.isclose(step_log_variance(10, 9, abar, "fixed_large", like).exp().double(), beta, rtol=1e-5)
    tilde = (1 - abar[9]) / (1 - abar[10]) * beta
    assert torch.isclose(step_log_variance(10, 9, abar, "fixed_small", like).exp().double(), tilde, rtol=1e-5)
    with pytest.raises(ValueError, match="needs the model's variance"):
        step_log_variance(10, 9, abar, "learned_range", like)


def test_cfg():
    c, u = torch.tensor([1.0]), torch.tensor([0.5])
    assert cfg(c, u, 7.0).item() == pytest.approx(0.5 + 7 * 0.5)
    assert cfg(c, u, 1.0).item() == 1.0 and cfg(c, u, 0.0).item() == 0.5
