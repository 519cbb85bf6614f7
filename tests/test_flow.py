"""Flow matching (Part B as the course teaches it since 2025) against independent computations: the
equations on hand-built values, the training objective on a linear stub (`independent_loss`), Euler on a
model whose velocity is known (`AnalyticFlow`: at T steps it equals the closed form), the UNet's
multiplicative time conditioning wired by hand; and each planted bug of issue 32 failing these checks.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from harness import diffusion, flow
from harness.cli import main
from harness.errors import BadValue
from harness.partb import checkpoints, train
from harness.partb.evaluate import measure
from harness.partb.kinds import NUM_TS
from harness.partb.mnist import load_mnist
from harness.partb.sampling import fm_sample
from harness.partb.train import PRESETS, Trainer, build_model, loss_fn, model_inputs
from harness.partb.unet import TimeConditionalUNet
from harness.schedules import linear_alphas_cumprod
from harness.seeding import generators, randn
from tests.analytic import AnalyticFlow, digit_patterns
from tests.test_partb_training import LinearStub, independent_loss, tiny_model


def test_the_equations_on_hand_built_values():
    """x_t = (1 - t) x_0 + t x_1 per sample (x_0 at t = 0, x_1 at t = 1), u = x_1 - x_0, t_i = i / T and
    x + (1/T) u, each against the equation in float64."""
    x_0 = torch.linspace(-1, 1, 3 * 4, dtype=torch.float64).reshape(3, 1, 2, 2)
    x_1 = torch.linspace(0, 1, 3 * 4, dtype=torch.float64).reshape(3, 1, 2, 2).flip(0)
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    x_t = flow.interpolate(x_0, x_1, t)
    assert torch.equal(x_t[0], x_0[0]) and torch.equal(x_t[2], x_1[2])
    torch.testing.assert_close(x_t[1], 0.75 * x_0[1] + 0.25 * x_1[1], rtol=0, atol=1e-15)
    assert torch.equal(flow.velocity_target(x_0, x_1), x_1 - x_0)
    T = 8
    times = flow.step_time(torch.arange(T), T)
    assert times.dtype == torch.float32 and torch.equal(times, torch.tensor([i / T for i in range(T)]))
    assert torch.equal(flow.euler_step(x_0, x_1, T), x_0 + x_1 / T)
    u_c, u_u = x_1, x_0
    assert torch.equal(diffusion.cfg(u_c, u_u, 5.0), u_u + 5.0 * (u_c - u_u))


# -- the checks: each planted bug must fail at least one ---------------------------------------------------

def check_objective(kind: str) -> None:
    """loss_fn with the linear stub == the independent loss from the same draws; the model's t lies in [0, 1]."""
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(32) % 10
    ours = loss_fn(LinearStub(), kind, x, labels, PRESETS["course"][kind], torch.Generator().manual_seed(7),
                   linear_alphas_cumprod(300))
    assert float(ours) == pytest.approx(independent_loss(kind, x, labels, torch.Generator().manual_seed(7)), rel=1e-5)
    (_, t, *_), _ = model_inputs(kind, torch.zeros(1000, 1, 1, 1), torch.arange(1000) % 10, PRESETS["course"][kind],
                                 torch.Generator().manual_seed(0), linear_alphas_cumprod(300))
    assert 0 <= float(t.min()) and float(t.max()) <= 1, f"t in [{float(t.min())}, {float(t.max())}]"


def check_euler(labels: torch.Tensor | None, guidance_scale: float = 5.0, num_ts: int = 7) -> None:
    """fm_sample on `AnalyticFlow` == the closed form x at t_i = (1 - t_i) x_0 + t_i mu at every step i,
    x_0 the sample's own draws and mu the pattern (under CFG, g mu_c: the zero class's mu is 0); the model
    is called once per step at t_i = i / T (and once more for the unconditional branch, in the same call)."""
    model = AnalyticFlow(digit_patterns())
    n = 2 if labels is None else len(labels)
    x_0 = randn((1, 28, 28), generators(0, "euler", n))
    with torch.no_grad():
        mu = model.target(None if labels is None else guidance_scale * torch.eye(10)[labels])
    _, kept = fm_sample(model, generators(0, "euler", n), labels, guidance_scale, num_ts, keep=range(num_ts + 1))
    assert len(model.times) == num_ts
    for i, t in enumerate(model.times):
        assert torch.equal(t, torch.full_like(t, i / num_ts)), f"step {i} called the model at t = {t.tolist()}"
    for i in range(num_ts + 1):
        torch.testing.assert_close(kept[i], (1 - i / num_ts) * x_0 + i / num_ts * mu, rtol=1e-5, atol=1e-5)


def independent_fm_unet(model, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """The course's conditioned UNet wired by hand from the model's blocks: time only, unflatten * t1 and
    up1 * t2; class, c1 * unflatten + t1 and c2 * up1 + t2."""
    hw = lambda v: v[:, :, None, None]  # noqa: E731
    t = t[:, None]
    x0 = model.conv_in(x)
    x1 = model.down1(x0)
    x2 = model.down2(x1)
    u = model.unflatten(model.flatten(x2))
    t1, t2 = hw(model.fc1_t(t)), hw(model.fc2_t(t))
    u = u * t1 if c is None else hw(model.fc1_c(c)) * u + t1
    y = model.up1(torch.cat([u, x2], 1))
    y = y * t2 if c is None else hw(model.fc2_c(c)) * y + t2
    y = model.up2(torch.cat([y, x1], 1))
    return model.conv_out(model.conv_mid(torch.cat([y, x0], 1)))


def check_conditioning(kind: str) -> None:
    """The kind's UNet (build_model) == `independent_fm_unet` on a batch with several t (and classes)."""
    model = tiny_model(kind)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.1, 0.5, 0.9])
    c = None if kind == "fm-time" else torch.cat([torch.eye(10)[[3, 7]], torch.zeros(1, 10)])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t) if c is None else model(x, t, c), independent_fm_unet(model, x, t, c))


CHECKS = {
    "objective fm-time": lambda: check_objective("fm-time"),
    "objective fm-class": lambda: check_objective("fm-class"),
    "euler fm-time": lambda: check_euler(None),
    "euler fm-class cfg 5": lambda: check_euler(torch.tensor([3, 8])),
    "conditioning fm-time": lambda: check_conditioning("fm-time"),
    "conditioning fm-class": lambda: check_conditioning("fm-class"),
}


@pytest.mark.parametrize("check", list(CHECKS))
def test_the_code_passes_the_checks(check):
    CHECKS[check]()


def _plant(monkeypatch, function, bug) -> None:
    """Give ``function`` the body of ``bug``: every module that imported it runs the bug."""
    monkeypatch.setattr(function, "__code__", bug.__code__)


def swapped(x_0, x_1, t):
    t = t.reshape(-1, *([1] * (x_1.dim() - 1))).to(x_1.dtype)
    return (1 - t) * x_1 + t * x_0


BUGS = {
    "x_0 and x_1 swapped": (lambda mp: _plant(mp, flow.interpolate, swapped), ["objective fm-time", "objective fm-class"]),
    "target x_1": (lambda mp: _plant(mp, flow.velocity_target, lambda x_0, x_1: x_1), ["objective fm-time", "objective fm-class"]),
    "t ~ U{0..T-1} in training": (lambda mp: _plant(mp, train._uniform_t, lambda n, gen: torch.randint(0, 300, (n,), generator=gen).float()),
                                  ["objective fm-time", "objective fm-class"]),
    "t = i in sampling": (lambda mp: _plant(mp, flow.step_time, lambda i, num_ts: i.to(torch.float32)),
                          ["euler fm-time", "euler fm-class cfg 5"]),
    "Euler step 1/(T-1)": (lambda mp: _plant(mp, flow.euler_step, lambda x, u, num_ts: x + u / (num_ts - 1)),
                           ["euler fm-time", "euler fm-class cfg 5"]),
    "CFG around the conditional": (lambda mp: _plant(mp, diffusion.cfg, lambda c, u, s: c + s * (c - u)),
                                   ["euler fm-class cfg 5"]),
    "additive time conditioning": (lambda mp: mp.setitem(train.MODELS, "fm-time", TimeConditionalUNet), ["conditioning fm-time"]),
}


@pytest.mark.parametrize("bug, check", [(bug, check) for bug, (_, checks) in BUGS.items() for check in checks])
def test_a_planted_bug_fails_its_checks(bug, check, monkeypatch):
    """Each bug of issue 32 planted in the code (the function's body replaced, or the model table changed)
    makes the named check fail."""
    BUGS[bug][0](monkeypatch)
    with pytest.raises(AssertionError):
        CHECKS[check]()


# -- sampling, presets, training ---------------------------------------------------------------------------

def test_sampling_is_deterministic_and_batch_independent():
    model = build_model("fm-class", 8, torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 2, 3])
    a, _ = fm_sample(model, generators(0, "s", 3), labels, num_ts=5)
    b, _ = fm_sample(model, generators(0, "s", 3), labels, num_ts=5)
    one, _ = fm_sample(model, generators(0, "s", 3)[1:2], labels[1:2], num_ts=5)
    assert torch.equal(a, b) and torch.allclose(a[1], one[0], atol=1e-5)
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("bad, says", [
    (dict(num_ts=0), "num_ts 0: Euler needs a positive count"),
    (dict(guidance_scale="5"), "guidance scale '5' is not a number"),
    (dict(guidance_scale=float("nan")), "guidance scale nan is not a number"),
    (dict(model="class"), "a 'class' UNet where a 'fm-class' one belongs: load a fm-class checkpoint"),
])
def test_bad_sampling_arguments_are_one_line(bad, says):
    model = build_model(bad.pop("model", "fm-class"), 4)
    with pytest.raises(BadValue, match=says) as e:
        fm_sample(model, generators(0, "s", 1), torch.tensor([1]), **bad)
    assert "\n" not in str(e.value)
    with pytest.raises(BadValue, match="a 'time' UNet where a 'fm-time' one belongs"):
        fm_sample(build_model("time", 4), generators(0, "s", 1))
    with pytest.raises(BadValue, match="num_ts 0: Euler needs"):  # measure passes it on, not its default
        measure("fm-time", build_model("fm-time", 4), n=2, num_ts=0)


def test_presets_are_the_courses():
    """1.2.3: D = 128, batch 256, Adam 1e-4, 5 epochs; time and class: D = 64, batch 64, Adam 1e-2 decayed by
    0.1^(1/epochs) per epoch, 10 epochs, checkpoints 1, 5, 10, p_uncond 0.1; Euler 50 and 300 steps."""
    course = PRESETS["course"]
    assert dataclasses.astuple(course["pure-noise"])[1:6] == (128, 256, 1e-4, 5, (1, 5))
    for kind in ("fm-time", "fm-class"):
        r = course[kind]
        assert (r.num_hiddens, r.batch_size, r.lr, r.epochs, r.save_epochs, r.lr_decay) == (64, 64, 1e-2, 10, (1, 5, 10), True)
        assert r.p_uncond == 0.1 and r.subset is None and PRESETS["quick"][kind].save_epochs == (1, 5, 10)
    assert NUM_TS == {"fm-time": 50, "fm-class": 300}
    assert build_model("fm-time", 4).time_conditioning == "multiply" and build_model("time", 4).time_conditioning == "add"


@pytest.mark.parametrize("kind", ["pure-noise", "fm-class"])
def test_training_a_flow_kind_lowers_its_loss_and_resumes_bitwise(kind, tmp_path):
    """Two epochs straight == one epoch, save_state, a new Trainer's load_state, one epoch (weights, logs);
    the class recipe's ExponentialLR steps once per epoch: lr 1e-2 * 0.1^(e/2). (fm-time's draws are
    fm-class's without the mask: test_partb_training.py.)"""
    recipe = dataclasses.replace(PRESETS["quick"][kind], epochs=2, save_epochs=(2,), subset=128, num_hiddens=4,
                                 batch_size=32, test_subset=32)
    straight = Trainer(recipe, tmp_path / "a")
    for _ in range(2):
        straight.train_epoch(progress=False)
    first = Trainer(recipe, tmp_path / "b")
    first.train_epoch(progress=False)
    first.save_state()
    resumed = Trainer(recipe, tmp_path / "b")
    assert resumed.load_state() and resumed.epoch == 1
    resumed.train_epoch(progress=False)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.train_log == resumed.train_log and straight.test_log == resumed.test_log
    if recipe.lr_decay:
        assert straight.opt.param_groups[0]["lr"] == pytest.approx(recipe.lr * 0.1)
    assert straight.train_log[-1][2] < straight.train_log[0][2]


def test_measure_of_pure_noise_is_the_mse_to_the_training_mean():
    """MSE of D(eps) over n draws of its seeds against the mean of the 60000 training digits."""
    model = tiny_model("pure-noise")
    eps = randn((1, 28, 28), generators(0, "measure/pure-noise", 8))
    mean = torch.from_numpy(load_mnist("train")[0]).double().mean(0) / 255
    with torch.no_grad():
        want = float(((model(eps).double() - mean) ** 2).mean())
    assert measure("pure-noise", model, n=8)["mse_to_train_mean"] == pytest.approx(want, rel=1e-5)


def test_train_and_measure_a_flow_kind_from_the_command_line(tmp_path):
    """`train fm-class` writes its checkpoint (the recipe's kind inside); `measure` samples it with Euler."""
    args = ["train", "fm-class", "--out", str(tmp_path / "run"), "--max-steps", "2", "--no-progress", "--fp32"]
    for pair in ("num_hiddens=4", "subset=64", "test_subset=32", "epochs=1", "save_epochs=[1]"):
        args += ["--set", pair]
    assert main(args) == 0
    model, meta = checkpoints.load("fm-class", 1, tmp_path / "run")
    assert model.kind == "fm-class" and json.loads(meta["recipe"])["lr"] == PRESETS["quick"]["fm-class"].lr
    out = tmp_path / "m.json"
    assert main(["measure", "fm-class", "--checkpoints", str(tmp_path / "run"), "--epoch", "1", "--samples", "10",
                 "--num-ts", "2", "--guidance-scale", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["num_ts"], result["fid_samples"]) == (2, 10) and 0 <= result["accuracy_cfg3"] <= 1
