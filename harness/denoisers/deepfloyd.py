"""DeepFloyd IF through diffusers: stage 1 as the course's denoiser, text-to-image, stage-2 upsampling.

The same code loads the hub weights (``DeepFloyd/IF-I-XL-v1.0``, ``DeepFloyd/IF-II-L-v1.0``) and a
local folder (``HARNESS_IF_STAGE1``/``HARNESS_IF_STAGE2``, or the tiny-if twin's save_pretrained output).
T5 and its tokenizer are loaded only to embed prompts that are not in the on-disk cache, then released.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

import torch

from harness.denoisers.base import NoiseEstimate
from harness.denoisers.prompt_cache import PromptCache
from harness.errors import HarnessError, WeightsUnavailable
from harness.paths import cache_dir

if TYPE_CHECKING:
    from diffusers import IFPipeline, IFSuperResolutionPipeline

STAGE1_ID = "DeepFloyd/IF-I-XL-v1.0"
STAGE2_ID = "DeepFloyd/IF-II-L-v1.0"
ENV = {STAGE1_ID: "HARNESS_IF_STAGE1", STAGE2_ID: "HARNESS_IF_STAGE2"}  # hub id -> variable naming a folder
NO_EXTRAS = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)


def _is_local(source: str) -> bool:
    """A folder path, as opposed to an ``owner/name`` hub id."""
    return Path(source).expanduser().is_dir() or source.startswith((".", "/", "~")) or source.count("/") != 1


def _unavailable(source: str, hub_id: str, err: Exception) -> WeightsUnavailable:
    text = " ".join(str(err).split())[:160]
    reason = f"{type(err).__name__}: {text}" if text else type(err).__name__
    page = hub_id if _is_local(source) else source
    return WeightsUnavailable(
        f"DeepFloyd IF weights {source!r} are not available (offline / gated / not found: {reason}): accept the "
        f"licence on https://huggingface.co/{page}, run `huggingface-cli login` (or set HF_TOKEN) with network "
        f"access, or set {ENV[hub_id]} to a local folder saved with save_pretrained")


def _load(cls, source: str, hub_id: str, **kwargs):
    """cls.from_pretrained(source) with every way of not getting the weights as WeightsUnavailable."""
    local = _is_local(source)
    if local and not Path(source).expanduser().is_dir():
        raise _unavailable(source, hub_id, FileNotFoundError(f"no folder {source}"))
    try:
        return cls.from_pretrained(str(Path(source).expanduser()) if local else source, **kwargs)
    except (OSError, ValueError) as e:  # hub offline, gated, missing or unreadable files
        raise _unavailable(source, hub_id, e) from None


def _pretrained_kwargs(source: str, dtype: torch.dtype) -> dict:
    """dtype, and the fp16 files of a hub repo when running in fp16."""
    variant = {"variant": "fp16"} if dtype == torch.float16 and not _is_local(source) else {}
    return dict(dtype=dtype, **variant)


class Prompts(Protocol):
    """Where a backend's prompt embeddings come from: the T5 `PromptCache`, or deepfloyd-random's seeded draws."""

    def get(self, prompts: Sequence[str | None]) -> torch.Tensor: ...  # (B, 77, D) float32 CPU; None is ""


class IFDenoiser:
    """Stage 1 of IF as a `Denoiser`: eps and the learned-range value v from the 6-channel UNet output."""

    variance_type = "learned_range"
    data_range = (-1.0, 1.0)

    def __init__(self, name: str, pipe: IFPipeline, prompts: Prompts, device: torch.device,
                 x0_clip: float | None):
        self.name, self.unet, self.prompts = name, pipe.unet, prompts
        self.device, self.dtype, self.x0_clip = device, pipe.unet.dtype, x0_clip
        self.alphas_cumprod = pipe.scheduler.alphas_cumprod.to(torch.float64).cpu()
        size = pipe.unet.config.sample_size
        self.image_shape = (3, size, size)

    def condition(self, prompts: Sequence[str | None]) -> torch.Tensor:
        return self.prompts.get(prompts).to(self.device, self.dtype)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> NoiseEstimate:
        out = self.unet(x_t.to(self.device, self.dtype), t.to(self.device),
                        encoder_hidden_states=cond.to(self.device, self.dtype), return_dict=False)[0]
        eps, v = out.float().split(x_t.shape[1], dim=1)
        return NoiseEstimate(eps, v)


@dataclass
class IFBackend:
    """A loaded IF model: ``denoiser`` (stage 1, for the course's loops), ``text_to_image`` (the
    diffusers stage-1 pipeline) and ``upsample`` (stage 2)."""

    name: str
    denoiser: IFDenoiser
    stage1: IFPipeline
    stage2: IFSuperResolutionPipeline
    device: torch.device
    judge = None  # nothing here reads what an IF image depicts

    def _embeds(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.denoiser.condition(prompts), self.denoiser.condition([None] * len(prompts))

    def text_to_image(self, prompts: Sequence[str], generators: list[torch.Generator], num_inference_steps: int = 20,
                      guidance_scale: float = 7.0, progress: bool = False) -> torch.Tensor:
        """IFPipeline with cached embeddings, one generator per image: (B, 3, 64, 64) in [-1, 1], float32 CPU."""
        cond, uncond = self._embeds(prompts)
        self.stage1.set_progress_bar_config(disable=not progress)
        images = self.stage1(prompt_embeds=cond, negative_prompt_embeds=uncond, num_inference_steps=num_inference_steps,
                             guidance_scale=guidance_scale, generator=list(generators), output_type="pt").images
        return images.float().cpu().clamp(-1, 1)  # "pt" returns the model's [-1, 1] range, unclamped

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


def _tokenizer(stage1: str):
    """IF's T5 tokenizer. The hub ships only spiece.model, which transformers 5 converts only with protobuf."""
    from transformers import AutoTokenizer

    has_json = _is_local(stage1) and (Path(stage1).expanduser() / "tokenizer" / "tokenizer.json").is_file()
    if not has_json and importlib.util.find_spec("google.protobuf") is None:
        raise HarnessError(f"reading the T5 tokenizer of {stage1!r} (spiece.model) needs protobuf: "
                           "run `pip install protobuf`")
    return _load(AutoTokenizer, stage1, STAGE1_ID, subfolder="tokenizer")


def _encoder(stage1: str, pipe: IFPipeline, dtype: torch.dtype, device: torch.device):
    """The PromptCache callback: load T5 for the missing prompts only, embed them the IF way, drop T5."""
    def encode(prompts: list[str]) -> torch.Tensor:
        from transformers import T5EncoderModel

        pipe.tokenizer = _tokenizer(stage1)
        pipe.text_encoder = _load(T5EncoderModel, stage1, STAGE1_ID, subfolder="text_encoder",
                                  **_pretrained_kwargs(stage1, dtype)).to(device)
        try:  # encode_prompt runs under no_grad (not inference_mode: the embeddings may meet autograd later)
            embeds, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=device,
                                           clean_caption=False)
        finally:
            pipe.text_encoder = pipe.tokenizer = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        return embeds
    return encode


def _x0_clip(stage1: str) -> float | None:
    """A model folder may declare that its clean estimates are clamped (harness.json); the real IF does not."""
    meta = Path(stage1).expanduser() / "harness.json"
    return json.loads(meta.read_text()).get("x0_clip") if _is_local(stage1) and meta.is_file() else None


def load_deepfloyd(stage1: str | None = None, stage2: str | None = None, device: str | torch.device = "cpu",
                   name: str = "deepfloyd") -> IFBackend:
    """Load IF stage 1 and 2 from hub ids or folders (default: HARNESS_IF_STAGE1/2, else the hub);
    fp16 on CUDA, fp32 on CPU. Raises WeightsUnavailable with how to get them."""
    from diffusers import IFPipeline, IFSuperResolutionPipeline

    stage1 = stage1 or os.environ.get(ENV[STAGE1_ID]) or STAGE1_ID
    stage2 = stage2 or os.environ.get(ENV[STAGE2_ID]) or STAGE2_ID
    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    accelerate = importlib.util.find_spec("accelerate") is not None  # without it diffusers warns unless off
    common = dict(text_encoder=None, tokenizer=None, low_cpu_mem_usage=accelerate, **NO_EXTRAS)
    pipe1 = _load(IFPipeline, stage1, STAGE1_ID, **common, **_pretrained_kwargs(stage1, dtype)).to(device)
    pipe2 = _load(IFSuperResolutionPipeline, stage2, STAGE2_ID, **common, **_pretrained_kwargs(stage2, dtype))
    pipe2 = pipe2.to(device)
    key = f"{name}-{stage1}-{str(dtype).removeprefix('torch.')}"
    prompts = PromptCache(cache_dir() / "prompt-embeds", key, _encoder(stage1, pipe1, dtype, device))
    return if_backend(name, pipe1, pipe2, prompts, device, _x0_clip(stage1))


def if_backend(name: str, stage1: IFPipeline, stage2: IFSuperResolutionPipeline, prompts: Prompts,
               device: torch.device, x0_clip: float | None) -> IFBackend:
    """The one way an IF backend is put together from its two pipelines and its prompt embeddings, whether
    the UNets were loaded (`load_deepfloyd`) or built with random weights (`deepfloyd_random`)."""
    return IFBackend(name, IFDenoiser(name, stage1, prompts, device, x0_clip), stage1, stage2, device)
