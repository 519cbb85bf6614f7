"""Samplers and guides on the analytic point-mass denoiser: every loop has a known answer."""

import pytest
import torch

from harness.editing import inpaint, sdedit
from harness.filters import high_pass, low_pass
from harness.guides import CFG, VIEWS, Anagram, Hybrid, Plain
from harness.sampling import iterative_denoise, sample
from harness.schedules import strided_timesteps
from harness.seeding import generators, randn
from tests.analytic import AnalyticDenoiser, patterns

TS = strided_timesteps(990, 30)


@pytest.fixture
def den():
    return AnalyticDenoiser(patterns())


def close(a, b, tol=0.04):  # the last step (t=30 -> 0) adds noise of std ~0.006
    return (a - b).abs().max().item() < tol


def test_sampling_ends_at_the_point_mass(den):
    x = sample(den, TS, Plain(den.condition(["a", "b"])), generators(0, "s", 2))
    assert close(x[0], den.patterns[1]) and close(x[1], den.patterns[2])
    assert den.calls == [2] * (len(TS) - 1)


def test_cfg_extrapolates_linearly_in_one_batched_call(den):
    x = sample(den, TS, CFG(den.condition(["a"]), den.condition([None]), 3.0), generators(0, "s", 1))
    assert close(x[0], 3.0 * den.patterns[1])  # mu_u + g (mu_c - mu_u) with mu_u = 0
    assert set(den.calls) == {2}  # cond and uncond stacked


def test_iterative_denoise_keeps_intermediates_and_checks_arguments(den):
    x = torch.zeros(1, 3, 16, 16)
    _, kept = iterative_denoise(den, x, TS, 10, Plain(den.condition(["a"])), generators(0, "s", 1), keep=[690, 540, 0])
    assert sorted(kept) == [0, 540, 690] and torch.equal(kept[690], x)
    with pytest.raises(ValueError, match="one generator per image"):
        iterative_denoise(den, x, TS, 10, Plain(den.condition(["a"])), generators(0, "s", 2))
    with pytest.raises(ValueError, match="outside"):
        iterative_denoise(den, x, TS, 34, Plain(den.condition(["a"])), generators(0, "s", 1))


def test_result_does_not_depend_on_batch_composition(den):
    gens = generators(7, "s", 3)
    both = sample(den, TS, Plain(den.condition(["a", "b", "c"])), gens)
    alone = sample(den, TS, Plain(den.condition(["b"])), generators(7, "s", 3)[1:2])
    assert torch.equal(both[1], alone[0])


def test_same_seed_same_bits_other_seed_other_bits(den):
    run = lambda seed: sample(den, TS, Plain(den.condition(["a"])), generators(seed, "s", 1))  # noqa: E731
    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_sdedit_moves_towards_the_prompt_and_keeps_more_with_larger_i_start(den):
    x_orig = den.patterns[2:3]  # pattern "b"
    guide = Plain(den.condition(["a"]))
    far = sdedit(den, x_orig, TS, 1, guide, generators(0, "e", 1))
    near = sdedit(den, x_orig, TS, 30, guide, generators(0, "e", 1))
    assert close(far, den.patterns[1])  # the point-mass model forgets the image entirely
    assert (near - x_orig).abs().mean() < (far - x_orig).abs().mean()


def test_inpaint_keeps_the_known_region_and_fills_the_mask(den):
    x_orig = den.patterns[2:3]
    mask = torch.zeros(1, 16, 16)
    mask[:, :8] = 1
    x = inpaint(den, x_orig, mask, TS, Plain(den.condition(["a"])), generators(0, "i", 1), generators(0, "r", 1))
    assert torch.equal(x[..., 8:, :], x_orig[..., 8:, :])
    assert close(x[..., :8, :], den.patterns[1:2, :, :8])


def test_anagram_averages_views_in_one_call(den):
    guide = Anagram([VIEWS["identity"], VIEWS["flip"]], [den.condition(["a"]), den.condition(["b"])],
                    den.condition([None]), 1.0)
    x = sample(den, TS, guide, generators(0, "a", 1))
    want = (den.patterns[1] + VIEWS["flip"].invert(den.patterns[2])) / 2
    assert close(x[0], want)
    assert set(den.calls) == {4}


def test_hybrid_is_low_of_one_plus_high_of_the_other_and_the_shared_variant_agrees(den):
    outs = {}
    for shared in (False, True):
        guide = Hybrid(den.condition(["a"]), den.condition(["c"]), den.condition([None]), 2.0, 5, 1.0, shared)
        den.calls.clear()
        outs[shared] = sample(den, TS, guide, generators(0, "h", 1))
        assert set(den.calls) == {3 if shared else 4}
    want = 2.0 * (low_pass(den.patterns[1:2], 5, 1.0) + high_pass(den.patterns[3:4], 5, 1.0))
    assert close(outs[True], want, 0.05)
    assert (outs[True] - outs[False]).abs().max() < 1e-4


def test_randn_rows_come_from_their_own_generator():
    a = randn((3, 4, 4), generators(0, "n", 2))
    b = randn((3, 4, 4), generators(0, "n", 1))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], a[1])
