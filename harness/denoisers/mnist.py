"""The class-conditioned Part B UNet as a Part A backend (`mnist`): every Part A technique on a model
that was actually trained, so the techniques can be judged with numbers (the FID-lite classifier).

- Prompts are digits "0".."9"; the null prompt (None or "") is the zeroed one-hot vector, the
  unconditional branch the model learned with p_uncond = 0.1. The writeups' prompt texts map to digits
  (`PROMPT_DIGITS`) so a case written with texts runs unchanged; "a high quality photo" says nothing
  about a digit and maps to the null prompt.
- alphas_cumprod is Part B's linear schedule (T = 300); the course's timesteps on IF's 1000-step
  scale are mapped onto it by `harness.schedules.strided_timesteps(..., num_train_timesteps=300)`.
- The model was trained on digits in [0, 1] (`data_range`), not IF's [-1, 1]: a variance-preserving
  process does not survive a rescale of its data, so sections hand it images in its own range.
- It has no learned variance: a strided step uses the posterior variance (fixed_small), as Part B's
  strided sampling does, and x0 is not clipped (the course's loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import torch
import torch.nn.functional as F

from harness.denoisers.backend import DenoiserBackend
from harness.errors import UnknownName
from harness.partb.sampling import UNetDenoiser
from harness.schedules import linear_alphas_cumprod

# The writeups' prompts, each given a digit; pairs used together (anagrams, hybrids) get different digits.
PROMPT_DIGITS: dict[str, str] = {
    "a high quality photo": "",
    "an oil painting of an old man": "6",
    "an oil painting of people around a campfire": "9",
    "an oil painting of a snowy mountain village": "4",
    "a lithograph of waterfalls": "1",
    "a lithograph of a skull": "0",
    "a photo of a dog": "7",
    "a man wearing a hat": "5",
    "a rocket ship": "1",
    "a pencil": "7",
    "a rainy day": "2",
    "sunset in a desert": "3",
    "a bar with dim lighting": "8",
}
CHECKPOINT = ("class", 20)  # the last shipped class-conditioned checkpoint


def digit_of(prompt: str | None) -> int | None:
    """The digit a prompt asks for (None for the null prompt); unknown prompts raise UnknownName."""
    text = PROMPT_DIGITS.get(prompt, prompt) if prompt else ""
    if text == "":
        return None
    if text not in {str(d) for d in range(10)}:
        raise UnknownName(f"the mnist backend understands digits '0'..'9', the null prompt and the writeups' "
                          f"prompts {sorted(PROMPT_DIGITS)}; got {prompt!r}")
    return int(text)


class MnistDenoiser(UNetDenoiser):
    """The class-conditioned UNet behind the `Denoiser` interface, with prompts read as digits."""

    name = "mnist"

    def __init__(self, model: torch.nn.Module):
        super().__init__(model, linear_alphas_cumprod(300), class_conditioned=True)

    def condition(self, prompts: Sequence[str | None]) -> torch.Tensor:
        """One-hot rows (B, 10); the null prompt is a zero row."""
        rows = torch.zeros(len(prompts), 10, device=self.device)
        for i, prompt in enumerate(prompts):
            digit = digit_of(prompt)
            if digit is not None:
                rows[i] = F.one_hot(torch.tensor(digit), 10).float()
        return rows


class DigitJudge:
    """Reads digits in results with the shipped FID-lite classifier (Part B): images (N, 1, 28, 28) in [-1, 1]."""

    @staticmethod
    def label(prompt: str | None) -> int | None:
        return digit_of(prompt)

    @cached_property
    def classifier(self) -> torch.nn.Module:
        from harness.partb.fid import load_classifier

        return load_classifier()[0]

    @torch.no_grad()  # a judge only reads; its inputs may be inference tensors from a cached section run
    def probs(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, 10)."""
        return self.classifier((images.cpu().float() + 1).div(2).clamp(0, 1)).softmax(1)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """The digit read in each image (N,)."""
        return self.probs(images).argmax(1)

    def fid_lite(self, images: torch.Tensor) -> float:
        """FID-lite against as many MNIST test digits."""
        from harness.partb.evaluate import test_digits
        from harness.partb.fid import fid_lite

        return fid_lite(test_digits(len(images))[0], (images.cpu() + 1) / 2, self.classifier)


@dataclass(frozen=True)
class MnistBackend(DenoiserBackend):
    """The `mnist` backend: Part B's shipped checkpoints (`model`), and for Part A the class-conditioned
    UNet as a `Denoiser` (A0 samples it with `DenoiserBackend`'s CFG sampler) with the FID-lite classifier
    as its `judge`. It has no stage-2 upsampler."""

    device: str = "cpu"
    name: str = "mnist"
    judge: DigitJudge = DigitJudge()

    def model(self, kind: str, epoch: int) -> torch.nn.Module:
        from harness.partb.checkpoints import load_model

        return load_model(kind, epoch, self.device)

    @cached_property
    def denoiser(self) -> MnistDenoiser:
        return MnistDenoiser(self.model(*CHECKPOINT))
