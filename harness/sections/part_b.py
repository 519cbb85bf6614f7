"""Part B: UNets trained from scratch on MNIST, run from the shipped checkpoints (the `mnist` backend).

Images are in [0, 1] as the course uses them; outputs are mapped to [-1, 1] like every other image.
Each ``run_*`` is followed by its ``show_*``, the report layout of the images it writes. The sections run
on every backend whose row in `harness.backends.BACKENDS` lists part B (a `PartBBackend`).
"""

from __future__ import annotations

import numpy as np
import torch

from harness.filters import gaussian_blur
from harness.layout import Rows
from harness.metrics import psnr
from harness.outputs import Outputs
from harness.partb import checkpoints
from harness.partb.evaluate import accuracy, sample_fid, test_digits
from harness.partb.plot import render_plot
from harness.partb.sampling import ddpm_sample
from harness.partb.train import loss_series
from harness.schedules import linear_alphas_cumprod
from harness.sections.registry import Relation, RunContext, Section, register
from harness.seeding import randn

EPOCHS = [1, 5, 10, 15, 20]


def _pm(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1


def _model(ctx: RunContext, kind: str, epoch: int) -> torch.nn.Module:
    return ctx.backend().model(kind, epoch)


def _loss_curve(out: Outputs, kind: str) -> None:
    train, test = checkpoints.loss_log(kind)
    img = render_plot(loss_series(train, test), f"{kind} UNet loss (log scale)")
    out.add_image("loss_curve", torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1)
    out.metrics["train_loss_last_epoch"] = float(np.mean([v for _, e, v in train if e == train[-1][1]]))
    for epoch, loss in test:
        out.metrics[f"test_loss_epoch{epoch}"] = loss


def run_denoiser(ctx: RunContext) -> Outputs:
    """B1.2: z = x + sigma eps on test digits; D(z) after each epoch, beside a Gaussian blur of z."""
    p, out = ctx.params, Outputs()
    clean, _ = test_digits(p["num_digits"])
    z = clean + p["sigma"] * randn((1, 28, 28), ctx.gens("noise", len(clean)))
    k, s = p["blur"]
    blurred = gaussian_blur(z, k, s).clamp(0, 1)
    out.add_image("clean", _pm(clean))
    out.add_image("noisy", _pm(z.clamp(0, 1)))
    out.add_image("blurred", _pm(blurred))
    out.metrics["blur_psnr"] = psnr(_pm(blurred), _pm(clean))
    for epoch in p["epochs"]:
        x = _model(ctx, "denoiser", epoch)(z.to(ctx.device)).clamp(0, 1).cpu()
        out.add_image(f"denoised_epoch{epoch}", _pm(x))
        out.metrics[f"denoised_epoch{epoch}_psnr"] = psnr(_pm(x), _pm(clean))
    _loss_curve(out, "denoiser")
    return out


def _show_loss(r: Rows) -> None:
    r.row("loss", [r.pic("loss_curve", "train loss per step, test loss per epoch", target=400)])


def show_denoiser(r: Rows) -> None:
    s = r.p.get("sigma", 0.5)
    k, bs = r.p.get("blur", [5, 1.0])
    r.row("test digits", [r.pic("clean", "clean"), r.pic("noisy", f"noisy (sigma {s:g})"),
                          r.pic("blurred", f"Gaussian blur (kernel {k}, sigma {bs:g})")]
          + [r.pic(f"denoised_epoch{e}", f"denoised, epoch {e}") for e in r.p.get("epochs", [])])
    _show_loss(r)


def run_ood(ctx: RunContext) -> Outputs:
    """B1.2.2: the sigma-0.5 denoiser on other noise levels (out of distribution)."""
    p, out = ctx.params, Outputs()
    clean, _ = test_digits(p["num_digits"])
    eps = randn((1, 28, 28), ctx.gens("noise", len(clean)))  # one eps, scaled per sigma
    model = _model(ctx, "denoiser", p["epoch"])
    for sigma in p["sigmas"]:
        z = clean + sigma * eps
        x = model(z.to(ctx.device)).clamp(0, 1).cpu()
        out.add_image(f"noisy_sigma{sigma:g}", _pm(z.clamp(0, 1)))
        out.add_image(f"denoised_sigma{sigma:g}", _pm(x))
        out.metrics[f"denoised_sigma{sigma:g}_psnr"] = psnr(_pm(x), _pm(clean))
    return out


def show_ood(r: Rows) -> None:
    for s in r.p.get("sigmas", []):
        r.row(f"sigma = {s:g}", [r.pic(f"noisy_sigma{s:g}", "noisy"), r.pic(f"denoised_sigma{s:g}", "denoised")])


def run_time_loss(ctx: RunContext) -> Outputs:
    """B2.2: training loss of the time-conditioned UNet (per step) and test loss (per epoch)."""
    out = Outputs()
    _loss_curve(out, "time")
    return out


def run_class_loss(ctx: RunContext) -> Outputs:
    """B2.4: training and test loss of the class-conditioned UNet."""
    out = Outputs()
    _loss_curve(out, "class")
    return out


def run_time_samples(ctx: RunContext) -> Outputs:
    """B2.3: DDPM samples of the time-conditioned UNet after each epoch; FID-lite first vs last."""
    p, out = ctx.params, Outputs()
    abar = linear_alphas_cumprod(300)
    for epoch in p["epochs"]:
        x, frames = ddpm_sample(_model(ctx, "time", epoch), abar, ctx.gens(f"samples/epoch{epoch}", p["num_samples"]),
                                stride=p["stride"], keep_every=p["gif_every"] if epoch == p["epochs"][-1] else 0)
        out.add_image(f"samples_epoch{epoch}", _pm(x))
        if frames:
            out.add_animation("sampling", _pm(torch.stack(frames)))
    for epoch in (p["epochs"][0], p["epochs"][-1]):
        fid, _ = sample_fid(_model(ctx, "time", epoch), ctx.gens(f"fid/epoch{epoch}", p["fid_samples"]), stride=p["fid_stride"])
        out.metrics[f"fid_lite_epoch{epoch}"] = fid
    return out


def show_time_samples(r: Rows) -> None:
    for e in r.p.get("epochs", []):
        fid = r.case.metrics.get(f"fid_lite_epoch{e}")
        r.row(f"epoch {e}", [r.pic(f"samples_epoch{e}", f"FID-lite {fid:.1f}" if fid is not None else "")])
    r.row("sampling", [r.pic("sampling", "denoising, last epoch", target=400, ext="gif")])


def run_class_samples(ctx: RunContext) -> Outputs:
    """B2.5: class-conditioned samples (CFG) of each digit after each epoch, and the guidance sweep
    with the classifier's accuracy on the intended digit and FID-lite per cfg_scale."""
    p, out = ctx.params, Outputs()
    abar = linear_alphas_cumprod(300)
    labels = torch.arange(10).repeat(p["samples_per_digit"])
    for epoch in p["epochs"]:
        x, frames = ddpm_sample(_model(ctx, "class", epoch), abar, ctx.gens(f"samples/epoch{epoch}", len(labels)), labels, p["cfg_scale"],
                                stride=p["stride"], keep_every=p["gif_every"] if epoch == p["epochs"][-1] else 0)
        out.add_image(f"samples_epoch{epoch}", _pm(x))
        if frames:
            out.add_animation("sampling", _pm(torch.stack(frames)))
    model = _model(ctx, "class", p["epochs"][-1])
    sweep = torch.arange(10).repeat(p["sweep_samples_per_digit"])
    for scale in p["sweep_cfg_scales"]:
        fid, x = sample_fid(model, ctx.gens(f"sweep/cfg{scale:g}", len(sweep)), sweep, scale, p["sweep_stride"])
        out.add_image(f"sweep_cfg{scale:g}", _pm(x))
        out.metrics[f"accuracy_cfg{scale:g}"] = accuracy(x, sweep)
        out.metrics[f"fid_lite_cfg{scale:g}"] = fid
    return out


def show_class_samples(r: Rows) -> None:
    for e in r.p.get("epochs", []):
        r.row(f"epoch {e}", [r.pic(f"samples_epoch{e}", f"cfg_scale {r.p.get('cfg_scale', 5):g}")])
    sweep = []
    for g in r.p.get("sweep_cfg_scales", []):
        acc, fid = r.case.metrics.get(f"accuracy_cfg{g:g}"), r.case.metrics.get(f"fid_lite_cfg{g:g}")
        stats = f", accuracy {acc:.3f}, FID-lite {fid:.1f}" if acc is not None and fid is not None else ""
        sweep.append(r.pic(f"sweep_cfg{g:g}", f"cfg_scale {g:g}{stats}"))
    r.row("guidance sweep", sweep)
    r.row("sampling", [r.pic("sampling", "denoising, last epoch", target=400, ext="gif")])


SECTIONS_B = [
    Section("B1.2", "Single-step denoising UNet (sigma 0.5), after epochs 1 and 5", "B",
            {"epochs": [1, 5], "sigma": 0.5, "num_digits": 64, "blur": [5, 1.0]}, run_denoiser,
            relations=(Relation("denoiser PSNR at sigma 0.5 above Gaussian-blur PSNR",
                                lambda m: m["denoised_epoch5_psnr"] > m["blur_psnr"] + 3),), layout=show_denoiser),
    Section("B1.2.2", "Out-of-distribution noise levels", "B",
            {"epoch": 5, "sigmas": [0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0], "num_digits": 64}, run_ood,
            relations=(Relation("PSNR falls as sigma moves past 0.5", lambda m: m["denoised_sigma0.5_psnr"]
                                > m["denoised_sigma0.6_psnr"] > m["denoised_sigma0.8_psnr"] > m["denoised_sigma1_psnr"]),), layout=show_ood),
    Section("B2.2", "Training the time-conditioned UNet (loss curve)", "B", {}, run_time_loss,
            relations=(Relation("test loss falls from the first to the last epoch",
                                lambda m: m["test_loss_epoch20"] < m["test_loss_epoch1"]),), layout=_show_loss),
    Section("B2.3", "Sampling from the time-conditioned UNet", "B",
            {"epochs": EPOCHS, "num_samples": 10, "stride": 1, "gif_every": 10, "fid_samples": 200, "fid_stride": 10},
            run_time_samples,
            relations=(Relation("FID-lite falls from the first to the last checkpoint",
                                lambda m: m["fid_lite_epoch20"] < m["fid_lite_epoch1"]),), layout=show_time_samples),
    Section("B2.4", "Training the class-conditioned UNet (loss curve)", "B", {}, run_class_loss,
            relations=(Relation("test loss falls from the first to the last epoch",
                                lambda m: m["test_loss_epoch20"] < m["test_loss_epoch1"]),), layout=_show_loss),
    Section("B2.5", "Sampling from the class-conditioned UNet, guidance sweep", "B",
            {"epochs": EPOCHS, "samples_per_digit": 4, "cfg_scale": 5.0, "stride": 10, "gif_every": 2,
             "sweep_cfg_scales": [0.0, 5.0, 10.0], "sweep_samples_per_digit": 5, "sweep_stride": 10},
            run_class_samples,
            relations=(Relation("samples at cfg_scale 5 are the intended digit at least 95% of the time",
                                lambda m: m["accuracy_cfg5"] >= 0.95),
                       Relation("guidance raises accuracy: cfg_scale 5 above 0",
                                lambda m: m["accuracy_cfg5"] > m["accuracy_cfg0"])), layout=show_class_samples),
]

for _section in SECTIONS_B:
    register(_section)
