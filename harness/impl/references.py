"""The reference runs of the checks, computed once: a check's calls, the harness's output for each and its tape
of draws depend only on (harness version, backend, section, parameters, seed), never on the file checked.

`References` computes them once per process, on demand (`check-impl` of one file; the grader of a batch, for
every submission's verdicts). `write_tapes` puts the tapes (the noise, never the reference outputs) in a
folder as safetensors, one file per check, named by `tape_key`; a sandboxed worker reads them with `TapeFiles`
and builds the calls itself, so every worker replays the same draws without running a reference.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch

import harness
from harness.impl.checks import CHECKS, Call, Check, Ctx, first_candidate
from harness.impl.replay import Tape, recording


@functools.lru_cache(maxsize=1)
def version() -> str:
    """The harness version and a hash of its source: any change to the code changes every key."""
    root = Path(harness.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{harness.__version__}+{digest.hexdigest()[:12]}"


def index_of(check: Check) -> int:
    """The check's place in `CHECKS` (a rotation's candidate views are the rotation check's)."""
    return next(i for i, c in enumerate(CHECKS) if (c.section, c.names, c.pattern) == (check.section, check.names,
                                                                                         check.pattern))


def tape_key(ctx: Ctx, check: Check) -> str:
    """(harness version, backend, section, parameters, seed) of a check's tapes, hashed: its file's name (a
    rotation's views share theirs)."""
    key = [version(), ctx.backend, index_of(check), check.section, ctx.params(check.section), ctx.stride, ctx.seed]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def reference_run(check: Check, ctx: Ctx) -> tuple[list[Call], list[torch.Tensor], list[Tape]]:
    """The check's calls, the reference of each (recorded) and its tape of draws."""
    calls, refs, tapes = check.calls(ctx), [], []
    for call in calls:
        with torch.no_grad(), recording(ctx.seed) as tape:
            refs.append(call.reference(None).float())
        tapes.append(Tape(call.draws, ctx.seed) if call.draws is not None else tape)
    return calls, refs, tapes


class References:
    """Each check's reference run, computed the first time it is asked for (a rotation's views one each)."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self._runs: dict[tuple, tuple[list[Call], list[torch.Tensor], list[Tape]]] = {}

    def run(self, check: Check) -> tuple[list[Call], list[torch.Tensor], list[Tape]]:
        key = (check.section, check.names, check.pattern, check.label)
        if key not in self._runs:
            self._runs[key] = reference_run(check, self.ctx)
        return self._runs[key]

    def tapes(self, check: Check) -> tuple[list[Call], list[Tape]]:
        """The calls and tapes the user's function gets (every candidate view makes the same calls and draws)."""
        calls, _, tapes = self.run(check)
        return calls, tapes

    def write_tapes(self, checks: Sequence[Check], folder: Path) -> dict[str, str]:
        """Each check's tapes in ``folder``/<tape_key>.safetensors (the roles in its metadata); the file of each
        check, by its place in `CHECKS` (what a worker is given: it never computes a key itself)."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for check in checks:
            _, tapes = self.tapes(first_candidate(check))
            tensors = {f"{j}/{k}": x.contiguous() for j, t in enumerate(tapes) for k, (_, x) in enumerate(t.draws)}
            roles = [[r for r, _ in t.draws] for t in tapes]
            files[str(index_of(check))] = f"{tape_key(self.ctx, check)}.safetensors"
            save_file(tensors, folder / files[str(index_of(check))], {"roles": json.dumps(roles)})
        return files


class TapeFiles:
    """`References.tapes` from the files `write_tapes` wrote (``files``: its answer): the calls built here, the
    draws read there."""

    def __init__(self, ctx: Ctx, folder: Path, files: dict[str, str]):
        self.ctx, self.folder, self.files = ctx, folder, files

    def tapes(self, check: Check) -> tuple[list[Call], list[Tape]]:
        from safetensors import safe_open

        with safe_open(self.folder / self.files[str(index_of(check))], "pt") as f:
            roles = json.loads(f.metadata()["roles"])
            tapes = [Tape([(r, f.get_tensor(f"{j}/{k}")) for k, r in enumerate(rs)], self.ctx.seed)
                     for j, rs in enumerate(roles)]
        return check.calls(self.ctx), tapes
