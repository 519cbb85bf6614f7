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
from harness.impl.checks import CHECKS, Check, Ctx, Found
from harness.impl.loader import UserCodeError, load, resolve, user_code
from harness.impl.notebook import Presented, notebook_globals
from harness.impl.references import References
from harness.impl.replay import replaying
from harness.impl.source import Source, compile_file
from harness.impl.standins import NOTES, kind
from harness.impl.verdicts import MATCH_PSNR, distance, judge
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
    key: str = ""  # names the row's outputs and anchor: the section, or (a rotation) the section and function

    def __post_init__(self):
        self.key = self.key or self.section

    FIELDS = ("section", "function", "verdict", "figures", "looks_like", "trace", "key")

    def row(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.FIELDS}


def check_ids() -> list[str]:
    """The section ids checked (A1.8 once: its flip and rotation checks run together)."""
    return list(dict.fromkeys(c.section for c in CHECKS))


def select(sections: Sequence[str] | None) -> list[Check]:
    """The checks of ``sections`` (default: all), in order; an unknown id is a one-line error."""
    if not sections:
        return list(CHECKS)
    unknown = [s for s in sections if s not in check_ids()]
    if unknown:
        raise UnknownName(f"no check for section {unknown[0]!r}; sections checked: {', '.join(check_ids())}")
    return [c for c in CHECKS if c.section in sections]


def context(backend: str, device: str, seed: int, stride: int) -> Ctx:
    """What the checks of one backend run in: its model as the user's code sees it, its judge, the notebook's
    globals; a backend without Part A is a one-line error."""
    if "A" not in spec(backend).parts:
        raise UnknownName(f"backend {backend!r} does not run Part A; check on tiny-if or mnist")
    loaded = get_backend(backend, device)
    den = Presented(loaded.denoiser)
    namespace = notebook_globals(den, strided_timesteps(990, stride, len(den.alphas_cumprod)))
    return Ctx(backend, den, loaded.judge, seed, stride, namespace)


def check_file(target: str, backend: str = "tiny-if", sections: Sequence[str] | None = None, seed: int = DEFAULT_SEED,
               stride: int = 30, time_limit: float = 600.0, device: str = "cpu",
               progress: Callable[[str], None] = lambda s: None) -> list[Result]:
    """Check the course functions in ``target`` (a .py file, a notebook or a module) on ``backend``, section by
    section, in this process; a first "setup" row names the imports that got a stand-in, if any."""
    checks, path = select(sections), resolve(target)
    source = compile_file(path)
    ctx = context(backend, device, seed, stride)
    module, stand_ins = load(source, ctx.notebook, ctx.den.device, ctx.den.dtype, seed, time_limit)
    refs = References(ctx)
    return [verdict_of(o, ctx, refs, progress)
            for o in outcomes(module, stand_ins, checks, ctx, source, time_limit, refs, progress)]


@dataclass
class Produced:
    """A user function's outputs, one per call (in the data range), and its draws (served, total, unmatched):
    what its verdict is judged from (`verdict_of`), here or, from a sandbox's files, in the grader."""

    found: Found
    outs: list[torch.Tensor]
    draws: tuple[int, int, int]


def outcomes(module, stand_ins: Sequence[str], checks: Sequence[Check], ctx: Ctx, source: Source, time_limit: float,
             tapes, progress: Callable[[str], None] = lambda s: None) -> list[Result | Produced]:
    """Every check's user function run on its calls (``tapes``: `References` or `references.TapeFiles`): a
    `Produced` each, or its row when it is missing or raised; first the "setup" row of stand-ins, if any."""
    results: list[Result | Produced] = [stand_in_row(stand_ins)] if stand_ins else []
    for check in checks:
        found = check.find(module)
        if not found and check.every is None:  # the rotations are optional: none, no row
            results.append(Result(check.section, "-", "skipped", f"no function {' or '.join(check.names)} in "
                                                                 f"{source.path.name}"))
        for f in found:
            progress(f"{check.section}: {f.name}")
            try:
                results.append(produce(f, ctx, module, source, time_limit, tapes))
            except UserCodeError as e:
                results.append(Result(check.section, f.name, "error", str(e), trace=e.trace, key=f.key))
            except ImplError as e:
                results.append(Result(check.section, f.name, "error", str(e), key=f.key))
    return results


def stand_in_row(modules: Sequence[str]) -> Result:
    """The row that says which imports got a stand-in (`standins`), and what each kind of stand-in does."""
    notes = dict.fromkeys(NOTES[kind(m)] for m in modules)
    return Result("setup", ", ".join(modules), "stand-in", "; ".join(notes))


def produce(found: Found, ctx: Ctx, module, source: Source, time_limit: float, tapes) -> Produced:
    """The user's function on the first candidate's calls, each with its tape of draws replayed (every candidate
    makes the same calls and draws)."""
    calls, call_tapes = tapes.tapes(found.checks[0])
    outs, served = [], []
    for call, tape in zip(calls, call_tapes):
        what = f"{found.checks[0].section} {found.name}"
        kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in bind(found.fn, call.values).items()}
        if "prompt" in call.values:  # for code that reads the global
            module.prompt_embeds = call.values["prompt"]
        with replaying(tape.fresh()) as replayed, user_code(ctx.den.device, ctx.den.dtype, ctx.seed, time_limit,
                                                            what, source):
            out = found.fn(**kwargs)
        outs.append(read_output(out, call.like, what).to(call.like.device))
        served.append(replayed)
    return Produced(found, outs, tuple(sum(getattr(t, k) for t in served) for k in ("position", "total", "unmatched")))


def verdict_of(outcome: Result | Produced, ctx: Ctx, refs: References,
               progress: Callable[[str], None] = lambda s: None) -> Result:
    """A row as it is, or a `Produced`'s verdict: that of the candidate closest to its outputs, with its images."""
    if isinstance(outcome, Result):
        return outcome
    found, outs = outcome.found, outcome.outs
    candidates = [(check, *refs.run(check)) for check in found.checks]
    (check, calls, refs_, tapes), verdict = _judged(candidates, ctx, outs, _draws(*outcome.draws), progress)
    images = {"yours": torch.cat([ctx.show(x) for x in outs]), "reference": torch.cat([ctx.show(r) for r in refs_])}
    images["difference"] = (images["yours"] - images["reference"]).abs() - 1  # |diff| on [-1, 1]: 0 is black
    figures = "; ".join(filter(None, [check.label, verdict.figures]))
    return Result(check.section, found.name, verdict.verdict, figures, verdict.looks_like, images=images, key=found.key)


def _judged(candidates: list, ctx: Ctx, outs: list[torch.Tensor], draws: str, progress: Callable[[str], None]):
    """The candidate that judges the outputs, and its verdict: the closest if it matches; otherwise the first
    whose mistakes name what the outputs look like (a rotation not turned back, in its direction), else the
    first (the reference's view)."""
    best = max(candidates, key=lambda c: distance(ctx, outs, c[2])[0])
    order = [best] if distance(ctx, outs, best[2])[0] >= MATCH_PSNR else candidates
    judged = ((c, judge(c[0], ctx, c[1], c[3], outs, c[2], draws, progress)) for c in order)
    first = next(judged)
    return first if first[1].looks_like else next((j for j in judged if j[1].looks_like), first)


def _draws(served: int, total: int, unmatched: int) -> str:
    return f"draws {served}/{total} replayed" + (f", {unmatched} unmatched" if unmatched else "")


COLUMNS = (("section", "section"), ("function", "function"), ("verdict", "verdict"), ("figures", "figures"),
           ("looks_like", "looks like"))


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table, one row per function checked (A1.8: the flip and each rotation)."""
    rows = [[r.section, r.function, r.verdict, r.figures, r.looks_like or "-"] for r in results]
    head = [title for _, title in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows])


BADGES = {"matches the reference": "pass", "works": "pass", "wrong": "fail", "error": "error", "skipped": "none",
          "stand-in": "none"}
ZOOM = 3  # the report shows 64x64 and 28x28 images this many times larger


def save(results: Sequence[Result], folder: Path, meta: dict) -> Path:
    """PNG grids (yours, reference, difference) per row (in OUT/<key>/), results.json (rows, tracebacks, meta) and
    index.html, the report page that puts them side by side (offline, no scripts); returns the page."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for r in results:
        for kind, x in r.images.items():
            grid = make_grid(x, nrow=len(x))
            save_png(folder / r.key / f"{kind}.png", grid)
            sizes[r.key] = (grid.shape[-1] * ZOOM, grid.shape[-2] * ZOOM)
    atomic_write_text(folder / "results.json", json.dumps({**meta, "results": [r.row() for r in results]}, indent=1) + "\n")
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("impl.html.j2").render(results=results, meta=meta, badges=BADGES, sizes=sizes)
    atomic_write_text(folder / "index.html", page)
    return folder / "index.html"
