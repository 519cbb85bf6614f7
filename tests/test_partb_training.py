"""Part B's training objectives, classifier-free dropout, guided sampling and FID-lite, each against an
independent computation from the writeups' equations (not "the loss falls").

Losses, for draws made in model_inputs' order from one generator (eps, then t, then the keep mask):
denoiser  L = ||D(x + sigma eps) - x||^2,  sigma = 0.5;
time      L = ||eps(x_t, t/T) - eps||^2,  x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps,  t ~ U{0..T-1};
class     as time with eps(x_t, t/T, keep c),  keep = 0 with probability p_uncond = 0.1;
abar_t = prod_{s<=t} (1 - beta_s), beta = linspace(1e-4, 0.02, T = 300);
flow matching, x_0 = eps the noise and x_1 = x the digit (the draws: eps, then t, then keep):
pure-noise  L = ||D(eps) - x||^2;
fm-time   L = ||u(x_t, t) - (x_1 - x_0)||^2,  x_t = (1 - t) x_0 + t x_1,  t ~ U[0, 1];
fm-class  as fm-time with u(x_t, t, keep c).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from harness.diffusion import ddpm_step
from harness.denoisers.mnist import MnistDenoiser
from harness.guides import CFG
from harness.partb import evaluate
from harness.partb.checkpoints import load_model
from harness.partb.fid import fid_lite, load_classifier
from harness.partb.mnist import load_mnist
from harness.partb.sampling import ddpm_sample, fm_sample
from harness.partb.kinds import KINDS
from harness.partb.train import PRESETS, Trainer, _keep_mask, build_model, loss_fn, model_inputs
from harness.schedules import linear_alphas_cumprod
from harness.seeding import generators, randn

T, P_UNCOND, SIGMA = 300, 0.1, 0.5
ABAR = np.cumprod(1 - np.linspace(1e-4, 0.02, T))  # float64, from the writeups' beta schedule


class LinearStub:
    """A fixed linear map of every input: 0.5 x + 2 t + sum_k c_k W_k, so a miswired input or target moves
    the loss."""

    W = torch.linspace(-1, 1, 10 * 28 * 28).reshape(10, 1, 28, 28)

    def __call__(self, x, t=None, c=None):
        out = 0.5 * x
        if t is not None:
            out = out + 2 * t.reshape(-1, 1, 1, 1).to(x.dtype)
        if c is not None:
            out = out + torch.einsum("nk,kchw->nchw", c.to(x.dtype), self.W.to(x.dtype))
        return out


def independent_loss(kind: str, x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> float:
    """The module docstring's loss in float64, from draws eps, t, keep made in that order from gen."""
    stub, x = LinearStub(), x.double()
    eps = torch.randn(x.shape, generator=gen).double()
    if kind in ("denoiser", "pure-noise"):
        return float(((stub(x + SIGMA * eps if kind == "denoiser" else eps) - x) ** 2).mean())
    if kind.startswith("fm-"):
        t = torch.rand(len(x), generator=gen).double()
        x_t, t_in, target = (1 - t.reshape(-1, 1, 1, 1)) * eps + t.reshape(-1, 1, 1, 1) * x, t, x - eps
    else:
        t = torch.randint(0, T, (len(x),), generator=gen)
        abar = torch.from_numpy(ABAR[t.numpy()]).reshape(-1, 1, 1, 1)
        x_t, t_in, target = abar.sqrt() * x + (1 - abar).sqrt() * eps, t / T, eps
    if kind in ("time", "fm-time"):
        return float(((stub(x_t, t_in) - target) ** 2).mean())
    keep = torch.rand(len(x), generator=gen) >= P_UNCOND
    assert 0 < keep.sum() < len(x), "the draws keep some classes and drop some"
    c = torch.eye(10, dtype=torch.float64)[labels] * keep[:, None]
    return float(((stub(x_t, t_in, c) - target) ** 2).mean())


def test_the_schedule_is_the_writeups():
    """linear_alphas_cumprod(300) == ABAR; every recipe has T = 300, p_uncond = 0.1 and sigma = 0.5."""
    torch.testing.assert_close(linear_alphas_cumprod(T), torch.from_numpy(ABAR), rtol=1e-12, atol=0)
    for recipe in (*PRESETS["course"].values(), *PRESETS["quick"].values()):
        assert (recipe.T, recipe.p_uncond, recipe.sigma) == (T, P_UNCOND, SIGMA), recipe


@pytest.mark.parametrize("kind", KINDS)
def test_loss_fn_is_the_objective(kind):
    """loss_fn with the stub == the independent loss for the same seed."""
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(32) % 10
    ours = loss_fn(LinearStub(), kind, x, labels, PRESETS["course"][kind], torch.Generator().manual_seed(7),
                   linear_alphas_cumprod(T))
    assert float(ours) == pytest.approx(independent_loss(kind, x, labels, torch.Generator().manual_seed(7)), rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_the_trainer_optimises_the_objective(kind, tmp_path):
    """What an Adam step minimises (Trainer.batch_inputs, then batch_loss) == the independent loss on the
    batch's digits, drawn from the run's generator."""
    recipe = dataclasses.replace(PRESETS["quick"][kind], num_hiddens=4, subset=32, batch_size=16, test_subset=8)
    trainer = Trainer(recipe, tmp_path)
    trainer.forward_model = LinearStub()
    idx = torch.randperm(32, generator=torch.Generator().manual_seed(0))[:16]
    state = trainer.gen.get_state()
    loss = trainer.batch_loss(*trainer.batch_inputs(idx), len(idx))
    want = independent_loss(kind, trainer.x[idx], trainer.y[idx], torch.Generator().set_state(state))
    assert float(loss) == pytest.approx(want, rel=1e-5)


def assert_rate(zeroed: torch.Tensor, p: float) -> None:
    """k of n rows zeroed, k ~ Binomial(n, p): |k - n p| <= 5 sqrt(n p (1 - p))."""
    n, k = zeroed.numel(), int(zeroed.sum())
    assert abs(k - n * p) <= 5 * math.sqrt(n * p * (1 - p)), f"{k} of {n} zeroed ({k / n:.4f}), expected rate {p}"


def test_classifier_free_dropout_is_at_the_recipes_rate():
    """Over 100k draws, the keep mask and model_inputs' class rows are zero at rate p_uncond = 0.1; kept
    rows are the exact one-hot of their label."""
    n, recipe = 100_000, PRESETS["course"]["class"]
    assert_rate(_keep_mask(n, recipe.p_uncond, torch.Generator().manual_seed(0)) == 0, P_UNCOND)
    labels = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(1))
    (_, _, c), _ = model_inputs("class", torch.zeros(n, 1, 1, 1), labels, recipe, torch.Generator().manual_seed(2),
                                linear_alphas_cumprod(T))
    zeroed = (c == 0).all(1)
    assert_rate(zeroed, P_UNCOND)
    assert torch.equal(c[~zeroed], torch.eye(10)[labels[~zeroed]])


@pytest.mark.parametrize("wrong", ["rate 0.2", "inverted"])
def test_the_rate_check_rejects_a_wrong_dropout(wrong):
    """`assert_rate` fails on masks drawn at rate 0.2, and on the inverted mask (the kept rows zeroed)."""
    keep = _keep_mask(100_000, 0.2 if wrong == "rate 0.2" else P_UNCOND, torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="zeroed"):
        assert_rate((keep == 0) if wrong == "rate 0.2" else (keep == 1), P_UNCOND)


def tiny_model(kind: str = "class") -> torch.nn.Module:
    """A random UNet (D = 4) whose output depends on t and c: PyTorch's init, U(+-1/sqrt(fan_in)),
    shrinks the signal layer by layer until eps is the output bias (c and t move it by 1e-6), so the
    weights are stretched to U(+-2.5/sqrt(fan_in)) (c moves eps by 0.1)."""
    model = build_model(kind, 4, torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                m.weight.mul_(2.5)
    return model


def guided(model, x_t: torch.Tensor, t: int, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """eps = eps_u + scale (eps_c - eps_u) from two separate calls: eps_c with one-hot c, eps_u with c = 0
    (the rows training's dropout zeroes)."""
    t_in = torch.full((len(x_t),), t / T)
    with torch.no_grad():
        eps_c = model(x_t, t_in, torch.eye(10)[labels])
        eps_u = model(x_t, t_in, torch.zeros(len(x_t), 10))
    return eps_u + scale * (eps_c - eps_u)


def test_the_class_guide_is_cfg_of_separate_calls_with_the_zero_class():
    """The mnist backend's CFG guide (digits, and the null prompt as its unconditional branch) == `guided`."""
    model = tiny_model()
    den = MnistDenoiser(model)
    assert torch.equal(den.condition([None, "", "a high quality photo"]), torch.zeros(3, 10))
    x_t = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    est = CFG(den.condition(["3", "7"]), den.condition([None, None]), 5.0)(den, x_t, 150)
    torch.testing.assert_close(est.eps, guided(model, x_t, 150, torch.tensor([3, 7]), 5.0), rtol=1e-5, atol=1e-5)


class Recorder(torch.nn.Module):
    """The model, recording the (x_t, c) of every call."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, t, c):
        self.calls.append((x.clone(), c.clone()))
        return self.model(x, t, c)


def test_class_sampling_guides_with_the_zero_class():
    """ddpm_sample (stride 150: t = 299, 149, 0, then x_0) == the loop written out with `guided` and
    ddpm_step: each call's x_t and its class rows [one-hot; zeros], and the final image, to the rounding of
    batch-dependent kernels (one thread on an AVX-512 Xeon: 3.9e-5 at most, through the stretched weights)."""
    model, labels, scale = tiny_model(), torch.tensor([2, 8]), 5.0
    spy = Recorder(model)
    out, _ = ddpm_sample(spy, linear_alphas_cumprod(T), generators(0, "s", 2), labels, scale, stride=150)
    gens = generators(0, "s", 2)
    x = randn((1, 28, 28), gens)
    steps = [(299, 149), (149, 0), (0, -1)]
    assert len(spy.calls) == len(steps)
    for (t, t_prev), (x_call, c_call) in zip(steps, spy.calls):
        torch.testing.assert_close(x_call, torch.cat([x, x]), rtol=1e-4, atol=1e-4)
        assert torch.equal(c_call, torch.cat([torch.eye(10)[labels], torch.zeros(2, 10)]))
        noise = randn((1, 28, 28), gens) if t_prev >= 0 else torch.zeros_like(x)
        x = ddpm_step(x, guided(model, x, t, labels, scale), t, t_prev, linear_alphas_cumprod(T), noise)[0]
    torch.testing.assert_close(out, x.clamp(0, 1), rtol=1e-4, atol=1e-4)


def frechet(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), S the unbiased covariances. On digits about
    39 of the 64 features are dead ReLUs, so S_1 S_2 is singular and sqrtm warns; its root is still good
    to 1e-6 here."""
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((f1.mean(0) - f2.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


@pytest.fixture(scope="module")
def clf():
    return load_classifier()[0]


def features(clf, x: torch.Tensor) -> np.ndarray:
    """The classifier's 64 penultimate features, in float64."""
    with torch.no_grad():
        return copy.deepcopy(clf).double().features(x.double()).numpy()


def first_test_digits(n: int) -> torch.Tensor:
    """MNIST test digits 0..n-1 as (n, 1, 28, 28) k / 255."""
    return torch.from_numpy(load_mnist("test")[0][:n]).float().div(255).unsqueeze(1)


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_fid_lite_is_the_frechet_distance_of_the_classifier_features(clf):
    """fid_lite(a, b) == fid_lite(b, a) == `frechet` of the features, for a set of test digits against
    other digits and against itself brightened (its distance to itself is in test_partb.py)."""
    digits = first_test_digits(300)
    a, b, shifted = digits[:150], digits[150:], (digits[:150] + 0.3).clamp(0, 1)
    for other in (b, shifted):
        want = frechet(features(clf, a), features(clf, other))
        assert want > 1
        assert fid_lite(a, other, clf) == pytest.approx(want, rel=1e-6)
        assert fid_lite(other, a, clf) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("kind", ["time", "class", "fm-time", "fm-class"])
def test_measure_compares_its_samples_with_the_first_test_digits(kind, monkeypatch):
    """measure(n): FID-lite of the n samples of its seeds (classes 0..9 repeated) against test digits 0..n-1;
    DDPM's samples at the stride, flow matching's Euler samples in num_ts steps."""
    seen = []

    def record(real, fake, over_ranks):
        seen.append((real, fake))
        return 0.0

    monkeypatch.setattr(evaluate, "fid_lite", record)
    model, n, stride, num_ts = tiny_model(kind), 10, 150, 3 if kind.startswith("fm-") else None
    evaluate.measure(kind, model, seed=0, n=n, stride=stride, num_ts=num_ts)
    [(real, fake)] = seen
    assert torch.equal(real, first_test_digits(n))
    labels = torch.arange(10) if kind.endswith("class") else None
    gens = generators(0, f"measure/{kind}", n)
    want = (ddpm_sample(model, linear_alphas_cumprod(T), gens, labels, 5.0, stride=stride)[0] if num_ts is None
            else fm_sample(model, gens, labels, 5.0, num_ts)[0])
    assert torch.equal(fake, want)


def test_measure_in_bf16_runs_the_unet_under_autocast_and_keeps_the_draws(monkeypatch):
    """measure(bf16=True): the same seeds' samples with the UNet's output rounded to bf16 (the sampler's own
    arithmetic stays float32), so on the shipped model they are close to float32's but not equal (measured:
    mean |difference| 0.003 over 10 digits at stride 30); and it says so in its result."""
    seen = []
    monkeypatch.setattr(evaluate, "fid_lite", lambda real, fake, over_ranks: seen.append(fake) or 0.0)
    fp32, bf16 = (evaluate.measure("class", load_model("class", 20), n=10, stride=30, bf16=b) for b in (False, True))
    assert (fp32["fid_bf16"], bf16["fid_bf16"]) == (False, True)
    assert seen[1].dtype == torch.float32 and not torch.equal(seen[0], seen[1])
    assert (seen[0] - seen[1]).abs().mean() < 0.02
