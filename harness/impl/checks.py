"""One check per Part A section: the course function it calls, the calls (inputs, and the harness's own run
each must reproduce), the metrics its relations read, and the mistakes it can diagnose.

The inputs and references are the section's own (`harness.sections.part_a`: its parameters on the backend,
its images, prompts and seeded streams), a few calls per section: a reference is the harness's loop
(`harness.sampling.iterative_denoise` with the section's guide, `harness.editing.inpaint`) on the model as
the user's code sees it (`notebook.Presented`). Images are in the model's data range ([-1, 1] for IF,
[0, 1] for mnist, what its functions see and return); the course's timesteps map onto the model's T
(`harness.schedules.strided_timesteps`). ``reference(mistake)`` re-runs the harness with a mistake: the
flags it reads are the section-specific ones (`mistakes`); patches and skipped draws apply around it.
"""

from __future__ import annotations

import inspect
import re
import types
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable, Sequence

import torch

from harness import images as im
from harness.denoisers.backend import Judge
from harness.denoisers.base import from_data_range, to_data_range
from harness.diffusion import abar_at, forward
from harness.editing import inpaint
from harness.filters import gaussian_blur, low_pass
from harness.guides import CFG, VIEWS, Anagram, Hybrid, Plain, View
from harness.impl import mistakes as mk
from harness.impl.calling import ViewArg, role
from harness.impl.mistakes import Mistake
from harness.impl.notebook import Presented
from harness.metrics import psnr, ssim
from harness.sampling import iterative_denoise
from harness.schedules import course_t, strided_timesteps
from harness.sections import get_section
from harness.sections.part_a import NOISE_LEVELS, PHOTO
from harness.sections.registry import Relation
from harness.seeding import generators, randn


@dataclass
class Ctx:
    """What a check builds its calls from: the backend's model as presented, its judge, the case's seed,
    the stride of the strided timesteps, and the notebook's globals (`notebook.notebook_globals`)."""

    backend: str
    den: Presented
    judge: Judge | None
    seed: int
    stride: int
    notebook: dict[str, Any]

    @property
    def ts(self) -> list[int]:
        return strided_timesteps(990, self.stride, len(self.den.alphas_cumprod))

    def params(self, section: str) -> dict[str, Any]:
        return get_section(section).params_for(self.backend)

    def gens(self, stream: str, index: int = 0) -> list[torch.Generator]:
        """The generator of image ``index`` of a section's stream (what the section's batch gives that image)."""
        return generators(self.seed, stream, index + 1)[index:]

    def index(self, t: int) -> int:
        """i_start of course timestep t: the first strided timestep at or below it (10 for t = 690 at stride 30)."""
        tm = course_t(t, len(self.den.alphas_cumprod))
        return next(i for i, s in enumerate(self.ts) if s <= tm)

    def show(self, x: torch.Tensor) -> torch.Tensor:
        return from_data_range(self.den, x).clamp(-1, 1)

    def cond(self, prompt: str | None) -> torch.Tensor:
        return self.den.condition([prompt])

    def loop_values(self, **values: Any) -> dict[str, Any]:
        """Role values every loop call gets besides its own: timesteps, alphas_cumprod, stage_1, device."""
        nb = self.notebook
        return {"timesteps": self.ts, "alphas_cumprod": nb["alphas_cumprod"], "stage_1": nb["stage_1"],
                "unet": nb["stage_1"].unet, "device": nb["device"], **values}


@dataclass
class Call:
    """One call of the user's function: role values (`calling.bind`), the output's shape, the harness run it
    must reproduce (in the data range), and ``draws``: the tape when the reference draws outside a loop."""

    name: str
    values: dict[str, Any]
    like: torch.Tensor
    reference: Callable[[Mistake | None], torch.Tensor]
    draws: list[tuple[str, torch.Tensor]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


Metrics = Callable[[Ctx, Sequence[Call], Sequence[torch.Tensor]], dict[str, float]]


def _none(ctx: Ctx, calls: Sequence[Call], outs: Sequence[torch.Tensor]) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class Check:
    """section: the registry id; names: the course's function names, tried first, then the first function
    whose name matches ``pattern``; statistics(call, out) -> {name: (value, standard error)}: what must agree
    with the reference's output where pixels need not (the forward process's noise level)."""

    section: str
    names: tuple[str, ...]
    pattern: str
    calls: Callable[[Ctx], list[Call]]
    mistakes: tuple[Mistake, ...] = ()
    metrics: Metrics = _none
    relations: tuple[Relation, ...] = ()
    statistics: Callable[[Call, torch.Tensor], dict[str, tuple[float, float]]] | None = None
    label: str = ""  # what the figures begin with (a rotation's view and direction)
    every: Callable[["Check", dict[str, Callable]], list["Found"]] | None = None  # see `find`

    def find(self, module: types.ModuleType) -> list["Found"]:
        """The user's functions for this check, [] if none; only functions defined in the user's file count.
        One function (the course's name first, else the first whose name matches ``pattern``), or, for a check
        with ``every`` (the rotations: optional, any number), what ``every`` finds among them."""
        own = {k: v for k, v in vars(module).items() if isinstance(v, types.FunctionType)
               and v.__module__ == module.__name__}
        if self.every is not None:
            return self.every(self, own)
        name = next((n for n in self.names if n in own), None) or next((k for k in own if re.search(self.pattern, k)), None)
        return [] if name is None else [Found(name, own[name], (self,), self.section)]


@dataclass(frozen=True)
class Found:
    """A user function to check, and the checks it may be judged by: one, or a rotation's candidate views (the
    same calls, each with its own reference; the one closest to the output judges it and is reported). ``key``
    names its row's outputs (the section, or the section and the function); ``views``: what a rotation's
    candidates were read from (`rotation_candidates`), so that `found_again` can rebuild it."""

    name: str
    fn: Callable | None
    checks: tuple[Check, ...]
    key: str
    views: str = ""


def found_again(index: int, name: str, key: str, views: str) -> Found:
    """The `Found` of ``CHECKS[index]`` that a sandboxed worker reports by name (its outputs come as data)."""
    check = CHECKS[index]
    return Found(name, None, (check,), key) if check.every is None else _rotation(check, name, None, views, key)


def first_candidate(check: Check) -> Check:
    """The check whose calls the user's function gets: itself, or a rotation's first view (every view makes the
    same calls and draws)."""
    return check if check.every is None else _rotation(check, "", None, "", "").checks[0]


def _image(ctx: Ctx, name: str) -> torch.Tensor:
    """A section image as (1, C, S, S) in the model's data range."""
    size = ctx.den.image_shape[-1]
    return to_data_range(ctx.den, im.test_image(name, size)[0][None].to(ctx.den.device))


def _drawn(ctx: Ctx, name: str) -> torch.Tensor:
    return to_data_range(ctx.den, im.hand_drawn(name, ctx.den.image_shape[-1])[0][None].to(ctx.den.device))


def _noise(ctx: Ctx, gens: list[torch.Generator]) -> torch.Tensor:
    return randn(ctx.den.image_shape, gens, ctx.den.device)


def _loop(ctx: Ctx, x: torch.Tensor, i_start: int, guide: Callable, gens: list[torch.Generator]) -> torch.Tensor:
    return iterative_denoise(ctx.den, x, ctx.ts, i_start, guide, gens)[0]


# A1.1 --------------------------------------------------------------------------------------------------------

def forward_calls(ctx: Ctx) -> list[Call]:
    """forward(im, t) at the writeup's t = 250, 500, 750 (on the model's T), eps from the section's stream."""
    clean = _image(ctx, ctx.params("A1.1")["image"])
    abar_all, calls = ctx.den.alphas_cumprod, []
    for t in NOISE_LEVELS:
        tm = course_t(t, len(abar_all))
        eps = _noise(ctx, ctx.gens(f"noise/t{tm}"))

        def reference(m: Mistake | None, tm=tm, eps=eps) -> torch.Tensor:
            abar = abar_at(abar_all, tm, clean)
            if m is mk.SQRT_MISSING:
                return abar * clean + (1 - abar) * eps
            if m is mk.SQRT_MISSING_NOISE:
                return abar.sqrt() * clean + (1 - abar) * eps
            return forward(clean, tm, abar_all, eps)

        values = {"image": clean, "t": tm, "noise": eps, "alphas_cumprod": ctx.notebook["alphas_cumprod"]}
        calls.append(Call(f"t{t}", values, clean, reference, draws=[("forward", eps[0])], info={"clean": clean, "t": t}))
    return calls


def forward_statistics(call: Call, x: torch.Tensor) -> dict[str, tuple[float, float]]:
    """x_t = a x0 + s eps fitted by least squares on x0 (eps independent of x0): a = <x_t, x0> / <x0, x0>,
    s = rms(x_t - a x0); standard errors s / |x0| and s / sqrt(2 n)."""
    x0, xt = call.info["clean"].flatten().double(), x.flatten().double()
    a = float(xt @ x0 / (x0 @ x0))
    s = float((xt - a * x0).pow(2).mean().sqrt())
    t = call.info["t"]
    return {f"signal_t{t}": (a, s / float(x0.norm())), f"noise_t{t}": (s, s / (2 * x0.numel()) ** 0.5)}


def forward_metrics(ctx: Ctx, calls: Sequence[Call], outs: Sequence[torch.Tensor]) -> dict[str, float]:
    return {f"noisy_t{c.info['t']}_psnr": psnr(ctx.show(x), ctx.show(c.info["clean"])) for c, x in zip(calls, outs)}


# A1.4, A1.5, A1.6 ----------------------------------------------------------------------------------------------

def iterative_calls(ctx: Ctx) -> list[Call]:
    """iterative_denoise from the section's x_t at t = 690 (i_start 10 at stride 30) with its prompt."""
    p = ctx.params("A1.4")
    clean, i = _image(ctx, p["image"]), ctx.index(690)
    t = ctx.ts[i]
    x_t = forward(clean, t, ctx.den.alphas_cumprod, _noise(ctx, ctx.gens(f"noise/t{t}")))
    cond = ctx.cond(p["prompt"])
    reference = lambda m: _loop(ctx, x_t, i, Plain(cond), ctx.gens("iterative"))  # noqa: E731
    return [Call("iterative", ctx.loop_values(image=x_t, i_start=i, prompt=cond), x_t, reference,
                 info={"clean": clean, "x_t": x_t, "blur": p["blur"]})]


def iterative_metrics(ctx: Ctx, calls: Sequence[Call], outs: Sequence[torch.Tensor]) -> dict[str, float]:
    """The section's iterative_* and blur_* PSNR/SSIM against the clean image (one-step is the harness's own)."""
    c, x = calls[0], outs[0]
    clean, k_sigma = ctx.show(c.info["clean"]), c.info["blur"]
    blurred = ctx.show(gaussian_blur(c.info["x_t"], *k_sigma))
    return {"iterative_psnr": psnr(ctx.show(x), clean), "iterative_ssim": ssim(ctx.show(x), clean),
            "blur_psnr": psnr(blurred, clean), "blur_ssim": ssim(blurred, clean)}


def _sample_prompts(ctx: Ctx, section: str) -> list[str]:
    prompt = ctx.params(section)["prompt"]
    return [prompt] if isinstance(prompt, str) else list(prompt)


def sampling_calls(ctx: Ctx) -> list[Call]:
    """iterative_denoise from pure noise (i_start 0), x_T from the section's stream: the first prompt."""
    stream = f"sample/stride{ctx.stride}"
    cond = ctx.cond(_sample_prompts(ctx, "A1.5")[0])
    x_T = _noise(ctx, ctx.gens(stream))

    def reference(m: Mistake | None) -> torch.Tensor:
        gens = ctx.gens(stream)
        return _loop(ctx, _noise(ctx, gens), 0, Plain(cond), gens)  # harness.sampling.sample's draws

    return [Call("sample0", ctx.loop_values(image=x_T, i_start=0, prompt=cond), x_T, reference)]


CFG_SCALE = {"mnist": 5.0}  # a scale the section's relation names (cfg5 > cfg1); elsewhere the course's 7


def cfg_calls(ctx: Ctx) -> list[Call]:
    """iterative_denoise_cfg from pure noise; on a judged backend one sample per prompt (every digit)."""
    scale = CFG_SCALE.get(ctx.backend, 7.0)
    prompts = _sample_prompts(ctx, "A1.6")
    uncond, stream, calls = ctx.cond(None), f"cfg/scale{scale:g}", []
    for j, prompt in enumerate(prompts if ctx.judge is not None else prompts[:1]):
        cond, x_T = ctx.cond(prompt), _noise(ctx, ctx.gens(stream, j))

        def reference(m: Mistake | None, j=j, cond=cond, guidance=scale) -> torch.Tensor:
            gens = ctx.gens(stream, j)
            return _loop(ctx, _noise(ctx, gens), 0, CFG(cond, uncond, guidance), gens)

        values = ctx.loop_values(image=x_T, i_start=0, prompt=cond, uncond=uncond, scale=scale)
        calls.append(Call(f"sample{j}", values, x_T, reference, info={"prompt": prompt}))
    return calls


def cfg_metrics(ctx: Ctx, calls: Sequence[Call], outs: Sequence[torch.Tensor]) -> dict[str, float]:
    """Where a judge reads digits: the prompt accuracy of the user's CFG samples, and of the harness's samples
    at cfg_scale 1 (the conditional estimate alone) from the same noise: CFG must raise it."""
    if ctx.judge is None:
        return {}
    scale = CFG_SCALE.get(ctx.backend, 7.0)
    wanted = torch.tensor([ctx.judge.label(c.info["prompt"]) for c in calls])
    plain = [_loop(ctx, _noise(ctx, g := ctx.gens(f"cfg/scale{scale:g}", j)), 0,
                   CFG(ctx.cond(c.info["prompt"]), ctx.cond(None), 1.0), g) for j, c in enumerate(calls)]
    rate = lambda xs: float((ctx.judge.classify(ctx.show(torch.cat(list(xs)))) == wanted).float().mean())  # noqa: E731
    return {f"samples_cfg{scale:g}_prompt_accuracy": rate(outs), "samples_cfg1_prompt_accuracy": rate(plain)}


# A1.7, A1.7.1, A1.7.3: SDEdit through iterative_denoise_cfg ------------------------------------------------

def _sdedit_call(ctx: Ctx, name: str, clean: torch.Tensor, prompt: str, i_start: int, stream: str) -> Call:
    """SDEdit as the section runs it: eps from the case's stream for (stride, i_start), x_t = forward(x, t),
    then the CFG loop from i_start on the same generator."""
    cond, uncond, scale = ctx.cond(prompt), ctx.cond(None), 7.0
    t = ctx.ts[i_start]
    x_t = forward(clean, t, ctx.den.alphas_cumprod, _noise(ctx, ctx.gens(stream)))

    def reference(m: Mistake | None) -> torch.Tensor:
        gens = ctx.gens(stream)
        x = forward(clean, t, ctx.den.alphas_cumprod, _noise(ctx, gens))  # harness.editing.sdedit's draws
        return _loop(ctx, x, i_start, CFG(cond, uncond, scale), gens)

    values = ctx.loop_values(image=x_t, i_start=i_start, prompt=cond, uncond=uncond, scale=scale)
    return Call(name, values, x_t, reference, info={"clean": clean, "prompt": prompt})


def sdedit_calls(ctx: Ctx) -> list[Call]:
    """1.7: the section's first image from i_start 10 (t = 690), "a high quality photo"."""
    i = ctx.index(690)
    return [_sdedit_call(ctx, "sdedit", _image(ctx, ctx.params("A1.7")["images"][0]), PHOTO, i,
                         f"sdedit_stride{ctx.stride}_i{i}")]


def drawn_calls(ctx: Ctx) -> list[Call]:
    """1.7.1: the section's first hand drawing from i_start 10."""
    i = ctx.index(690)
    return [_sdedit_call(ctx, "drawn", _drawn(ctx, ctx.params("A1.7.1")["drawings"][0]), PHOTO, i,
                         f"edit_stride{ctx.stride}_i{i}")]


def img2img_calls(ctx: Ctx) -> list[Call]:
    """1.7.3: the section's image towards its first prompt from i_start 1."""
    p = ctx.params("A1.7.3")
    return [_sdedit_call(ctx, "prompt0", _image(ctx, p["image"]), p["prompts"][0], 1, f"prompt0_stride{ctx.stride}_i1")]


def img2img_metrics(ctx: Ctx, calls: Sequence[Call], outs: Sequence[torch.Tensor]) -> dict[str, float]:
    """Where a judge reads digits: whether the result reads as the prompt's digit (the section's metric)."""
    if ctx.judge is None:
        return {}
    c, x = calls[0], outs[0]
    read = int(ctx.judge.classify(ctx.show(x))[0])
    return {f"prompt0_stride{ctx.stride}_i1_prompt_accuracy": float(read == ctx.judge.label(c.info["prompt"]))}


# A1.7.2 -------------------------------------------------------------------------------------------------------

def inpaint_calls(ctx: Ctx) -> list[Call]:
    """inpaint(original_image, mask, ...) on the section's first image and mask (mnist: two digits), CFG 7;
    the user's function draws x_T itself, so the whole of `harness.editing.inpaint` is on the tape."""
    p, size, calls = ctx.params("A1.7.2"), ctx.den.image_shape[-1], []
    uncond = ctx.cond(None)
    for j in range(1 if ctx.judge is None else 2):
        clean = _image(ctx, p["images"][j])
        mask = im.mask(p["masks"][j], size)[None].expand_as(clean).to(ctx.den.device)
        prompt = p["prompt"] if isinstance(p["prompt"], str) else p["prompt"][j]
        cond = ctx.cond(prompt)

        def reference(m: Mistake | None, j=j, clean=clean, mask=mask, cond=cond) -> torch.Tensor:
            return inpaint(ctx.den, clean, mask, ctx.ts, CFG(cond, uncond, p["cfg_scale"]), ctx.gens("inpaint", j),
                           ctx.gens("inpaint/renoise", j))

        values = ctx.loop_values(image=clean, mask=mask, prompt=cond, uncond=uncond, scale=p["cfg_scale"], i_start=0)
        calls.append(Call(f"inpaint{j}", values, clean, reference, info={"clean": clean, "mask": mask, "prompt": prompt}))
    return calls


def inpaint_metrics(ctx: Ctx, calls: Sequence[Call], outs: Sequence[torch.Tensor]) -> dict[str, float]:
    """known_region_err: max |x - x_orig| outside the mask, in the data range; its bound, 6 sqrt(1 - abar)
    at the last timestep (the course's forward(x_orig, 0) keeps that much noise there); the judge's accuracy."""
    err = max(float(((x - c.info["clean"]).abs() * (1 - c.info["mask"])).max()) for c, x in zip(calls, outs))
    bound = 6 * float(1 - ctx.den.alphas_cumprod[ctx.ts[-1]]) ** 0.5 + 1e-4
    metrics = {"known_region_err": err, "known_region_bound": bound}
    if ctx.judge is not None:
        wanted = torch.tensor([ctx.judge.label(c.info["prompt"]) for c in calls])
        read = ctx.judge.classify(ctx.show(torch.cat(list(outs))))
        metrics["inpainted_prompt_accuracy"] = float((read == wanted).float().mean())
    return metrics


KNOWN_REGION = Relation("the known region is kept (to forward(x_orig, 0)'s noise)",
                        lambda m: m["known_region_err"] <= m["known_region_bound"])


# A1.8, A1.9 ---------------------------------------------------------------------------------------------------
# A1.8 checks the flip (make_flip_illusion) and, where the user's file defines them, rotation anagrams: one row
# each, all under --section A1.8. Public implementations name them make_rotation_illusion, make_rot90_illusion,
# ..., or pass a view to one general function; they turn with torch.rot90 either way, so the direction is read
# from the output (`rotation_candidates`) and reported, not judged.

ANAGRAM_PAIRS = {"mnist": [("4", "7")] * 2}  # the mnist section's best flip pair, two seeds
ROTATED = r"rot(at|\d)"  # rotation, rotated, rotate, rot90, rot180
ROTATION = rf"{ROTATED}.*(illusion|anagram)|(illusion|anagram).*{ROTATED}"  # make_rotation_illusion, rot90_anagram
FLIP = rf"^(?!.*{ROTATED}).*(flip|anagram|illusion)"


def _anagram_pairs(ctx: Ctx, view: View) -> list[tuple[str, str]]:
    """The prompt pairs: the flip's (mnist: its best pair, two seeds), or the section's rotation pairs (one;
    on a judged backend two), whichever rotation is checked, so that every candidate view gets the same calls."""
    if view.name == "flip" and ctx.backend in ANAGRAM_PAIRS:
        return ANAGRAM_PAIRS[ctx.backend]
    pairs = [(a, b) for a, b, v in ctx.params("A1.8")["anagrams"] if (v == "flip") == (view.name == "flip")]
    return pairs[:2 if ctx.judge is not None and view.name != "flip" else 1]


def anagram_calls(ctx: Ctx, view: View = VIEWS["flip"]) -> list[Call]:
    """make_flip_illusion (or a rotation's function, with its ``view``) from pure noise, x_T from the section's
    stream: eps = (CFG(eps(x_t, a)) + view^-1(CFG(eps(view(x_t), b)))) / 2."""
    p = ctx.params("A1.8")
    uncond, calls, kind = ctx.cond(None), [], "anagram" if view.name == "flip" else "rotation"
    for j, (a, b) in enumerate(_anagram_pairs(ctx, view)):
        conds, stream = (ctx.cond(a), ctx.cond(b)), f"{kind}{j}"
        x_T = _noise(ctx, ctx.gens(stream))

        def reference(m: Mistake | None, conds=conds, stream=stream) -> torch.Tensor:
            viewed = View(view.name, view.apply, lambda x: x) if m is mk.VIEW_NOT_INVERTED else view
            gens = ctx.gens(stream)
            return _loop(ctx, _noise(ctx, gens), 0, Anagram([VIEWS["identity"], viewed], list(conds), uncond,
                                                            p["cfg_scale"]), gens)

        values = ctx.loop_values(image=x_T, i_start=0, prompts=conds, uncond=uncond, scale=p["cfg_scale"],
                                 view=ViewArg(view))
        calls.append(Call(f"{kind}{j}", values, x_T, reference, info={"prompts": (a, b), "view": view}))
    return calls


def anagram_metrics(ctx: Ctx, calls: Sequence[Call], outs: Sequence[torch.Tensor]) -> dict[str, float]:
    """Where a judge reads digits: the share of anagrams read as a upright and b through the view (flipped,
    rotated as the user's function rotates: the candidate that judges it), the section's rate."""
    if ctx.judge is None:
        return {}
    x, view = ctx.show(torch.cat(list(outs))), calls[0].info["view"]
    a, b = (torch.tensor([ctx.judge.label(c.info["prompts"][k]) for c in calls]) for k in (0, 1))
    ok = (ctx.judge.classify(x) == a) & (ctx.judge.classify(view.apply(x)) == b)
    return {"anagram_success_rate": float(ok.float().mean())}


def clockwise(view: View) -> View:
    """The view turned the other way (torch's rot90 with k > 0 turns counter-clockwise, as `VIEWS` does)."""
    return View(view.name, view.invert, view.apply)


def rotation_candidates(name: str) -> list[tuple[View, str]]:
    """The views a rotation function may apply, with their labels: what its name says (90 or 270: a quarter
    turn either way; 180: a half turn), or, when it says neither, any of them. A quarter turn either way is
    right: the output tells which one the function makes, and the figures say."""
    quarter = [(VIEWS["rot90"], "view rot90, counter-clockwise as the reference"),
               (clockwise(VIEWS["rot90"]), "view rot90, clockwise (the reference turns counter-clockwise; either "
                                           "is right)")]
    half = [(VIEWS["rot180"], "view rot180")]
    if re.search(r"90|270", name):
        return quarter
    return half if "180" in name else quarter + half


def rotation_functions(check: Check, own: dict[str, Callable]) -> list[Found]:
    """Every rotation anagram function (a name matching `ROTATION`: a rotation and illusion or anagram), with
    the candidates its name allows; and the first general anagram function (a flip name with a ``view`` or
    ``transform`` parameter, given a `calling.ViewArg`) once per rotation view, rot90 with both directions."""
    rotations = [_rotation(check, k, own[k], k, f"{check.section}-{k}") for k in own if re.search(ROTATION, k)]
    general = [k for k in own if re.search(FLIP, k) and "view" in {role(n) for n in inspect.signature(own[k]).parameters}]
    return rotations + [_rotation(check, k, own[k], v, f"{check.section}-{k}-{v}") for k in general[:1]
                        for v in ("rot90", "rot180")]


def _rotation(check: Check, name: str, fn: Callable | None, views: str, key: str) -> Found:
    """A rotation function, judged by the candidate views ``views`` allows (`rotation_candidates`)."""
    checks = tuple(replace(check, calls=partial(anagram_calls, view=v), label=label)
                   for v, label in rotation_candidates(views))
    return Found(name, fn, checks, key, views)


HYBRID_PAIRS = 2  # on a judged backend; one elsewhere


def hybrid_calls(ctx: Ctx) -> list[Call]:
    """make_hybrids from pure noise: low_pass(eps_far) + high_pass(eps_near), CFG in each, the section's filter."""
    p = ctx.params("A1.9")
    uncond, calls = ctx.cond(None), []
    for j, (far, near) in enumerate(p["hybrids"][:HYBRID_PAIRS if ctx.judge is not None else 1]):
        conds, stream = (ctx.cond(far), ctx.cond(near)), f"hybrid{j}"
        x_T = _noise(ctx, ctx.gens(stream))

        def reference(m: Mistake | None, conds=conds, stream=stream) -> torch.Tensor:
            low, high = conds[::-1] if m is mk.BANDS_SWAPPED else conds
            gens = ctx.gens(stream)
            guide = Hybrid(low, high, uncond, p["cfg_scale"], p["kernel_size"], p["sigma"], shared_uncond=False)
            return _loop(ctx, _noise(ctx, gens), 0, guide, gens)

        values = ctx.loop_values(image=x_T, i_start=0, prompts=conds, uncond=uncond, scale=p["cfg_scale"],
                                 kernel_size=p["kernel_size"], sigma=p["sigma"])
        calls.append(Call(f"hybrid{j}", values, x_T, reference, info={"far": far}))
    return calls


def hybrid_metrics(ctx: Ctx, calls: Sequence[Call], outs: Sequence[torch.Tensor]) -> dict[str, float]:
    """Where a judge reads digits: the share of hybrids whose low-pass reads as the far prompt."""
    if ctx.judge is None:
        return {}
    p = ctx.params("A1.9")
    low = low_pass(ctx.show(torch.cat(list(outs))), p["kernel_size"], p["sigma"]).clamp(-1, 1)
    far = torch.tensor([ctx.judge.label(c.info["far"]) for c in calls])
    return {"hybrid_low_is_far_rate": float((ctx.judge.classify(low) == far).float().mean())}


CHECKS = (
    Check("A1.1", ("forward",), r"^forward", forward_calls, (mk.SQRT_MISSING, mk.SQRT_MISSING_NOISE),
          forward_metrics, statistics=forward_statistics),
    Check("A1.4", ("iterative_denoise",), r"^iterative_denoise$", iterative_calls, mk.LOOP, iterative_metrics),
    Check("A1.5", ("iterative_denoise",), r"^iterative_denoise$", sampling_calls, mk.LOOP),
    Check("A1.6", ("iterative_denoise_cfg",), r"denoise_cfg", cfg_calls, mk.GUIDED, cfg_metrics),
    Check("A1.7", ("iterative_denoise_cfg",), r"denoise_cfg", sdedit_calls, mk.GUIDED),
    Check("A1.7.1", ("iterative_denoise_cfg",), r"denoise_cfg", drawn_calls, mk.GUIDED),
    Check("A1.7.2", ("inpaint",), r"inpaint", inpaint_calls, (mk.NOT_RENOISED, *mk.GUIDED), inpaint_metrics,
          (KNOWN_REGION,)),
    Check("A1.7.3", ("iterative_denoise_cfg",), r"denoise_cfg", img2img_calls, mk.GUIDED, img2img_metrics),
    Check("A1.8", ("make_flip_illusion", "visual_anagrams"), FLIP, anagram_calls,
          (mk.VIEW_NOT_INVERTED, *mk.GUIDED), anagram_metrics),
    Check("A1.8", (), ROTATION, anagram_calls, (mk.VIEW_NOT_INVERTED, *mk.GUIDED), anagram_metrics,
          every=rotation_functions),
    Check("A1.9", ("make_hybrids",), r"hybrid", hybrid_calls, (mk.BANDS_SWAPPED, *mk.GUIDED), hybrid_metrics),
)
