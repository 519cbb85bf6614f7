"""What the course notebook gives the functions it asks students to write, on any Part A backend's `Denoiser`.

- ``stage_1.unet(x_t, t, encoder_hidden_states=embeds, return_dict=False)[0]``: (B, 2C, H, W), the noise
  estimate eps and then the variance channels (IF's learned-range value v; zeros on a model without one);
- ``stage_1.scheduler._get_variance(t, predicted_variance=v)``: log sigma^2 of the strided step t -> t', t'
  the timestep after t in the list given to ``set_timesteps(timesteps=...)`` (diffusers' rule);
- ``alphas_cumprod`` (float32, as ``stage_1.scheduler.alphas_cumprod``), ``device``, ``strided_timesteps``;
- ``add_variance(predicted_variance, t, image)`` = image + exp(log sigma^2 / 2) z, z = torch.randn_like(image);
- ``prompt_embeds_dict`` (prompt -> embeddings, "" the unconditional one), ``prompt_embeds`` and
  ``uncond_prompt_embeds``.

A denoiser that declares x0_clip (tiny-if, random weights) has its clamp moved into the UNet the user's
code calls: eps' = (x_t - sqrt(abar_t) clamp(x0)) / sqrt(1 - abar_t) with x0 = (x_t - sqrt(1 - abar_t) eps)
/ sqrt(abar_t), so a course loop, which does not clamp, steps from the clamped x0. `Presented` is that model
as a `Denoiser`; the reference runs on it too.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

import torch

from harness.denoisers.base import Denoiser, NoiseEstimate
from harness.diffusion import abar_at, estimate_x0, step_log_variance


class Presented:
    """A backend's denoiser as the user's code sees it: x0_clip folded into eps (see the module docstring)."""

    x0_clip = None

    def __init__(self, denoiser: Denoiser):
        self.inner = denoiser
        for name in ("name", "alphas_cumprod", "image_shape", "data_range", "variance_type", "device", "dtype"):
            setattr(self, name, getattr(denoiser, name))

    def condition(self, prompts: Sequence[str | None]) -> torch.Tensor:
        return self.inner.condition(prompts)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> NoiseEstimate:
        est = self.inner(x_t, t, cond)
        clip = self.inner.x0_clip
        if clip is None:
            return est
        x = x_t.float()
        abar = abar_at(self.alphas_cumprod, t.cpu(), x)
        x0 = estimate_x0(x, est.eps.float(), t.cpu(), self.alphas_cumprod).clamp(-clip, clip)
        return NoiseEstimate((x - abar.sqrt() * x0) / (1 - abar).sqrt(), est.v)


class CourseUNet:
    """``stage_1.unet``: diffusers' UNet2DConditionModel calling convention on a `Presented` denoiser.
    t is an int, a 0-d tensor or one per image; one row of embeddings serves a whole batch."""

    def __init__(self, denoiser: Presented):
        self.denoiser = denoiser
        self.last_t: int | None = None  # the timestep of the latest call (add_variance reads t or its index)
        self.dtype, self.device = denoiser.dtype, denoiser.device

    def __call__(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor | None = None,
                 return_dict: bool = True, **_: Any):
        x = sample.to(self.device, self.dtype)
        t = torch.as_tensor(timestep).to("cpu", torch.long).reshape(-1).expand(x.shape[0])
        cond = encoder_hidden_states.to(self.device)
        if cond.shape[0] != x.shape[0]:
            cond = cond.expand(x.shape[0], *cond.shape[1:])
        self.last_t = int(t[0])
        with torch.no_grad():
            est = self.denoiser(x, t, cond)
        v = est.v if est.v is not None else torch.zeros_like(est.eps)
        out = torch.cat([est.eps, v], dim=1).to(self.dtype)
        return (out,) if not return_dict else SimpleNamespace(sample=out)

    def to(self, *_: Any, **__: Any) -> "CourseUNet":
        return self

    half = float = cuda = cpu = eval = to


class CourseScheduler:
    """``stage_1.scheduler``: the schedule, the strided timesteps and the variance of a strided step."""

    def __init__(self, denoiser: Presented, timesteps: Sequence[int]):
        self.denoiser = denoiser
        self.alphas_cumprod = denoiser.alphas_cumprod.float()
        self.config = SimpleNamespace(num_train_timesteps=len(self.alphas_cumprod), variance_type=denoiser.variance_type)
        self.set_timesteps(timesteps=timesteps)

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None,
                      timesteps: Sequence[int] | None = None) -> None:
        if timesteps is not None:
            self.timesteps = torch.tensor([int(t) for t in timesteps])

    def previous_timestep(self, t: Any) -> int:
        """The timestep after t in the strided list (-1 after the last: abar = 1)."""
        ts = self.timesteps.tolist()
        t = int(t)
        return ts[ts.index(t) + 1] if t in ts and ts.index(t) + 1 < len(ts) else -1

    def _get_variance(self, t: Any, predicted_variance: torch.Tensor | None = None, variance_type: str | None = None):
        """log sigma^2 of the step t -> t' (`harness.diffusion.step_log_variance`; diffusers' value for IF)."""
        like = predicted_variance if predicted_variance is not None else torch.zeros(1, 1, 1, 1)
        v = None if predicted_variance is None else predicted_variance.float()
        return step_log_variance(int(t), self.previous_timestep(t), self.denoiser.alphas_cumprod,
                                 self.denoiser.variance_type, like.float(), v)


class PromptEmbeds(dict):
    """``prompt_embeds_dict``: any prompt's embeddings on demand ("" is the unconditional prompt)."""

    def __init__(self, denoiser: Presented):
        super().__init__()
        self.denoiser = denoiser

    def __missing__(self, prompt: str) -> torch.Tensor:
        self[prompt] = self.denoiser.condition([prompt or None])
        return self[prompt]


class Stage1:
    """``stage_1``: the ``unet`` and ``scheduler`` the course's functions read; moving it is a no-op."""

    def __init__(self, denoiser: Presented, timesteps: Sequence[int]):
        self.unet = CourseUNet(denoiser)
        self.scheduler = CourseScheduler(denoiser, timesteps)
        self.device, self.dtype = denoiser.device, denoiser.dtype

    def to(self, *_: Any, **__: Any) -> "Stage1":
        return self

    half = cuda = cpu = to


def notebook_globals(denoiser: Presented, timesteps: Sequence[int]) -> dict[str, Any]:
    """The names the course notebook defines before the students' cells, for ``denoiser`` and ``timesteps``."""
    stage_1 = Stage1(denoiser, timesteps)
    embeds = PromptEmbeds(denoiser)

    def add_variance(predicted_variance: torch.Tensor, t: Any, image: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        """image + exp(log sigma^2_{t -> t'} / 2) z, z = torch.randn_like(image); t is the timestep or its
        index in the strided list (told apart by the UNet's latest t); further arguments (stage_1) are ignored."""
        log_var = stage_1.scheduler._get_variance(_timestep(t, stage_1), predicted_variance=predicted_variance)
        return image + torch.exp(0.5 * log_var.to(image.device)) * torch.randn_like(image)

    return {"stage_1": stage_1, "alphas_cumprod": stage_1.scheduler.alphas_cumprod.to(denoiser.device),
            "add_variance": add_variance, "device": denoiser.device, "strided_timesteps": list(timesteps),
            "prompt_embeds_dict": embeds, "prompt_embeds": embeds["a high quality photo"],
            "uncond_prompt_embeds": embeds[""]}


def _timestep(t: Any, stage_1: Stage1) -> int:
    """add_variance's t: the UNet's latest timestep, or the one after it (a mistake, kept), as given; anything
    else is an index (``t_index``, into the full list or the one the user's loop walks) and stands for the UNet's
    latest timestep, since the course calls add_variance right after the UNet."""
    t, last = int(t), stage_1.unet.last_t
    if last is None or t in (last, stage_1.scheduler.previous_timestep(last)):
        return t
    return last
