"""How each section is laid out, as the writeups lay it out: rows of captioned pictures built from the
image names the section writes (harness/sections/part_a.py, part_b.py) and its recorded parameters.
Any image a layout does not place is shown under "other outputs", so nothing a case wrote is hidden."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from harness.report.assets import Assets, Picture, hole, shrink
from harness.report.cases import Case


@dataclass
class Row:
    label: str
    pictures: list[Picture]


class _Rows:
    """Collects rows for one case and remembers which of its files were placed."""

    def __init__(self, case: Case, assets: Assets):
        self.case, self.assets, self.used, self.rows = case, assets, set(), []
        self.p = case.meta.get("params", {})

    def pic(self, name: str, caption: str = "", target: int = 192, ext: str = "png") -> Picture | None:
        self.used.add(f"{name}.{ext}")
        return self.assets.picture(self.case, f"{name}.{ext}", caption, target)

    def tile(self, name: str, j: int, caption: str = "", target: int = 128) -> Picture | None:
        """The j-th image of the one-row strip ``name`` (cut out so rows can follow one photo)."""
        self.used.add(f"{name}.png")
        tiles = self.assets.tiles(self.case, name)
        if j >= len(tiles):
            return None
        return self.assets.derived(self.case, f"{name}__{j}.png", tiles[j], caption, target)

    def count(self, name: str) -> int:
        return len(self.assets.tiles(self.case, name))

    def row(self, label: str, pictures: list[Picture | None]) -> None:
        pictures = [p for p in pictures if p is not None]
        if pictures:
            self.rows.append(Row(label, pictures))


def _a0(r: _Rows) -> None:
    prompts = r.case.meta.get("prompts", [])
    for steps in r.p.get("num_inference_steps", []):
        for stage in (1, 2):
            name = f"stage{stage}_steps{steps}"
            r.row(f"{steps} steps, stage {stage}",
                  [r.tile(name, j, prompts[j] if j < len(prompts) else "") for j in range(r.count(name))])


def _forward(r: _Rows) -> None:
    r.row("", [r.pic("clean", "original")] + [r.pic(f"noisy_t{t}", f"t = {t}") for t in r.p.get("t", [])])


def _blur(r: _Rows) -> None:
    for t in r.p.get("t", []):
        r.row(f"t = {t}", [r.pic(f"blur_t{t}_k{k}_s{s:g}", f"kernel {k}, sigma {s:g}") for k, s in r.p.get("blur", [])])


def _one_step(r: _Rows) -> None:
    for t in r.p.get("t", []):
        r.row(f"t = {t}", [r.pic(f"one_step_t{t}", "one-step denoised"), r.pic(f"blur_t{t}", "Gaussian blur")])


def _iterative(r: _Rows) -> None:
    r.row("denoising trajectory", [r.pic(f"x_t{t}", f"t = {t}", target=128) for t in r.p.get("keep", [])])
    r.row("blur vs one-step vs iterative", [r.pic("blur", "Gaussian blur"), r.pic("one_step", "one-step denoised"),
                                            r.pic("iterative", "iteratively denoised")])


def _samples(r: _Rows, key: str, values: list, label: Callable) -> None:
    for v in values:
        r.row(label(v), [r.pic(f"samples_{key}{v:g}", "stage 1")])
        r.row(f"{label(v)}, super resolution", [r.pic(f"upsampled_{key}{v:g}", "stage 2", target=256)])


def _sampling(r: _Rows) -> None:
    _samples(r, "stride", r.p.get("strides", []), lambda v: f"stride {v}")


def _cfg(r: _Rows) -> None:
    _samples(r, "cfg", r.p.get("cfg_scales", []), lambda v: f"cfg_scale {v:g}")


def _sdedit_rows(r: _Rows, tag: str, originals: str, labels: list[str], strides: list[int]) -> None:
    """One row per (picture, stride): i_start from noisiest to cleanest, then the original."""
    for stride in strides:
        for j, label in enumerate(labels):
            r.row(f"{label}, stride {stride}",
                  [r.tile(f"{tag}_stride{stride}_i{i}", j, f"i_start = {i}", 96) for i in r.p.get("i_start", [])]
                  + [r.tile(originals, j, "original", 96)])


def _labels(r: _Rows, name: str, names: list) -> list[str]:
    n = r.count(name)
    return [str(names[j]) if j < len(names) else f"image {j + 1}" for j in range(n)]


def _sdedit(r: _Rows) -> None:
    _sdedit_rows(r, "sdedit", "clean", _labels(r, "clean", r.p.get("images", [])), r.p.get("strides", []))


def _sdedit_drawn(r: _Rows) -> None:
    names = list(r.case.meta.get("images", {}))
    _sdedit_rows(r, "edit", "originals", _labels(r, "originals", names), r.p.get("strides", []))


def _inpaint(r: _Rows) -> None:
    masks = r.case.meta.get("masks", [])
    clean, mask = r.assets.tiles(r.case, "clean"), r.assets.tiles(r.case, "mask")
    for j, label in enumerate(_labels(r, "clean", r.p.get("images", []))):
        filled = (r.assets.derived(r.case, f"hole__{j}.png", hole(clean[j], mask[j]), "hole to fill", 128)
                  if j < len(mask) else None)
        r.row(f"{label}, mask {masks[j]}" if j < len(masks) else label,
              [r.tile("clean", j, "original"), r.tile("mask", j, "mask"), filled, r.tile("inpainted", j, "inpainted")])


def _img2img(r: _Rows) -> None:
    for j, prompt in enumerate(r.case.meta.get("prompts", [])):
        r.row(f'"{prompt}"', [r.tile(f"prompt{j}_stride{r.p.get('stride')}_i{i}", 0, f"i_start = {i}", 96)
                              for i in r.p.get("i_start", [])] + [r.tile("clean", 0, "original", 96)])


def _anagrams(r: _Rows) -> None:
    for j, (a, b, view) in enumerate(r.case.meta.get("anagrams", [])):
        r.row(f"anagram {j + 1} ({view})", [r.pic(f"anagram{j}_{view}", f"upright: {a}"),
                                            r.pic(f"anagram{j}_{view}_viewed", f"{view}: {b}")])


def _hybrids(r: _Rows) -> None:
    """Each hybrid at full size (the near prompt) and shrunk 4x (the far prompt), separate and shared uncond."""
    for j, (far, near) in enumerate(r.case.meta.get("hybrids", [])):
        pictures = []
        for variant, note in (("separate", ""), ("shared", " (shared uncond)")):
            name = f"hybrid{j}_{variant}"
            pictures.append(r.pic(name, f"near: {near}{note}"))
            if r.case.has(f"{name}.png"):
                far_view = shrink(r.assets.tiles(r.case, name)[0])
                pictures.append(r.assets.derived(r.case, f"{name}__far.png", far_view, f"far: {far}", target=1))
        r.row(f"hybrid {j + 1}", pictures)


def _denoiser(r: _Rows) -> None:
    s = r.p.get("sigma", 0.5)
    k, bs = r.p.get("blur", [5, 1.0])
    r.row("test digits", [r.pic("clean", "clean"), r.pic("noisy", f"noisy (sigma {s:g})"),
                          r.pic("blurred", f"Gaussian blur (kernel {k}, sigma {bs:g})")]
          + [r.pic(f"denoised_epoch{e}", f"denoised, epoch {e}") for e in r.p.get("epochs", [])])
    _loss(r)


def _ood(r: _Rows) -> None:
    for s in r.p.get("sigmas", []):
        r.row(f"sigma = {s:g}", [r.pic(f"noisy_sigma{s:g}", "noisy"), r.pic(f"denoised_sigma{s:g}", "denoised")])


def _loss(r: _Rows) -> None:
    r.row("loss", [r.pic("loss_curve", "train loss per step, test loss per epoch", target=400)])


def _time_samples(r: _Rows) -> None:
    for e in r.p.get("epochs", []):
        fid = r.case.metrics.get(f"fid_lite_epoch{e}")
        r.row(f"epoch {e}", [r.pic(f"samples_epoch{e}", f"FID-lite {fid:.1f}" if fid is not None else "")])
    r.row("sampling", [r.pic("sampling", "denoising, last epoch", target=400, ext="gif")])


def _class_samples(r: _Rows) -> None:
    for e in r.p.get("epochs", []):
        r.row(f"epoch {e}", [r.pic(f"samples_epoch{e}", f"cfg_scale {r.p.get('cfg_scale', 5):g}")])
    sweep = []
    for g in r.p.get("sweep_cfg_scales", []):
        acc, fid = r.case.metrics.get(f"accuracy_cfg{g:g}"), r.case.metrics.get(f"fid_lite_cfg{g:g}")
        stats = f", accuracy {acc:.3f}, FID-lite {fid:.1f}" if acc is not None and fid is not None else ""
        sweep.append(r.pic(f"sweep_cfg{g:g}", f"cfg_scale {g:g}{stats}"))
    r.row("guidance sweep", sweep)
    r.row("sampling", [r.pic("sampling", "denoising, last epoch", target=400, ext="gif")])


LAYOUTS: dict[str, Callable[[_Rows], None]] = {
    "A0": _a0, "A1.1": _forward, "A1.2": _blur, "A1.3": _one_step, "A1.4": _iterative, "A1.5": _sampling,
    "A1.6": _cfg, "A1.7": _sdedit, "A1.7.1": _sdedit_drawn, "A1.7.2": _inpaint, "A1.7.3": _img2img,
    "A1.8": _anagrams, "A1.9": _hybrids, "B1.2": _denoiser, "B1.2.2": _ood, "B2.2": _loss, "B2.3": _time_samples,
    "B2.4": _loss, "B2.5": _class_samples,
}


def layout(case: Case, assets: Assets) -> list[Row]:
    """The case's rows, in its section's layout, then whatever images it wrote that the layout did not place."""
    r = _Rows(case, assets)
    LAYOUTS.get(case.section.id, lambda _: None)(r)
    rest = sorted(p.name for p in case.folder.iterdir() if p.suffix in (".png", ".gif") and p.name not in r.used)
    r.row("other outputs", [assets.picture(case, name, name.rsplit(".", 1)[0]) for name in rest])
    return r.rows
