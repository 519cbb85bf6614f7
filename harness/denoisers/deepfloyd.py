"""DeepFloyd IF through diffusers: stage 1 as the course's denoiser, text-to-image, stage-2 upsampling.

The same code loads the hub weights (``DeepFloyd/IF-I-XL-v1.0``, ``DeepFloyd/IF-II-L-v1.0``) and a
local folder (``HARNESS_IF_STAGE1``/``HARNESS_IF_STAGE2``, or the tiny-if twin's save_pretrained output).
T5 is loaded only to embed prompts that are not in the on-disk cache, then released.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from harness.denoisers.base import NoiseEstimate
from harness.denoisers.prompt_cache import PromptCache
from harness.errors import WeightsUnavailable
from harness.paths import cache_dir

STAGE1_ID = "DeepFloyd/IF-I-XL-v1.0"
STAGE2_ID = "DeepFloyd/IF-II-L-v1.0"
NO_EXTRAS = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)


def _unavailable(source: str, env: str, err: Exception) -> WeightsUnavailable:
    reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    page = f"https://huggingface.co/{source}" if not Path(source).exists() else source
    return WeightsUnavailable(
        f"DeepFloyd IF weights {source!r} are not available ({type(err).__name__}: {reason}): accept the licence "
        f"on {page}, run `huggingface-cli login` (or set HF_TOKEN) with network access, or set {env} to a "
        "local folder with the weights")


def _load(cls, source: str, env: str, dtype: torch.dtype, **kwargs):
    """cls.from_pretrained(source) with every way of not getting the weights as WeightsUnavailable."""
    looks_local = Path(source).is_dir() or source.startswith((".", "/", "~")) or source.count("/") != 1
    if looks_local and not Path(source).expanduser().is_dir():
        raise _unavailable(source, env, FileNotFoundError(f"no folder {source}"))
    try:
        return cls.from_pretrained(str(Path(source).expanduser()) if looks_local else source, dtype=dtype,
                                   low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None, **kwargs)
    except (OSError, ValueError, EnvironmentError) as e:  # hub offline, gated, missing files
        raise _unavailable(source, env, e) from None


class IFDenoiser:
    """Stage 1 of IF as a `Denoiser`: eps and the learned-range value v from the 6-channel UNet output."""

    variance_type = "learned_range"

    def __init__(self, name: str, pipe, prompts: PromptCache, device: torch.device, x0_clip: float | None):
        self.name, self.unet, self.prompts = name, pipe.unet, prompts
        self.device, self.dtype, self.x0_clip = device, pipe.unet.dtype, x0_clip
        self.alphas_cumprod = pipe.scheduler.alphas_cumprod.to(torch.float64).cpu()
        size = pipe.unet.config.sample_size
        self.image_shape = (3, size, size)

    def condition(self, prompts: Sequence[str | None]) -> torch.Tensor:
        return self.prompts.get(prompts).to(self.device, self.dtype)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> NoiseEstimate:
        out = self.unet(x_t.to(self.device, self.dtype), t.to(self.device), encoder_hidden_states=cond,
                        return_dict=False)[0]
        eps, v = out.float().split(x_t.shape[1], dim=1)
        return NoiseEstimate(eps, v)


@dataclass
class IFBackend:
    """A loaded IF model: ``denoiser`` (stage 1, for the course's loops), ``text_to_image`` (the
    diffusers stage-1 pipeline) and ``upsample`` (stage 2)."""

    name: str
    denoiser: IFDenoiser
    stage1: object
    stage2: object
    device: torch.device

    def _embeds(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.denoiser.condition(prompts), self.denoiser.condition([None] * len(prompts))

    def text_to_image(self, prompts: Sequence[str], generators: list[torch.Generator], num_inference_steps: int = 20,
                      guidance_scale: float = 7.0, progress: bool = False) -> torch.Tensor:
        """IFPipeline with cached embeddings: (B, 3, 64, 64) in [-1, 1], float32 CPU."""
        cond, uncond = self._embeds(prompts)
        self.stage1.set_progress_bar_config(disable=not progress)
        images = self.stage1(prompt_embeds=cond, negative_prompt_embeds=uncond, num_inference_steps=num_inference_steps,
                             guidance_scale=guidance_scale, generator=list(generators), output_type="pt").images
        return images.float().cpu().clamp(-1, 1)

    def upsample(self, images: torch.Tensor, prompts: Sequence[str], generators: list[torch.Generator],
                 num_inference_steps: int = 20, guidance_scale: float = 4.0, noise_level: int = 250,
                 progress: bool = False) -> torch.Tensor:
        """IFSuperResolutionPipeline on (B, 3, 64, 64) in [-1, 1] -> (B, 3, S, S) in [-1, 1] (S = 256 for IF-II)."""
        cond, uncond = self._embeds(prompts)
        self.stage2.set_progress_bar_config(disable=not progress)
        out = self.stage2(image=images.to(self.device, self.stage2.unet.dtype), prompt_embeds=cond,
                          negative_prompt_embeds=uncond, num_inference_steps=num_inference_steps,
                          guidance_scale=guidance_scale, noise_level=noise_level, generator=list(generators),
                          output_type="pt").images
        return out.float().cpu().clamp(-1, 1)


def _encoder(stage1: str, pipe, dtype: torch.dtype, device: torch.device):
    """The PromptCache callback: load T5 for the missing prompts only, embed them the IF way, drop T5."""
    def encode(prompts: list[str]) -> torch.Tensor:
        from transformers import T5EncoderModel

        pipe.text_encoder = _load(T5EncoderModel, stage1, "HARNESS_IF_STAGE1", dtype, subfolder="text_encoder").to(device)
        try:
            embeds, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=device, clean_caption=False)
        finally:
            pipe.text_encoder = None
            gc.collect()
        return embeds
    return encode


def _x0_clip(stage1: str) -> float | None:
    """A model folder may declare that its clean estimates are clamped (harness.json); the real IF does not."""
    meta = Path(stage1) / "harness.json"
    return json.loads(meta.read_text()).get("x0_clip") if meta.is_file() else None


def load_deepfloyd(stage1: str | None = None, stage2: str | None = None, device: str | torch.device = "cpu",
                   name: str = "deepfloyd") -> IFBackend:
    """Load IF stage 1 and 2 from hub ids or folders (default: HARNESS_IF_STAGE1/2, else the hub);
    fp16 on CUDA, fp32 on CPU. Raises WeightsUnavailable with how to get them."""
    from diffusers import IFPipeline, IFSuperResolutionPipeline

    stage1 = stage1 or os.environ.get("HARNESS_IF_STAGE1") or STAGE1_ID
    stage2 = stage2 or os.environ.get("HARNESS_IF_STAGE2") or STAGE2_ID
    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    variant = {"variant": "fp16"} if dtype == torch.float16 and not Path(stage1).is_dir() else {}
    pipe1 = _load(IFPipeline, stage1, "HARNESS_IF_STAGE1", dtype, text_encoder=None, **NO_EXTRAS, **variant).to(device)
    pipe2 = _load(IFSuperResolutionPipeline, stage2, "HARNESS_IF_STAGE2", dtype, text_encoder=None, **NO_EXTRAS,
                  **variant).to(device)
    prompts = PromptCache(cache_dir() / "prompt-embeds", f"{name}-{stage1}-{str(dtype).removeprefix('torch.')}", _encoder(stage1, pipe1, dtype, device))
    denoiser = IFDenoiser(name, pipe1, prompts, device, _x0_clip(stage1))
    return IFBackend(name, denoiser, pipe1, pipe2, device)
