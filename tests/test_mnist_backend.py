"""The `mnist` backend: the class-conditioned Part B UNet behind the Part A `Denoiser` interface."""

import copy

import pytest
import torch

from harness import golden
from harness import images as im
from harness.backends import get_backend
from harness.denoisers.base import Denoiser, from_data_range, to_data_range
from harness.denoisers.mnist import PROMPT_DIGITS, digit_of
from harness.errors import UnknownName
from harness.golden import GoldenMismatch
from harness.runner import run_case
from harness.schedules import course_t, strided_timesteps
from harness.sections import SECTIONS, get_section


@pytest.fixture(scope="module")
def backend():
    return get_backend("mnist")


def test_meets_the_denoiser_interface(backend):
    den = backend.denoiser
    assert isinstance(den, Denoiser)
    assert den.image_shape == (1, 28, 28) and den.data_range == (0.0, 1.0) and len(den.alphas_cumprod) == 300
    cond = den.condition(["3", None, "", "an oil painting of an old man"])
    assert torch.equal(cond, torch.stack([torch.eye(10)[3], torch.zeros(10), torch.zeros(10), torch.eye(10)[6]]))
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        est = den(x, torch.tensor([297, 200, 100, 0]), cond)
    assert est.eps.shape == x.shape and est.v is None and torch.isfinite(est.eps).all()
    assert not torch.equal(est.eps[0], den(x[:1], torch.tensor([297]), den.condition(["4"])).eps[0])


def test_prompts_are_digits_and_unknown_prompts_name_the_valid_ones():
    assert [digit_of(str(d)) for d in range(10)] == list(range(10))
    assert digit_of(None) is digit_of("") is digit_of("a high quality photo") is None
    assert all(digit_of(text) is None or 0 <= digit_of(text) <= 9 for text in PROMPT_DIGITS)
    with pytest.raises(UnknownName, match="digits '0'..'9'"):
        digit_of("a photo of a cat")


def test_course_timesteps_map_onto_T_300():
    ts = strided_timesteps(990, 30, 300)
    assert ts[0] == 297 and ts[10] == course_t(690, 300) == 207 and ts[-1] == 0
    assert len(ts) == len(strided_timesteps(990, 30)) == 34  # i_start keeps its meaning
    assert strided_timesteps(990, 1, 300) == list(range(297, -1, -1))  # colliding steps merged
    assert strided_timesteps(990, 30, 1000) == strided_timesteps(990, 30)


def test_data_range_round_trip_is_exact_for_if_and_maps_mnist_to_unit_range(backend):
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    if_like = type("IF", (), {"data_range": (-1.0, 1.0)})()
    assert torch.equal(to_data_range(if_like, x), x) and torch.equal(from_data_range(if_like, x), x)
    y = to_data_range(backend.denoiser, x)
    assert torch.allclose(y, (x + 1) / 2) and torch.allclose(from_data_range(backend.denoiser, y), x)


def test_judge_reads_test_digits(backend):
    digits = torch.stack([im.test_image(f"mnist:{i}", 28)[0] for i in range(10)])
    labels = [im.test_image(f"mnist:{i}", 28)[1]["label"] for i in range(10)]
    assert backend.judge.classify(digits).tolist() == labels == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.allclose(backend.judge.probs(digits).sum(1), torch.ones(10))


def test_per_backend_parameters_are_parameters_of_their_sections():
    for section in SECTIONS.values():
        for backend, params in section.by_backend.items():
            assert backend in section.backends and set(params) <= set(section.params), (section.id, backend)
    assert all("mnist" in s.backends for s in SECTIONS.values() if s.part == "A")
    assert get_section("A1.4").params_for("tiny-if") == get_section("A1.4").params
    assert get_section("A1.4").params_for("mnist")["image"] == "mnist:0"


def test_digit_images(backend):
    with pytest.raises(UnknownName, match="mnist:<i>"):
        im.test_image("mnist:x", 28)
    pics = [im.hand_drawn(n, 28)[0] for n in im.DIGIT_DRAWINGS] + [im.web_image("typed3", 28)[0]]
    pics += [im.stroke_edit("mnist:2", n, 28)[0] for n in im.DIGIT_STROKES]
    for i, a in enumerate(pics):
        assert a.shape == (1, 28, 28) and -1 <= a.min() and a.max() <= 1
        assert all(not torch.equal(a, b) for b in pics[i + 1:])
    assert backend.judge.classify(torch.stack(pics[:4])).tolist() == [7, 4, 0, 3]  # drawn and typed digits read right
    with pytest.raises(UnknownName, match="landscape"):
        im.web_image("photo")


def test_text_to_image_uses_diffusers_leading_spacing(backend):
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    x = backend.text_to_image(["3", "8"], gens, num_inference_steps=10)
    assert x.shape == (2, 1, 28, 28) and -1 <= x.min() and x.max() <= 1
    assert backend.judge.classify(x).tolist() == [3, 8]


def test_a_part_a_case_on_mnist_fails_its_golden_when_a_judged_metric_or_image_moves(tmp_path):
    """A1.3 on mnist: its shipped golden passes as computed; a moved pixel or PSNR fails it."""
    out = run_case("A1.3", "mnist")
    golden.compare(out, "mnist", "cpu")
    moved = copy.deepcopy(out)
    moved.images["one_step_t500"][0, 0, 14, 14] += 0.05
    with pytest.raises(GoldenMismatch, match="one_step_t500"):
        golden.compare(moved, "mnist", "cpu", failures_root=tmp_path)
    out.metrics["one_step_t250_psnr"] += 0.5
    with pytest.raises(GoldenMismatch, match="one_step_t250_psnr"):
        golden.compare(out, "mnist", "cpu", failures_root=tmp_path)


def _relation(section_id: str, text_start: str):
    return next(r for r in get_section(section_id).relations if r.text.startswith(text_start))


def test_judged_relations_can_fail():
    falls = _relation("A1.7", "sdedit_stride30_i*_agreement")
    ok = {"sdedit_stride30_i30_agreement": 1.0, "sdedit_stride30_i20_agreement": 0.85,
          "sdedit_stride30_i10_agreement": 0.9, "sdedit_stride30_i5_agreement": 0.1}
    assert falls.holds(ok)  # 0.85 -> 0.9 is within the slack of 0.1
    assert not falls.holds({**ok, "sdedit_stride30_i10_agreement": 0.99})  # rises by more than the slack
    assert not falls.holds({**ok, "sdedit_stride30_i5_agreement": 1.0})  # ends where it began
    anagrams = _relation("A1.8", "anagram_success_rate")
    assert anagrams.holds({"anagram_success_rate": 0.65}) and not anagrams.holds({"anagram_success_rate": 0.3})
    near = _relation("A1.9", "the near prompt")
    assert near.holds({"hybrid0_near_prob": 0.3, "hybrid0_near_prob_far_only": 0.01})
    assert not near.holds({"hybrid0_near_prob": 0.3, "hybrid0_near_prob_far_only": 0.01,
                           "hybrid1_near_prob": 0.0, "hybrid1_near_prob_far_only": 0.0})
    assert all(r.applies_to("mnist") and not r.applies_to("tiny-if") for r in (falls, anagrams, near))
