"""What a loaded backend is: `Backend` (what sections may use of it), its `Judge`, `PartBBackend` for
the backends that also run Part B, and `DenoiserBackend`, a backend made of a denoiser alone. The
backends' modules build objects meeting `Backend`; `harness.backends` is the table that loads them."""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import torch

from harness.denoisers.base import Denoiser, from_data_range
from harness.guides import CFG
from harness.sampling import sample


@runtime_checkable
class Judge(Protocol):
    """Reads what results depict (Part A relations on a trained model): images (N, C, H, W) in [-1, 1]."""

    def label(self, prompt: str | None) -> int | None: ...
    def probs(self, images: torch.Tensor) -> torch.Tensor: ...
    def classify(self, images: torch.Tensor) -> torch.Tensor: ...
    def fid_lite(self, images: torch.Tensor) -> float: ...


@runtime_checkable
class Backend(Protocol):
    """What sections may use of a loaded backend.

    denoiser: the model behind the `Denoiser` interface (every course loop runs on it).
    judge: a `Judge`, or None where nothing reads the results.
    upsample(images, prompts, generators, num_inference_steps, progress=...): a stage-2 super-resolution
        model, or None.
    text_to_image(prompts, generators, num_inference_steps, guidance_scale, progress): section A0's
        sampler; `DenoiserBackend` gives every backend the course's CFG sampler on its denoiser.
    """

    name: str
    device: str | torch.device
    denoiser: Denoiser
    judge: Judge | None
    upsample: Callable | None

    def text_to_image(self, prompts: Sequence[str], generators: list[torch.Generator], num_inference_steps: int = 20,
                      guidance_scale: float = 7.0, progress: bool = False) -> torch.Tensor: ...


@runtime_checkable
class PartBBackend(Backend, Protocol):
    """A backend that runs Part B's sections (its table row lists part "B"): also the trained UNets."""

    def model(self, kind: str, epoch: int) -> torch.nn.Module:
        """The ``kind`` UNet ("denoiser", "time", "class") after ``epoch``, in eval mode."""
        ...


class DenoiserBackend:
    """A `Backend` made of a denoiser alone: no judge, no upsampler, and A0's text-to-image as CFG sampling
    over num_inference_steps timesteps spaced as diffusers' DDPMScheduler spaces them ("leading":
    k floor(T / n), k = n-1 .. 0). Subclasses set ``name``, ``device`` and ``denoiser``."""

    judge: Judge | None = None
    upsample: Callable | None = None

    def text_to_image(self, prompts: Sequence[str], generators: list[torch.Generator], num_inference_steps: int = 20,
                      guidance_scale: float = 7.0, progress: bool = False) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1]."""
        den = self.denoiser
        ratio = len(den.alphas_cumprod) // num_inference_steps
        timesteps = [k * ratio for k in reversed(range(num_inference_steps))]
        guide = CFG(den.condition(prompts), den.condition([None] * len(prompts)), guidance_scale)
        return from_data_range(den, sample(den, timesteps, guide, generators, progress=progress)).clamp(-1, 1)
