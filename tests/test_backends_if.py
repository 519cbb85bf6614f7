"""The IF backends: tiny-if is built deterministically and loads through the deepfloyd code path;
missing weights and the network fail loudly with one line."""

import subprocess
import sys

import pytest
import torch

from harness.backends import get_backend
from harness.denoisers.deepfloyd import STAGE1_ID, load_deepfloyd
from harness.denoisers.prompt_cache import PromptCache
from harness.denoisers.tiny_if import build, tiny_if_path
from harness.errors import UnknownName, WeightsUnavailable
from harness.seeding import generators


@pytest.fixture(scope="module")
def backend():
    return get_backend("tiny-if")


def test_tiny_if_build_is_deterministic(tmp_path):
    build(tmp_path / "a")
    build(tmp_path / "b")
    for part in ("stage1/unet", "stage1/text_encoder", "stage2/unet"):
        a = next((tmp_path / "a" / part).glob("*.safetensors")).read_bytes()
        b = next((tmp_path / "b" / part).glob("*.safetensors")).read_bytes()
        assert a == b, part
    assert (tmp_path / "a/stage1/tokenizer/tokenizer.json").read_bytes() == (tmp_path / "b/stage1/tokenizer/tokenizer.json").read_bytes()


def test_tiny_if_is_saved_like_the_hub_and_loaded_by_load_deepfloyd(backend):
    root = tiny_if_path()
    assert (root / "stage1" / "model_index.json").exists() and (root / "stage2" / "model_index.json").exists()
    again = load_deepfloyd(str(root / "stage1"), str(root / "stage2"), name="tiny-if")
    for a, b in zip(again.stage1.unet.parameters(), backend.stage1.unet.parameters()):
        assert torch.equal(a, b)
    assert again.denoiser.x0_clip == 1.0 and again.denoiser.variance_type == "learned_range"


def test_denoiser_interface(backend):
    den = backend.denoiser
    assert den.image_shape == (3, 64, 64) and den.alphas_cumprod.dtype == torch.float64
    cond = den.condition([None, "a high quality photo"])
    assert cond.shape[:2] == (2, 77) and not torch.equal(cond[0], cond[1])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        est = den(x, torch.tensor([500, 250]), cond)
    assert est.eps.shape == x.shape and est.v.shape == x.shape
    assert est.eps.dtype == torch.float32 and torch.isfinite(est.eps).all() and torch.isfinite(est.v).all()


def test_prompt_cache_reuses_and_repairs(tmp_path):
    calls = []

    def encode(prompts):
        calls.append(list(prompts))
        return torch.stack([torch.full((4, 2), float(len(p))) for p in prompts])

    cache = PromptCache(tmp_path, "model/x", encode)
    first = cache.get(["ab", None, "ab"])
    assert calls == [["ab", ""]] and first.shape == (3, 4, 2) and first[1].sum() == 0
    assert torch.equal(cache.get(["ab"])[0], first[0]) and len(calls) == 1  # from disk, T5 not needed
    files = list(cache.folder.glob("*.safetensors"))
    assert len(files) == 2 and not list(cache.folder.glob("*.tmp"))
    for f in files:
        f.write_bytes(b"\x00garbage")
    assert torch.equal(PromptCache(tmp_path, "model/x", encode).get(["ab"])[0], first[0])
    assert calls[-1] == ["ab"]  # the corrupt file was recomputed, not used


def test_hub_weights_offline_fail_with_one_line_that_says_how_to_get_them(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable) as err:
        load_deepfloyd(STAGE1_ID, STAGE1_ID)
    msg = str(err.value)
    assert "\n" not in msg and "licence" in msg and "huggingface-cli login" in msg and "HARNESS_IF_STAGE1" in msg


def test_network_attempt_fails_loudly():
    """Tests run offline: a hub download attempt in a fresh process raises instead of fetching."""
    code = ("import os; assert os.environ['HF_HUB_OFFLINE'] == '1'\n"
            "from huggingface_hub import hf_hub_download\n"
            "try:\n    hf_hub_download('DeepFloyd/IF-I-XL-v1.0', 'model_index.json')\n"
            "except Exception as e:\n    print(type(e).__name__); raise SystemExit(0)\n"
            "raise SystemExit('downloaded')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"})
    assert res.returncode == 0, res.stderr
    assert "Offline" in res.stdout or "LocalEntryNotFound" in res.stdout


def test_missing_local_folder(tmp_path):
    with pytest.raises(WeightsUnavailable, match="not available"):
        load_deepfloyd(str(tmp_path / "nope" / "stage1"), str(tmp_path / "nope" / "stage2"))


def test_unknown_backend():
    with pytest.raises(UnknownName, match="valid backends: tiny-if, deepfloyd, mnist"):
        get_backend("nope")


def test_text_to_image_and_upsample(backend):
    with torch.inference_mode():
        a = backend.text_to_image(["a rocket ship", "a pencil"], generators(0, "t2i", 2), num_inference_steps=2)
        b = backend.text_to_image(["a rocket ship", "a pencil"], generators(0, "t2i", 2), num_inference_steps=2)
        up = backend.upsample(a, ["a rocket ship", "a pencil"], generators(0, "up", 2), num_inference_steps=2)
    assert a.shape == (2, 3, 64, 64) and torch.equal(a, b) and torch.isfinite(a).all()
    assert up.shape == (2, 3, 128, 128) and up.abs().max() <= 1
