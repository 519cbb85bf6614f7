"""Verdicts that do not depend on noise where they need not.

- "matches the reference": PSNR >= 40 dB against the harness's output for every call (the goldens' CUDA
  tolerance: another order of float operations, or fp16, gives that much), no mistake's re-run closer;
- "works": pixels differ, and the section's relations hold (`Section.relations` that apply to the backend and
  whose metrics are measured here, and the check's own); where pixels need not agree, a check's statistics
  must agree with the reference's (the forward process's noise level, within 5 standard errors);
- "wrong": a relation fails (named, with its numbers), the values leave the data range, or the output
  matches the reference re-run with a common mistake, in pixels (closer than the reference: on mnist no
  variance at the last step moves a result by less than 40 dB) or in those statistics. That mistake is
  what it looks like.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from harness.golden import TOLERANCES
from harness.impl.calling import out_of_range
from harness.impl.checks import Call, Check, Ctx
from harness.impl.mistakes import Mistake
from harness.impl.replay import Tape, serving
from harness.metrics import psnr
from harness.sections import get_section

MATCH_PSNR = TOLERANCES["cuda"].min_psnr
EXACT_PSNR = TOLERANCES["cpu"].min_psnr
STANDARD_ERRORS = 5.0


@dataclass
class Verdict:
    verdict: str  # matches the reference | works | wrong
    figures: str
    looks_like: str = ""


class Reading(dict):
    """Metrics that remember which of them a relation read (its numbers, when it fails)."""

    def __init__(self, metrics: Mapping[str, float]):
        super().__init__(metrics)
        self.read: dict[str, float] = {}

    def __getitem__(self, key: str) -> float:
        value = super().__getitem__(key)
        self.read[key] = value
        return value


def rerun(calls: Sequence[Call], tapes: Sequence[Tape], mistake: Mistake | None) -> list[torch.Tensor]:
    """The references again, each drawing from its call's tape in call order, with ``mistake`` applied."""
    outs = []
    for call, tape in zip(calls, tapes):
        skip = mistake.skip if mistake is not None else None
        patch = mistake.patch() if mistake is not None else nullcontext()
        with torch.no_grad(), serving(tape.fresh(), skip), patch:
            outs.append(call.reference(mistake).float())
    return outs


def distance(ctx: Ctx, outs: Sequence[torch.Tensor], refs: Sequence[torch.Tensor]) -> tuple[float, float]:
    """(the lowest PSNR over calls, the largest |difference|) of the shown images ([-1, 1], clamped)."""
    pairs = [(ctx.show(x), ctx.show(r)) for x, r in zip(outs, refs)]
    return min(psnr(x, r) for x, r in pairs), max(float((x - r).abs().max()) for x, r in pairs)


def _stats_disagree(check: Check, calls: Sequence[Call], outs, refs) -> list[str]:
    """The statistics of ``outs`` that differ from those of ``refs`` by more than 5 standard errors."""
    if check.statistics is None:
        return []
    bad = []
    for call, x, r in zip(calls, outs, refs):
        mine, theirs = check.statistics(call, x), check.statistics(call, r)
        for key, (value, se) in mine.items():
            expected, se_r = theirs[key]
            if abs(value - expected) > STANDARD_ERRORS * max(se, se_r) + 1e-3:
                bad.append(f"{key} {value:.3f} vs {expected:.3f}")
    return bad


def failing_relations(check: Check, ctx: Ctx, metrics: Mapping[str, float]) -> list[str]:
    """The relations that apply and fail, each with the metrics it read."""
    failed = []
    for relation in (*check.relations, *get_section(check.section).relations):
        if not relation.applies_to(ctx.backend):
            continue
        reading = Reading(metrics)
        try:
            holds = relation.holds(reading)
        except KeyError:  # a metric this check does not measure (another stride, another case size)
            continue
        if not holds:
            numbers = ", ".join(f"{k} {v:.3g}" for k, v in reading.read.items())
            failed.append(f"{relation.text} ({numbers})")
    return failed


def judge(check: Check, ctx: Ctx, calls: Sequence[Call], tapes: Sequence[Tape], outs: Sequence[torch.Tensor],
          refs: Sequence[torch.Tensor], draws: str, progress: Callable[[str], None] = lambda s: None) -> Verdict:
    """The verdict on the user's outputs ``outs`` against the references ``refs``. At PSNR >= 60 dB (the CPU
    goldens' tolerance) it matches; below, each mistake is re-run, and one closer to the outputs than the
    reference (at >= 40 dB), or whose statistics they share where the reference's they do not, names it."""
    low, worst = distance(ctx, outs, refs)
    figures = f"PSNR {low:.1f} dB, max abs diff {worst:.2g}; {draws}"
    if low >= EXACT_PSNR:
        return Verdict("matches the reference", figures)
    failed = [problem] if (problem := out_of_range(outs, ctx.den.data_range)) else []
    if bad := _stats_disagree(check, calls, outs, refs):
        failed.append(f"noise level differs from the reference's: {'; '.join(bad)}")
    failed += failing_relations(check, ctx, check.metrics(ctx, calls, outs))
    for mistake in check.mistakes:
        progress(f"re-running the reference with: {mistake.name}")
        theirs = rerun(calls, tapes, mistake)
        closer = distance(ctx, outs, theirs)[0]
        if (closer >= MATCH_PSNR and closer > low) or (bad and not _stats_disagree(check, calls, outs, theirs)):
            return Verdict("wrong", "; ".join([figures, *failed]), mistake.name)
    if low >= MATCH_PSNR:
        return Verdict("matches the reference", figures)
    if failed:
        return Verdict("wrong", "; ".join([figures, *failed]))
    return Verdict("works", f"{figures}; relations hold")
