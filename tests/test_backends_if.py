"""The IF backends: tiny-if is built deterministically and loads through the deepfloyd code path;
prompt embeddings are cached on disk; missing weights and the network fail loudly with one line."""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from harness.backends import get_backend
from harness.denoisers import deepfloyd
from harness.denoisers.deepfloyd import STAGE1_ID, load_deepfloyd
from harness.denoisers.prompt_cache import PromptCache
from harness.denoisers.tiny_if import tiny_if_path
from harness.errors import HarnessError, UnknownName, WeightsUnavailable
from harness.seeding import generators


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh HARNESS_CACHE for this module, so the twin is built and T5 runs here."""
    root = tmp_path_factory.mktemp("harness-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield root


@pytest.fixture(scope="module")
def backend(cache):
    root = tiny_if_path()
    return load_deepfloyd(str(root / "stage1"), str(root / "stage2"), name="tiny-if")


def test_tiny_if_build_is_deterministic(cache, backend, tmp_path, monkeypatch):
    first = tiny_if_path()
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    second = tiny_if_path()
    assert second != first and second.name == first.name
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.suffix in (".safetensors", ".json"))
    assert any(f.match("stage1/unet/*.safetensors") for f in files) and any(f.match("stage2/unet/*") for f in files)
    for f in files:
        assert (first / f).read_bytes() == (second / f).read_bytes(), f


def test_tiny_if_is_saved_like_the_hub_and_loaded_by_load_deepfloyd(backend):
    root = tiny_if_path()
    assert (root / "stage1" / "model_index.json").exists() and (root / "stage2" / "model_index.json").exists()
    registered = get_backend("tiny-if")
    assert registered.name == "tiny-if"
    for a, b in zip(registered.stage1.unet.parameters(), backend.stage1.unet.parameters(), strict=True):
        assert torch.equal(a, b)
    assert backend.denoiser.x0_clip == 1.0 and backend.denoiser.variance_type == "learned_range"


def test_denoiser_interface(backend):
    den = backend.denoiser
    assert den.image_shape == (3, 64, 64) and den.alphas_cumprod.dtype == torch.float64
    cond = den.condition([None, "a high quality photo"])
    assert cond.shape == (2, 77, 32) and not torch.equal(cond[0], cond[1])
    assert backend.stage1.text_encoder is None and backend.stage1.tokenizer is None  # T5 released after use
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        est = den(x, torch.tensor([500, 250]), cond)
    assert est.eps.shape == x.shape and est.v.shape == x.shape
    assert est.eps.dtype == est.v.dtype == torch.float32
    assert torch.isfinite(est.eps).all() and torch.isfinite(est.v).all()


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
    assert len(files) == 2 and not list(cache.folder.glob(".*tmp"))
    for f in files:
        f.write_bytes(b"\x00garbage")
    assert torch.equal(PromptCache(tmp_path, "model/x", encode).get(["ab"])[0], first[0])
    assert calls[-1] == ["ab"]  # the corrupt file was recomputed, not used
    cache._file("ab").replace(cache._file("abc"))  # a file whose metadata names another prompt
    assert cache.get(["abc"])[0, 0, 0] == 3 and calls[-1] == ["abc"]


def test_hub_weights_offline_fail_with_one_line_that_says_how_to_get_them(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable) as err:
        load_deepfloyd(STAGE1_ID)
    msg = str(err.value)
    assert "\n" not in msg and "licence" in msg and "huggingface-cli login" in msg and "HARNESS_IF_STAGE1" in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_network_attempt_fails_loudly():
    """Tests run offline: a hub download attempt in a fresh process raises instead of fetching."""
    code = ("import os; assert os.environ['HF_HUB_OFFLINE'] == '1'\n"
            "from huggingface_hub import hf_hub_download\n"
            "try:\n    hf_hub_download('DeepFloyd/IF-I-XL-v1.0', 'model_index.json')\n"
            "except Exception as e:\n    print(type(e).__name__); raise SystemExit(0)\n"
            "raise SystemExit('downloaded')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"})
    assert res.returncode == 0, res.stderr
    assert "Offline" in res.stdout or "LocalEntryNotFound" in res.stdout


def test_missing_local_folder(tmp_path, monkeypatch):
    with pytest.raises(WeightsUnavailable, match="not available"):
        load_deepfloyd(str(tmp_path / "nope" / "stage1"), str(tmp_path / "nope" / "stage2"))
    monkeypatch.setenv("HARNESS_IF_STAGE1", str(tmp_path))  # a folder, but no model_index.json in it
    with pytest.raises(WeightsUnavailable, match="model_index.json"):
        load_deepfloyd()


def test_hub_tokenizer_without_protobuf_names_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "google.protobuf" else real(name, *a))
    with pytest.raises(HarnessError, match="pip install protobuf"):
        deepfloyd._tokenizer(STAGE1_ID)


def test_unknown_backend():
    with pytest.raises(UnknownName, match="unknown backend 'nope'; valid backends: tiny-if, deepfloyd"):
        get_backend("nope")


def test_text_to_image_and_upsample(backend):
    prompts = ["a rocket ship", "a pencil"]
    with torch.inference_mode():
        a = backend.text_to_image(prompts, generators(0, "t2i", 2), num_inference_steps=2)
        b = backend.text_to_image(prompts, generators(0, "t2i", 2), num_inference_steps=2)
        up = backend.upsample(a, prompts, generators(0, "up", 2), num_inference_steps=2)
    assert a.shape == (2, 3, 64, 64) and a.dtype == torch.float32 and torch.equal(a, b)
    assert torch.isfinite(a).all() and a.abs().max() <= 1
    assert up.shape == (2, 3, 128, 128) and torch.isfinite(up).all() and up.abs().max() <= 1


def test_fresh_embeddings_work_with_autograd(backend):
    """Embeddings straight from T5 (not from disk) are ordinary tensors: a gradient can flow through the UNet."""
    cond = backend.denoiser.condition(["a lithograph of a skull"])
    x = torch.zeros(1, 3, 64, 64, requires_grad=True)
    backend.denoiser(x, torch.tensor([500]), cond).eps.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
