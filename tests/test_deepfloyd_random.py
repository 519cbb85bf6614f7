"""deepfloyd-random: IF's UNets at their real size (counted on the meta device), and the same loader at 1/32
of the widths on CPU, run through the deepfloyd code path; at the real size without CUDA it says why."""

import pytest
import torch

from harness.backends import BACKENDS, backend_names, get_backend, has_goldens
from harness.denoisers.deepfloyd_random import (MIN_FREE_GIB, SEED, STAGE1_XL, STAGE2_L, RandomPrompts,
                                                load_deepfloyd_random, meta_unet, scaled)
from harness.denoisers.tiny_if import init_random_
from harness.errors import BackendUnavailable
from harness.guides import Plain
from harness.sampling import sample
from harness.sections import get_section
from harness.seeding import generators

SHRINK = 32  # the smallest the configs allow: a stage-1 call is ~6 GFLOP per image (2.9 TFLOP at the real size)


@pytest.fixture(scope="module")
def small():
    return load_deepfloyd_random("cpu", shrink=SHRINK)


def test_real_configs_have_ifs_parameter_counts_and_fields():
    unet1, unet2 = meta_unet(STAGE1_XL), meta_unet(STAGE2_L)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(unet1) == pytest.approx(4.3e9, rel=0.02) and count(unet2) == pytest.approx(1.2e9, rel=0.02)
    for unet, size, channels in ((unet1, 64, 3), (unet2, 256, 6)):
        c = unet.config
        assert (c.sample_size, c.in_channels, c.out_channels) == (size, channels, 6)
        assert (c.encoder_hid_dim, c.encoder_hid_dim_type, c.addition_embed_type) == (4096, "text_proj", "text")
    assert unet1.config.class_embed_type is None and unet2.config.class_embed_type == "timestep"


def test_shrink_divides_widths_and_keeps_heads():
    small1 = scaled(STAGE1_XL, SHRINK)
    assert small1["block_out_channels"] == (22, 44, 66, 88) and small1["encoder_hid_dim"] == 128
    heads = lambda c: [w // c["attention_head_dim"] for w in c["block_out_channels"]]  # noqa: E731
    assert heads(small1) == heads(STAGE1_XL) and scaled(STAGE2_L, 1) == STAGE2_L
    with pytest.raises(ValueError, match="shrink"):
        scaled(STAGE1_XL, 64)


def test_real_size_without_cuda_says_why():
    assert "deepfloyd-random" in BACKENDS and "deepfloyd-random" not in backend_names(embedded=True)
    assert "deepfloyd-random" in get_section("A1.4").backends and not has_goldens("deepfloyd-random")
    with pytest.raises(BackendUnavailable) as err:
        get_backend("deepfloyd-random", "cpu")
    reason = "this machine has no CUDA" if not torch.cuda.is_available() else "got --device cpu"
    assert str(err.value) == ("deepfloyd-random builds IF-I-XL (4.3B) and IF-II-L (1.2B) at their real size: needs "
                              f"--device cuda with >= {MIN_FREE_GIB} GiB free; {reason}")


def test_small_build_runs_the_denoiser_and_a_sampling_loop(small):
    den = small.denoiser
    assert den.name == "deepfloyd-random" and den.x0_clip == 1.0 and den.image_shape == (3, 64, 64)
    assert small.stage1.unet.dtype == torch.float32 and small.stage2.unet.config.sample_size == 256
    cond = den.condition(["a high quality photo"])
    assert cond.shape == (1, 77, 128)
    with torch.inference_mode():
        est = den(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)), torch.tensor([500]), cond)
        x = sample(den, [990, 500, 0], Plain(cond), generators(0, "test", 1))
    assert est.eps.shape == est.v.shape == (1, 3, 64, 64) and torch.isfinite(est.eps).all() and torch.isfinite(est.v).all()
    assert x.shape == (1, 3, 64, 64) and torch.isfinite(x).all()


def test_same_seed_gives_bitwise_equal_weights(small):
    again = load_deepfloyd_random("cpu", shrink=SHRINK)
    for stage in ("stage1", "stage2"):
        ours, theirs = getattr(small, stage).unet.state_dict(), getattr(again, stage).unet.state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_meta_build_equals_a_normally_constructed_model(small):
    """to_empty leaves no buffer uninitialised: the UNet has none, and the forward matches a UNet built
    the ordinary way (CPU storage, constructor init) and then given the same draws."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        plain = UNet2DConditionModel(**scaled(STAGE1_XL, SHRINK))
    init_random_(plain, torch.Generator().manual_seed(SEED), out_scale=0.1).eval()
    built = small.stage1.unet
    assert list(built.buffers()) == [] == list(plain.buffers())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    cond = small.denoiser.condition(["a", None])
    with torch.inference_mode():
        ours, theirs = (m(x, torch.tensor([10, 900]), encoder_hidden_states=cond).sample for m in (built, plain))
    assert torch.equal(ours, theirs)


def test_pipelines_run_text_to_image_and_upsampling(small):
    with torch.inference_mode():
        low = small.text_to_image(["a rocket ship"], generators(0, "t2i", 1), num_inference_steps=1)
        high = small.upsample(low, ["a rocket ship"], generators(0, "up", 1), num_inference_steps=1)
    assert low.shape == (1, 3, 64, 64) and high.shape == (1, 3, 256, 256) and torch.isfinite(high).all()


def test_prompt_embeddings_are_seeded_by_the_text():
    prompts = RandomPrompts(4096)
    a, b, a_again, null = prompts.get(["a dog", "a cat", "a dog", None])
    assert a.shape == (77, 4096) and a.dtype == torch.float32
    assert torch.equal(a, a_again) and not torch.equal(a, b) and not torch.equal(a, null)
    assert torch.equal(null, prompts.get([""])[0])
