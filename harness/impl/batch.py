"""check-impl on a class: many submissions, each in its own sandbox, ``workers`` at a time, the references
computed once, one gradebook (README "Grade a class").

The grader (this process) computes every check's reference run once (`references.References`) and writes the
tapes of draws into a folder that each sandbox reads; a worker (`worker`, in `sandbox.run`) loads one
submission from a copy in its scratch folder and returns its outputs as data (`transfer`); the grader judges
them (`run.verdict_of`), writes the submission's report page (OUT/<name>/<backend>/index.html, as check-impl
of one file does) and its grade (OUT/<name>/grade.json, `gradebook`). A submission whose file hash, harness
version and parameters match its grade.json is not run again unless ``force``. Whatever a submission does, its
faults are rows: a sandbox that ends without results is an "error" row saying how it ended.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import harness
from harness.errors import BadValue
from harness.impl import gradebook, sandbox, transfer
from harness.impl.references import References, version
from harness.impl.run import Result, context, save, select, verdict_of
from harness.paths import cache_dir
from harness.seeding import DEFAULT_SEED

SUFFIXES = (".ipynb", ".py")


@dataclass(frozen=True)
class Submission:
    """A file to grade, its name in the output folder (unique, from its path) and its sha256."""

    path: Path
    name: str
    sha256: str


@dataclass(frozen=True)
class Options:
    """What every submission is checked with (the single-file check-impl's options), and the sandbox's caps."""

    backend: str = "tiny-if"
    sections: tuple[str, ...] = ()
    seed: int = DEFAULT_SEED
    stride: int = 30
    time_limit: float = 600.0
    device: str = "cpu"
    limits: sandbox.Limits = sandbox.Limits()

    def params(self) -> dict:
        return {"backend": self.backend, "sections": list(self.sections), "seed": self.seed, "stride": self.stride,
                "time_limit": self.time_limit}


def submissions(targets: Sequence[str], out: Path) -> list[Submission]:
    """The notebooks and .py files named, or found in the folders named (recursively; hidden folders,
    checkpoints and ``out`` left out), each once; a target that is neither is a one-line error."""
    files: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file() and not _skipped(p, path, out))
        elif path.is_file() and path.suffix in SUFFIXES:
            files.append(path)
        else:
            raise BadValue(f"{target}: not a folder, .ipynb or .py file: pass the submissions' folder or files")
    files = list(dict.fromkeys(p.resolve() for p in files))
    if not files:
        raise BadValue(f"no .ipynb or .py files in {', '.join(targets)}: pass the submissions' folder or files")
    names = _names(files)
    return [Submission(p, names[p], hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]


def _skipped(path: Path, root: Path, out: Path) -> bool:
    parts = path.relative_to(root).parts[:-1]
    return any(p.startswith(".") or p == "__pycache__" for p in parts) or out.resolve() in path.resolve().parents


def _names(files: Sequence[Path]) -> dict[Path, str]:
    """Each file's folder name in OUT: its stem where that is unique, else its name with as many parent folders
    as make it unique, made safe."""
    def named(p: Path, depth: int) -> str:
        parts = [p.stem] if depth == 0 else list(p.parts[-depth:])
        return re.sub(r"[^\w.-]+", "_", "__".join(parts))

    for depth in range(max(len(p.parts) for p in files)):
        names = {p: named(p, depth) for p in files}
        if len(set(names.values())) == len(files):
            return names
    return {p: f"{named(p, 1)}_{i}" for i, p in enumerate(files)}  # two paths made the same by the safe name


def grade(targets: Sequence[str], out: Path, options: Options = Options(), workers: int | None = None,
          force: bool = False, gradescope: bool = False, rubric: Path | None = None,
          echo: Callable[[str], None] | None = None) -> list[dict]:
    """Grade every submission (see the module docstring); the grades, in submission order. ``echo`` gets one
    line per finished submission (default: beside a tqdm bar on stderr)."""
    from tqdm import tqdm

    points = gradebook.rubric(rubric)
    subs = submissions(targets, out)
    workers = workers or len(os.sched_getaffinity(0))
    grades: dict[str, dict] = {}
    todo = []
    for sub in subs:
        old = gradebook.read(out / sub.name)
        if not force and old is not None and (old["sha256"], old["version"], old["params"]) == (
                sub.sha256, version(), options.params()):
            grades[sub.name] = {**old, "skipped": True}
        else:
            todo.append(sub)
    bar = tqdm(total=len(subs), initial=len(subs) - len(todo), unit="submission", file=sys.stderr, disable=echo is not None)
    say = echo or bar.write
    if (why := sandbox.warning()) is not None and todo:
        say(why)
    for sub in subs:
        if sub.name in grades:
            say(_line(grades[sub.name], points))
    if todo:
        ctx = context(options.backend, options.device, options.seed, options.stride)
        refs = References(ctx)
        checks = select(options.sections)
        with tempfile.TemporaryDirectory(prefix="harness-grade-") as tmp:
            tapes = Path(tmp) / "tapes"
            files = refs.write_tapes(checks, tapes)
            threads = max(1, len(os.sched_getaffinity(0)) // workers)
            with ThreadPoolExecutor(workers) as pool:
                futures = {pool.submit(_sandboxed, sub, Path(tmp) / f"s{i}", (tapes, files), options, threads): sub
                           for i, sub in enumerate(todo)}
                for future in as_completed(futures):
                    sub = futures[future]
                    results, seconds = _judged(future.result(), sub, ctx, refs, options)
                    grades[sub.name] = _record(sub, results, seconds, out, options, points, gradescope)
                    say(_line(grades[sub.name], points))
                    bar.update()
    bar.close()
    ordered = [grades[s.name] for s in subs]
    gradebook.write(ordered, out, points, options.backend)
    return ordered


def _sandboxed(sub: Submission, scratch: Path, tapes: tuple[Path, dict[str, str]], options: Options, threads: int):
    """Run one submission's worker in its sandbox, given the tapes' folder and files: (how it ended, its scratch
    folder)."""
    tapes, files = tapes
    scratch.mkdir(parents=True)
    shutil.copyfile(sub.path, scratch / sub.path.name)
    home = sandbox.inside(scratch, "/scratch")
    package, cache = Path(harness.__file__).parent, cache_dir()
    read_only = {package: package, cache: cache, tapes: sandbox.inside(tapes, "/tapes")}
    env = {"PYTHONPATH": str(package.parent), "HARNESS_CACHE": str(cache), "HARNESS_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if "MNIST_ROOT" in os.environ:
        read_only[Path(os.environ["MNIST_ROOT"])] = Path(env.setdefault("MNIST_ROOT", os.environ["MNIST_ROOT"]))
    job = {"file": str(home / sub.path.name), "out": str(home / "outcome"), "tapes": str(read_only[tapes]),
           "tape_files": files,
           "backend": options.backend, "sections": list(options.sections), "seed": options.seed,
           "stride": options.stride, "time_limit": options.time_limit, "device": options.device}
    (scratch / "job.json").write_text(json.dumps(job))
    gpus = sorted(glob.glob("/dev/nvidia*")) if options.device.startswith("cuda") else []
    finished = sandbox.run([sys.executable, "-m", "harness.impl.worker", str(home / "job.json")], scratch,
                           options.limits, read_only, env, gpus)
    return finished, scratch


def _judged(ran, sub: Submission, ctx, refs: References, options: Options) -> tuple[list[Result], float]:
    """The rows of a finished sandbox: the grader's verdicts on its outputs, or one error row saying how it
    ended when it wrote no results."""
    finished, scratch = ran
    try:
        outcomes, error, trace = transfer.read(scratch / "outcome", lambda check: refs.tapes(check)[0])
    except transfer.Unreadable as e:
        why = (f"the sandbox {finished.why(options.limits)} before writing its results"
               if not (scratch / "outcome" / transfer.OUTCOME).exists() else f"its results are unreadable ({e})")
        return [Result("setup", "-", "error", f"{sub.path.name}: {why}{_stderr(scratch)}")], finished.seconds
    if error:
        return [Result("setup", "-", "error", error, trace=trace)], finished.seconds
    return [verdict_of(o, ctx, refs) for o in outcomes], finished.seconds


def _stderr(scratch: Path) -> str:
    """'; it raised: ...' where its stderr ends with a Python traceback (a crash of the worker)."""
    try:
        with open(scratch / "stderr.txt", "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.split("Traceback (most recent call last)")[-1].splitlines() if ln.strip()]
    return f"; it raised: {lines[-1][:200]}" if "Traceback (most recent call last)" in text and lines else ""


def _record(sub: Submission, results: list[Result], seconds: float, out: Path, options: Options, points: dict,
            gradescope: bool) -> dict:
    """The submission's report page, grade.json (and Gradescope's results.json): its grade."""
    folder = out / sub.name
    meta = {"file": sub.path.name, "backend": options.backend, "seed": options.seed, "stride": options.stride}
    save(results, folder / options.backend, meta)
    entry = {"name": sub.name, "file": str(sub.path), "sha256": sub.sha256, "version": version(),
             "params": options.params(), "seconds": round(seconds, 1), "rows": [r.row() for r in results],
             "page": f"{sub.name}/{options.backend}/index.html"}
    gradebook.record(entry, folder, points, gradescope)
    return entry


def _line(entry: dict, points: dict) -> str:
    got, most = gradebook.score(entry, points)
    raised = [r["figures"] for r in entry["rows"] if r["verdict"] == "error"]
    when = "unchanged, not run again" if entry.get("skipped") else f"{entry['seconds']:.0f} s"
    return f"{entry['name']}: {got:g}/{most:g} points, {when}" + (f"; error: {raised[0][:160]}" if raised else "")
