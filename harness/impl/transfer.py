"""A sandboxed worker's outcomes as data, never pickled: ``outcome.json`` (rows, and for each function that
ran, its check, name and draws) and ``outputs.safetensors`` (its outputs), written in the scratch folder and
read back by the grader, which trusts none of it: the rows it accepts are only those a submission can give
itself (error, skipped, stand-in), and outputs must have its calls' shapes; every verdict is the grader's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from harness.atomic import atomic_path, atomic_write_text
from harness.impl.checks import CHECKS, found_again
from harness.impl.references import index_of
from harness.impl.run import Produced, Result

OUTCOME, OUTPUTS = "outcome.json", "outputs.safetensors"
OWN_VERDICTS = ("error", "skipped", "stand-in")
MAX_TEXT, MAX_TRACE = 2000, 50_000


class Unreadable(Exception):
    """What came back from the sandbox is not what a worker writes."""


def write(folder: Path, outcomes: Sequence[Result | Produced] = (), error: str = "", trace: str = "") -> None:
    """The outcomes (or the error that stopped the file loading) into ``folder``; outcome.json last."""
    from safetensors.torch import save_file

    entries, tensors = [], {}
    for n, o in enumerate(outcomes):
        if isinstance(o, Result):
            entries.append({"row": o.row()})
            continue
        f = o.found
        entries.append({"check": index_of(f.checks[0]), "name": f.name, "key": f.key, "views": f.views,
                        "outputs": len(o.outs), "draws": list(o.draws)})
        tensors.update({f"{n}/{j}": x.detach().float().cpu().contiguous() for j, x in enumerate(o.outs)})
    with atomic_path(folder / OUTPUTS) as tmp:
        save_file(tensors, tmp)
    atomic_write_text(folder / OUTCOME, json.dumps({"error": error, "trace": trace, "outcomes": entries}))


def read(folder: Path, calls_of) -> tuple[list[Result | Produced], str, str]:
    """(outcomes, error, trace) from ``folder``; ``calls_of(check)`` gives the calls a check's outputs answer.
    Raises `Unreadable` when the files are missing or not a worker's."""
    from safetensors import safe_open

    try:
        data = json.loads((folder / OUTCOME).read_text(encoding="utf-8"))
        entries, error, trace = data["outcomes"], _text(data["error"]), _text(data["trace"], MAX_TRACE)
        with safe_open(folder / OUTPUTS, "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return [_entry(n, e, tensors, calls_of) for n, e in enumerate(entries)], error, trace
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise Unreadable(f"{type(e).__name__}: {str(e)[:200]}") from None


def _entry(n: int, entry: dict, tensors: dict, calls_of) -> Result | Produced:
    if "row" in entry:
        row = {k: _text(entry["row"][k], MAX_TRACE if k == "trace" else MAX_TEXT) for k in Result.FIELDS}
        if row["verdict"] not in OWN_VERDICTS:
            raise ValueError(f"a row with verdict {row['verdict']!r}")
        return Result(**row)
    index = int(entry["check"])
    if not 0 <= index < len(CHECKS):
        raise IndexError(f"check {index}")
    found = found_again(index, _text(entry["name"]), _text(entry["key"]), _text(entry["views"]))
    calls = calls_of(found.checks[0])
    outs = [tensors[f"{n}/{j}"] for j in range(len(calls))]
    for call, x in zip(calls, outs):
        if x.shape != call.like.shape or not torch.isfinite(x).all():
            raise ValueError(f"outputs of {found.name} of shape {tuple(x.shape)}: expected {tuple(call.like.shape)}")
    draws = tuple(int(d) for d in entry["draws"])
    return Produced(found, [x.to(c.like.device) for x, c in zip(outs, calls)], (draws[0], draws[1], draws[2]))


def _text(value, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} where text belongs")
    return value[:limit]
