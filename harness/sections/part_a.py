"""Part A: the pretrained pixel diffusion model (DeepFloyd IF) sections of the writeups.

Every section runs on any IF backend (`tiny-if`, `deepfloyd`). Test images stand in for the course's
Campanile photo (see harness.images). Images are 64x64 in [-1, 1]; estimates are clamped to [-1, 1]
before they are shown or measured, as the course does for display.
"""

from __future__ import annotations

from typing import Sequence

import torch

from harness import images as im
from harness.diffusion import estimate_x0, forward
from harness.editing import inpaint, sdedit
from harness.filters import gaussian_blur
from harness.guides import CFG, VIEWS, Anagram, Hybrid, Plain
from harness.metrics import psnr, ssim
from harness.outputs import Outputs
from harness.sampling import iterative_denoise, sample
from harness.schedules import strided_timesteps
from harness.sections.registry import Relation, RunContext, Section, register
from harness.seeding import randn

IF_BACKENDS = ("tiny-if", "deepfloyd")
TRAINED = ("deepfloyd",)
PHOTO = "a high quality photo"
NOISE_LEVELS = (250, 500, 750)


def _clean_images(ctx: RunContext, names: Sequence[str], out: Outputs) -> torch.Tensor:
    """The section's clean images (N, 3, 64, 64): the user's --image if given, else scikit-image photos."""
    if ctx.image is not None:
        out.meta["images"] = [{"source": ctx.image_source}]
        return ctx.image[None].to(ctx.device)
    pics, metas = zip(*(im.test_image(name) for name in names))
    out.meta["images"] = list(metas)
    return torch.stack(pics).to(ctx.device)


def _prompt(ctx: RunContext, default: str) -> str:
    return ctx.prompt if ctx.prompt is not None else default


def _cfg(den, prompt: str, n: int, cfg_scale: float) -> CFG:
    return CFG(den.condition([prompt] * n), den.condition([None] * n), cfg_scale)


def _noisy(ctx: RunContext, clean: torch.Tensor, t: int, abar: torch.Tensor) -> torch.Tensor:
    """forward(clean, t) with the case's noise stream for t (shared by 1.1-1.4, so they see one x_t)."""
    eps = randn(tuple(clean.shape[1:]), ctx.gens(f"noise/t{t}", clean.shape[0]), clean.device)
    return forward(clean, t, abar, eps)


def _measure(out: Outputs, prefix: str, x: torch.Tensor, clean: torch.Tensor) -> None:
    out.metrics[f"{prefix}_psnr"] = psnr(x, clean)
    out.metrics[f"{prefix}_ssim"] = ssim(x, clean)


def run_a0(ctx: RunContext) -> Outputs:
    """Text-to-image with stage 1 (64x64) and stage-2 upsampling, at each num_inference_steps."""
    backend, p, out = ctx.backend(), ctx.params, Outputs()
    prompts = [ctx.prompt] if ctx.prompt is not None else list(p["prompts"])
    out.meta["prompts"] = prompts
    for steps in p["num_inference_steps"]:
        low = backend.text_to_image(prompts, ctx.gens(f"stage1/steps{steps}", len(prompts)), steps,
                                    p["cfg_scale"], progress=ctx.progress)
        high = backend.upsample(low, prompts, ctx.gens(f"stage2/steps{steps}", len(prompts)), steps,
                                progress=ctx.progress)
        out.add_image(f"stage1_steps{steps}", low)
        out.add_image(f"stage2_steps{steps}", high)
    return out


def run_forward(ctx: RunContext) -> Outputs:
    """1.1: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at the writeups' t."""
    den, out = ctx.backend().denoiser, Outputs()
    clean = _clean_images(ctx, [ctx.params["image"]], out)
    out.add_image("clean", clean)
    for t in ctx.params["t"]:
        x_t = _noisy(ctx, clean, t, den.alphas_cumprod)
        out.add_image(f"noisy_t{t}", x_t)
        out.metrics[f"noisy_t{t}_psnr"] = psnr(x_t.clamp(-1, 1), clean)
    return out


def run_blur(ctx: RunContext) -> Outputs:
    """1.2: classical denoising, a Gaussian blur of x_t for each (kernel_size, sigma) pair."""
    den, out = ctx.backend().denoiser, Outputs()
    clean = _clean_images(ctx, [ctx.params["image"]], out)
    for t in ctx.params["t"]:
        x_t = _noisy(ctx, clean, t, den.alphas_cumprod)
        for k, sigma in ctx.params["blur"]:
            blurred = gaussian_blur(x_t, k, sigma).clamp(-1, 1)
            out.add_image(f"blur_t{t}_k{k}_s{sigma:g}", blurred)
            _measure(out, f"blur_t{t}_k{k}_s{sigma:g}", blurred, clean)
    return out


def run_one_step(ctx: RunContext) -> Outputs:
    """1.3: one-step denoising x0 = (x_t - sqrt(1 - abar_t) eps(x_t, t, prompt)) / sqrt(abar_t), beside blur."""
    den, p, out = ctx.backend().denoiser, ctx.params, Outputs()
    clean = _clean_images(ctx, [p["image"]], out)
    guide = Plain(den.condition([p["prompt"]] * clean.shape[0]))
    k, sigma = p["blur"]
    for t in p["t"]:
        x_t = _noisy(ctx, clean, t, den.alphas_cumprod)
        x0 = estimate_x0(x_t, guide(den, x_t, t).eps.float(), t, den.alphas_cumprod).clamp(-1, 1)
        blurred = gaussian_blur(x_t, k, sigma).clamp(-1, 1)
        out.add_image(f"one_step_t{t}", x0)
        out.add_image(f"blur_t{t}", blurred)
        _measure(out, f"one_step_t{t}", x0, clean)
        _measure(out, f"blur_t{t}", blurred, clean)
    return out


def run_iterative(ctx: RunContext) -> Outputs:
    """1.4: iterative_denoise from i_start (t = 690) over strided_timesteps, beside one-step and blur."""
    den, p, out = ctx.backend().denoiser, ctx.params, Outputs()
    clean = _clean_images(ctx, [p["image"]], out)
    ts = strided_timesteps(990, p["stride"])
    t = ts[p["i_start"]]
    x_t = _noisy(ctx, clean, t, den.alphas_cumprod)
    guide = Plain(den.condition([p["prompt"]] * clean.shape[0]))
    x0, kept = iterative_denoise(den, x_t, ts, p["i_start"], guide, ctx.gens("iterative", clean.shape[0]),
                                 keep=p["keep"], progress=ctx.progress)
    for s in p["keep"]:
        out.add_image(f"x_t{s}", kept[s])
    one_step = estimate_x0(x_t, guide(den, x_t, t).eps.float(), t, den.alphas_cumprod).clamp(-1, 1)
    k, sigma = p["blur"]
    results = {"iterative": x0.clamp(-1, 1), "one_step": one_step,
               "blur": gaussian_blur(x_t, k, sigma).clamp(-1, 1)}
    for name, x in results.items():
        out.add_image(name, x)
        _measure(out, name, x, clean)
    out.meta["t_start"] = t
    return out


def _samples(ctx: RunContext, stream: str, n: int, ts: list[int], guide) -> torch.Tensor:
    den = ctx.backend().denoiser
    return sample(den, ts, guide, ctx.gens(stream, n), progress=ctx.progress).clamp(-1, 1)


def run_sampling(ctx: RunContext) -> Outputs:
    """1.5: sampling from pure noise with the prompt (no CFG) at each stride, then stage-2 upsampling."""
    backend, p, out = ctx.backend(), ctx.params, Outputs()
    prompt = _prompt(ctx, p["prompt"])
    guide = Plain(backend.denoiser.condition([prompt] * p["num_samples"]))
    for stride in p["strides"]:
        x = _samples(ctx, f"sample/stride{stride}", p["num_samples"], strided_timesteps(990, stride), guide)
        out.add_image(f"samples_stride{stride}", x)
        _upsample(ctx, out, f"stride{stride}", x, prompt)
    return out


def run_cfg(ctx: RunContext) -> Outputs:
    """1.6: sampling with classifier-free guidance, eps = eps_u + gamma (eps_c - eps_u), per cfg_scale."""
    backend, p, out = ctx.backend(), ctx.params, Outputs()
    prompt = _prompt(ctx, p["prompt"])
    for scale in p["cfg_scales"]:
        guide = _cfg(backend.denoiser, prompt, p["num_samples"], scale)
        x = _samples(ctx, f"cfg/scale{scale:g}", p["num_samples"], strided_timesteps(990, p["stride"]), guide)
        out.add_image(f"samples_cfg{scale:g}", x)
        _upsample(ctx, out, f"cfg{scale:g}", x, prompt)
    return out


def _upsample(ctx: RunContext, out: Outputs, name: str, x: torch.Tensor, prompt: str) -> None:
    """The writeups' "+ super resolution" figures: stage-2 upsampling of 64x64 results."""
    if ctx.params.get("upsample_steps"):
        up = ctx.backend().upsample(x, [prompt] * x.shape[0], ctx.gens(f"upsample/{name}", x.shape[0]),
                                    ctx.params["upsample_steps"], progress=ctx.progress)
        out.add_image(f"upsampled_{name}", up)


def _sdedit_grid(ctx: RunContext, out: Outputs, tag: str, clean: torch.Tensor, prompt: str, strides: Sequence[int]) -> None:
    """SDEdit of every clean image at each (stride, i_start); PSNR/SSIM against the clean image."""
    den, p = ctx.backend().denoiser, ctx.params
    guide = _cfg(den, prompt, clean.shape[0], p["cfg_scale"])
    for stride in strides:
        ts = strided_timesteps(990, stride)
        for i_start in p["i_start"]:
            name = f"{tag}_stride{stride}_i{i_start}"
            x = sdedit(den, clean, ts, i_start, guide, ctx.gens(name, clean.shape[0]), progress=ctx.progress)
            out.add_image(name, x.clamp(-1, 1))
            _measure(out, name, x.clamp(-1, 1), clean)


def run_sdedit(ctx: RunContext) -> Outputs:
    """1.7: SDEdit, x_t = forward(x_orig, t[i_start]) then iterative_denoise with CFG on "a high quality photo"."""
    out = Outputs()
    clean = _clean_images(ctx, ctx.params["images"], out)
    out.add_image("clean", clean)
    _sdedit_grid(ctx, out, "sdedit", clean, PHOTO, ctx.params["strides"])
    return out


def run_sdedit_drawn(ctx: RunContext) -> Outputs:
    """1.7.1: SDEdit of non-photographs (a web-style picture, hand drawings, a stroke edit) onto photos."""
    p, out = ctx.params, Outputs()
    pics = {"web": im.web_image()}
    pics.update({f"drawn_{name}": im.hand_drawn(name) for name in p["drawings"]})
    pics.update({f"stroke_{name}": im.stroke_edit(p["stroke_base"], name) for name in p["strokes"]})
    out.meta["images"] = {k: meta for k, (_, meta) in pics.items()}
    clean = torch.stack([x for x, _ in pics.values()]).to(ctx.device)
    out.add_image("originals", clean)
    _sdedit_grid(ctx, out, "edit", clean, PHOTO, p["strides"])
    return out


def run_inpaint(ctx: RunContext) -> Outputs:
    """1.7.2: inpainting; after each step x_t' = m x_t' + (1 - m) forward(x_orig, t')."""
    den, p, out = ctx.backend().denoiser, ctx.params, Outputs()
    if ctx.image is not None:
        clean = _clean_images(ctx, [], out)
        masks = (ctx.mask if ctx.mask is not None else im.mask(p["masks"][0]))[None]
    else:
        clean = _clean_images(ctx, p["images"], out)
        masks = torch.stack([im.mask(name) for name in p["masks"]])
    masks = masks.to(ctx.device)
    out.meta["masks"] = ["user"] if ctx.mask is not None else list(p["masks"][: len(masks)])
    n = clean.shape[0]
    guide = _cfg(den, _prompt(ctx, PHOTO), n, p["cfg_scale"])
    x = inpaint(den, clean, masks, strided_timesteps(990, p["stride"]), guide, ctx.gens("inpaint", n),
                ctx.gens("inpaint/renoise", n), progress=ctx.progress).clamp(-1, 1)
    out.add_image("clean", clean)
    out.add_image("mask", masks.expand_as(clean) * 2 - 1)
    out.add_image("inpainted", x)
    out.metrics["known_region_max_abs_err"] = float(((x - clean).abs() * (1 - masks)).max())
    return out


def run_img2img(ctx: RunContext) -> Outputs:
    """1.7.3: text-conditional image-to-image, SDEdit guided by another prompt."""
    p, out = ctx.params, Outputs()
    clean = _clean_images(ctx, [p["image"]], out)
    out.add_image("clean", clean)
    prompts = [ctx.prompt] if ctx.prompt is not None else list(p["prompts"])
    out.meta["prompts"] = prompts
    for j, prompt in enumerate(prompts):
        _sdedit_grid(ctx, out, f"prompt{j}", clean, prompt, [p["stride"]])
    return out


def run_anagrams(ctx: RunContext) -> Outputs:
    """1.8: visual anagrams, eps = mean_i view_i^-1(CFG(eps(view_i(x_t), p_i))), one batched call per step."""
    den, p, out = ctx.backend().denoiser, ctx.params, Outputs()
    ts = strided_timesteps(990, p["stride"])
    uncond = den.condition([None])
    out.meta["anagrams"] = [list(a) for a in p["anagrams"]]
    for j, (prompt_a, prompt_b, view) in enumerate(p["anagrams"]):
        views = [VIEWS["identity"], VIEWS[view]]
        guide = Anagram(views, [den.condition([prompt_a]), den.condition([prompt_b])], uncond, p["cfg_scale"])
        x = sample(den, ts, guide, ctx.gens(f"anagram{j}", 1), progress=ctx.progress).clamp(-1, 1)
        out.add_image(f"anagram{j}_{view}", x[0])
        out.add_image(f"anagram{j}_{view}_viewed", VIEWS[view].apply(x)[0])
    return out


def run_hybrids(ctx: RunContext) -> Outputs:
    """1.9: hybrid images, eps = low_pass(eps_1) + high_pass(eps_2) (kernel 33, sigma 2), with the
    writeup-2 variant that shares one unconditional estimate; both from the same seed."""
    den, p, out = ctx.backend().denoiser, ctx.params, Outputs()
    ts = strided_timesteps(990, p["stride"])
    uncond = den.condition([None])
    out.meta["hybrids"] = [list(h) for h in p["hybrids"]]
    for j, (far, near) in enumerate(p["hybrids"]):
        for shared in (False, True):
            guide = Hybrid(den.condition([far]), den.condition([near]), uncond, p["cfg_scale"], p["kernel_size"],
                           p["sigma"], shared_uncond=shared)
            x = sample(den, ts, guide, ctx.gens(f"hybrid{j}", 1), progress=ctx.progress).clamp(-1, 1)
            out.add_image(f"hybrid{j}_{'shared' if shared else 'separate'}", x[0])
        a, b = out.images[f"hybrid{j}_shared"], out.images[f"hybrid{j}_separate"]
        out.metrics[f"hybrid{j}_shared_vs_separate_max_abs"] = float((a - b).abs().max())
    return out


def _gt(a: str, b: str) -> Relation:
    return Relation(f"{a} > {b}", lambda m, a=a, b=b: m[a] > m[b], TRAINED)


_IMG = {"image": "rocket"}
_T = {"t": list(NOISE_LEVELS)}
SECTIONS_A = [
    Section("A0", "Setup: text-to-image, stage 1 and stage-2 upsampling", "A", IF_BACKENDS,
            {"prompts": ["an oil painting of a snowy mountain village", "a man wearing a hat", "a rocket ship"],
             "num_inference_steps": [20, 40, 100], "cfg_scale": 7.0}, run_a0, inputs=("prompt",)),
    Section("A1.1", "Implementing the forward process", "A", IF_BACKENDS, {**_IMG, **_T}, run_forward,
            inputs=("image",), relations=(Relation("noise lowers PSNR as t grows",
                                                   lambda m: m["noisy_t250_psnr"] > m["noisy_t500_psnr"] > m["noisy_t750_psnr"]),)),
    Section("A1.2", "Classical denoising (Gaussian blur)", "A", IF_BACKENDS,
            {**_IMG, **_T, "blur": [[9, 2.0], [11, 5.0], [13, 5.0]]}, run_blur, inputs=("image",)),
    Section("A1.3", "One-step denoising", "A", IF_BACKENDS, {**_IMG, **_T, "prompt": PHOTO, "blur": [9, 2.0]},
            run_one_step, inputs=("image",),
            relations=tuple(_gt(f"one_step_t{t}_psnr", f"blur_t{t}_psnr") for t in (500, 750))),
    Section("A1.4", "Iterative denoising", "A", IF_BACKENDS,
            {**_IMG, "prompt": PHOTO, "stride": 30, "i_start": 10, "keep": [690, 540, 390, 240, 90], "blur": [9, 2.0]},
            run_iterative, inputs=("image",),
            relations=(_gt("iterative_ssim", "blur_ssim"), _gt("one_step_psnr", "blur_psnr"))),
    Section("A1.5", "Diffusion model sampling", "A", IF_BACKENDS,
            {"prompt": PHOTO, "num_samples": 5, "strides": [30, 10], "upsample_steps": 20}, run_sampling,
            inputs=("prompt",)),
    Section("A1.6", "Classifier-free guidance", "A", IF_BACKENDS,
            {"prompt": PHOTO, "num_samples": 5, "stride": 30, "cfg_scales": [2.0, 7.0], "upsample_steps": 20},
            run_cfg, inputs=("prompt",)),
    Section("A1.7", "Image-to-image translation (SDEdit)", "A", IF_BACKENDS,
            {"images": ["rocket", "astronaut", "chelsea"], "i_start": [1, 3, 5, 7, 10, 20], "strides": [30, 15],
             "cfg_scale": 7.0}, run_sdedit, inputs=("image",),
            relations=(_gt("sdedit_stride30_i20_psnr", "sdedit_stride30_i1_psnr"),)),
    Section("A1.7.1", "Editing web and hand-drawn images, stroke edits", "A", IF_BACKENDS,
            {"drawings": ["house", "flower", "smiley"], "stroke_base": "astronaut", "strokes": ["moon", "river"],
             "i_start": [1, 3, 5, 7, 10, 20], "strides": [30], "cfg_scale": 7.0}, run_sdedit_drawn),
    Section("A1.7.2", "Inpainting", "A", IF_BACKENDS,
            {"images": ["rocket", "astronaut", "chelsea"], "masks": ["center_top", "ellipse", "rectangle"],
             "stride": 30, "cfg_scale": 7.0}, run_inpaint, inputs=("image", "mask", "prompt"),
            relations=(Relation("the known region is kept exactly", lambda m: m["known_region_max_abs_err"] < 1e-6),)),
    Section("A1.7.3", "Text-conditional image-to-image translation", "A", IF_BACKENDS,
            {"image": "rocket", "prompts": ["a rocket ship", "a pencil", "a rainy day"],
             "i_start": [1, 3, 5, 7, 10, 20], "stride": 30, "cfg_scale": 7.0}, run_img2img,
            inputs=("image", "prompt")),
    Section("A1.8", "Visual anagrams", "A", IF_BACKENDS,
            {"anagrams": [["an oil painting of an old man", "an oil painting of people around a campfire", "flip"],
                          ["a lithograph of waterfalls", "a lithograph of a skull", "flip"],
                          ["an oil painting of a snowy mountain village", "a photo of a dog", "flip"],
                          ["an oil painting of an old man", "an oil painting of a snowy mountain village", "rot180"],
                          ["an oil painting of an old man", "an oil painting of people around a campfire", "rot90"]],
             "stride": 30, "cfg_scale": 7.0}, run_anagrams),
    Section("A1.9", "Hybrid images", "A", IF_BACKENDS,
            {"hybrids": [["a lithograph of a skull", "a lithograph of waterfalls"],
                         ["a rainy day", "a photo of a dog"],
                         ["sunset in a desert", "a bar with dim lighting"]],
             "kernel_size": 33, "sigma": 2.0, "stride": 30, "cfg_scale": 7.0}, run_hybrids,
            relations=(Relation("one shared unconditional estimate equals separate ones (low + high = identity)",
                                lambda m: all(v < 1e-2 for k, v in m.items() if k.endswith("_max_abs"))),)),
]

for _section in SECTIONS_A:
    register(_section)
