"""Every check of a user's file on a backend: load it with the notebook's globals, run each section's calls
with noise replay, judge them, and show the result: a table (section, function, verdict, figures, what it
looks like) and per section the user's images beside the reference's and their difference."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from harness.atomic import atomic_write_text
from harness.backends import get_backend, spec
from harness.errors import UnknownName
from harness.image_io import make_grid, save_png
from harness.impl.calling import ImplError, bind, read_output
from harness.impl.checks import CHECKS, Check, Ctx
from harness.impl.loader import UserCodeError, load, resolve, user_code
from harness.impl.notebook import Presented, notebook_globals
from harness.impl.replay import Tape, recording, replaying
from harness.impl.source import Source, compile_file
from harness.impl.verdicts import judge
from harness.schedules import strided_timesteps
from harness.seeding import DEFAULT_SEED


@dataclass
class Result:
    """One section's row, its images (shown, [-1, 1]) and, for an error, the traceback."""

    section: str
    function: str
    verdict: str  # matches the reference | works | wrong | error | skipped | stand-in (the "setup" row)
    figures: str
    looks_like: str = ""
    trace: str = ""
    images: dict[str, torch.Tensor] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("section", "function", "verdict", "figures", "looks_like", "trace")}


def check_ids() -> list[str]:
    return [c.section for c in CHECKS]


def select(sections: Sequence[str] | None) -> list[Check]:
    """The checks of ``sections`` (default: all), in order; an unknown id is a one-line error."""
    if not sections:
        return list(CHECKS)
    unknown = [s for s in sections if s not in check_ids()]
    if unknown:
        raise UnknownName(f"no check for section {unknown[0]!r}; sections checked: {', '.join(check_ids())}")
    return [c for c in CHECKS if c.section in sections]


def check_file(target: str, backend: str = "tiny-if", sections: Sequence[str] | None = None, seed: int = DEFAULT_SEED,
               stride: int = 30, time_limit: float = 600.0, device: str = "cpu",
               progress: Callable[[str], None] = lambda s: None) -> list[Result]:
    """Check the course functions in ``target`` (a .py file, a notebook or a module) on ``backend``, section by
    section; a first "setup" row names the imports that got a stand-in, if any."""
    if "A" not in spec(backend).parts:
        raise UnknownName(f"backend {backend!r} does not run Part A; check on tiny-if or mnist")
    checks, path = select(sections), resolve(target)
    source = compile_file(path)
    loaded = get_backend(backend, device)
    den = Presented(loaded.denoiser)
    ts = strided_timesteps(990, stride, len(den.alphas_cumprod))
    namespace = notebook_globals(den, ts)
    module, stand_ins = load(source, namespace, den.device, den.dtype, seed, time_limit)
    ctx = Ctx(backend, den, loaded.judge, seed, stride, namespace)
    results = [stand_in_row(stand_ins)] if stand_ins else []
    for check in checks:
        found = check.find(module)
        if found is None:
            results.append(Result(check.section, "-", "skipped", f"no function {' or '.join(check.names)} in {path.name}"))
            continue
        progress(f"{check.section}: {found[0]}")
        try:
            results.append(run_check(check, ctx, found, module, source, time_limit, progress))
        except UserCodeError as e:
            results.append(Result(check.section, found[0], "error", str(e), trace=e.trace))
        except ImplError as e:
            results.append(Result(check.section, found[0], "error", str(e)))
    return results


def stand_in_row(modules: Sequence[str]) -> Result:
    """The row that says which imports got a stand-in (`loader.StandIn`)."""
    return Result("setup", ", ".join(modules), "stand-in", "not installed here and only used for display: a "
                  "stand-in whose calls do nothing")


def run_check(check: Check, ctx: Ctx, found: tuple[str, Callable], module, source: Source, time_limit: float,
              progress: Callable[[str], None]) -> Result:
    """The reference of every call (recorded), the user's function on the replayed draws, the verdict."""
    name, fn = found
    calls = check.calls(ctx)
    refs, tapes = [], []
    for call in calls:
        with torch.no_grad(), recording(ctx.seed) as tape:
            refs.append(call.reference(None).float())
        tapes.append(Tape(call.draws, ctx.seed) if call.draws is not None else tape)
    outs, replayed = [], []
    for call, tape in zip(calls, tapes):
        what = f"{check.section} {name}"
        kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in bind(fn, call.values).items()}
        if "prompt" in call.values:  # for code that reads the global
            module.prompt_embeds = call.values["prompt"]
        with replaying(tape.fresh()) as served, user_code(ctx.den.device, ctx.den.dtype, ctx.seed, time_limit, what, source):
            out = fn(**kwargs)
        outs.append(read_output(out, call.like, what).to(call.like.device))
        replayed.append(served)
    draws = _draws(replayed)
    verdict = judge(check, ctx, calls, tapes, outs, refs, draws, progress)
    images = {"yours": torch.cat([ctx.show(x) for x in outs]), "reference": torch.cat([ctx.show(r) for r in refs])}
    images["difference"] = (images["yours"] - images["reference"]).abs() - 1  # |diff| on [-1, 1]: 0 is black
    return Result(check.section, name, verdict.verdict, verdict.figures, verdict.looks_like, images=images)


def _draws(tapes: Sequence[Tape]) -> str:
    served, total, unmatched = (sum(getattr(t, k) for t in tapes) for k in ("position", "total", "unmatched"))
    return f"draws {served}/{total} replayed" + (f", {unmatched} unmatched" if unmatched else "")


COLUMNS = (("section", "section"), ("function", "function"), ("verdict", "verdict"), ("figures", "figures"),
           ("looks_like", "looks like"))


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table, one row per section."""
    rows = [[r.section, r.function, r.verdict, r.figures, r.looks_like or "-"] for r in results]
    head = [title for _, title in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows])


BADGES = {"matches the reference": "pass", "works": "pass", "wrong": "fail", "error": "error", "skipped": "none",
          "stand-in": "none"}
ZOOM = 3  # the report shows 64x64 and 28x28 images this many times larger


def save(results: Sequence[Result], folder: Path, meta: dict) -> Path:
    """PNG grids (yours, reference, difference) per section, results.json (rows, tracebacks, meta) and
    index.html, the report page that puts them side by side (offline, no scripts); returns the page."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for r in results:
        for kind, x in r.images.items():
            grid = make_grid(x, nrow=len(x))
            save_png(folder / r.section / f"{kind}.png", grid)
            sizes[r.section] = (grid.shape[-1] * ZOOM, grid.shape[-2] * ZOOM)
    atomic_write_text(folder / "results.json", json.dumps({**meta, "results": [r.row() for r in results]}, indent=1) + "\n")
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("impl.html.j2").render(results=results, meta=meta, badges=BADGES, sizes=sizes)
    atomic_write_text(folder / "index.html", page)
    return folder / "index.html"
