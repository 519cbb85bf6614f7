"""Bring a GPU check's results home: ``python -m harness gpu-home FOLDER`` (the files the device returned).

- ``golden/cuda/{tiny-if,mnist}/...``: the CUDA goldens process A wrote (compared from process B on the GPU);
- ``benchmarks/results/<GPU>/<started>/``: one folder per run (`run_name`), never another run's: pytest-benchmark JSON, env, summary, determinism, CPU-vs-CUDA agreement,
  Part B recipe results, per-case wall times, each pytest run's JUnit XML, and ``SUMMARY.md`` (the tables
  docs/gpu-runners.md cites);
- ``out/gpu/<GPU>/<started>/checkpoints/``: the exported fp16 Part B checkpoints (with --ship-checkpoints also copied
  into ``harness/data/partb/``, the `mnist` backend's shipped set, as --weights fp16 or int8 files).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.cli_args import ArgumentParser
from harness.errors import HarnessError
from harness.golden import GOLDEN_ROOT
from harness.gpu.check import DEVICE_CALL_BYTES, FULL_BACKENDS
from harness.partb.checkpoints import WEIGHTS, shipped_dir, stored

REPO = GOLDEN_ROOT.parent
# .whl/ from `make gpu-wheels`, carried on every device call: 17.7 MB (diffusers and importlib_metadata
# wheels, MNIST as IDX; 2026-11-27).
CARRIED_BYTES = 18 * 2**20
RESULTS = ("env.json", "summary.json", "determinism.json", "agreement.json")


def slug(gpu: str) -> str:
    """'NVIDIA H200' -> 'NVIDIA-H200' (the folder name `make bench` uses for a machine kind)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", gpu.strip()) or "unknown-gpu"


def run_name(env: dict) -> str:
    """A run's folder under its GPU's: when it started ('2026-11-28 21:05:09 UTC' -> '2026-11-28_21-05'), so
    that every run keeps its own files and all calls of one run (--resume keeps `started`) share them. Runs
    from before `started` existed are named by their env step's date."""
    stamp = env.get("started", env.get("date", ""))
    match = re.match(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2})", stamp)
    if not match:
        raise HarnessError(f"env.json has no start time ({stamp!r}): not a results.tar.gz of `gpu-check`")
    return f"{match[1]}_{match[2]}-{match[3]}"


def unpack(files: Path, repo: Path = REPO, ship_checkpoints: bool = False, weights: str = "fp16") -> Path:
    """Unpack a run's files into ``repo``; return the results folder. Shipped checkpoints are ``weights`` files."""
    if not (files / "results.tar.gz").is_file():
        raise HarnessError(f"{files} holds no results.tar.gz: pass the folder a GPU check's call brought back "
                           f"(the device tool's files_at) or a run under ../shared/gpu-runs/")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(files / "results.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        work = Path(tmp) / "gpu-check"
        env = json.loads((work / "env.json").read_text())
        dest = repo / "benchmarks" / "results" / slug(env.get("gpu", env["device"])) / run_name(env)
        dest.mkdir(parents=True, exist_ok=True)
        for name in RESULTS:
            if (work / name).is_file():
                shutil.copyfile(work / name, dest / name)
        for path in sorted((work / "bench").glob("*.json")):
            shutil.copyfile(path, dest / path.name)
        for path in sorted((work / "bench").glob("*.xml")):
            shutil.copyfile(path, dest / f"junit-{path.name}")
        for path in sorted(work.glob("partb/*/result.json")):
            shutil.copyfile(path, dest / f"partb-{path.parent.name}.json")
        for name in ("golden", "deepfloyd-random-suite"):
            if (work / name / "cases.json").is_file():
                shutil.copyfile(work / name / "cases.json", dest / f"cases-{name}.json")
        device_class = "cuda" if env["device"] == "cuda" else "cpu"
        for backend in FULL_BACKENDS:
            src = work / "golden" / device_class / backend
            if src.is_dir() and device_class == "cuda":
                shutil.copytree(src, repo / "golden" / "cuda" / backend, dirs_exist_ok=True)
    _unpack_checkpoints(files, repo / "out" / "gpu" / dest.parent.name / dest.name, repo if ship_checkpoints else None,
                        weights)
    (dest / "SUMMARY.md").write_text(summary_markdown(dest))
    return dest


def _unpack_checkpoints(files: Path, dest: Path, ship_into: Path | None, weights: str) -> None:
    """The exported checkpoints under ``dest``; with ``ship_into`` (the repository) also copied over the
    shipped set as ``weights`` files (`checkpoints.stored`), unless the tree would then be too large to
    travel to a GPU (`check_travel`)."""
    parts = sorted(files.glob("checkpoints.tar.part*"))
    if not parts:
        return
    data = b"".join(p.read_bytes() for p in parts)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    if ship_into is not None:
        shipped = ship_into / shipped_dir().relative_to(REPO)
        new = {shipped / p.name: stored(p.read_bytes(), weights) if p.suffix == ".safetensors" else p.read_bytes()
               for p in sorted(dest.glob("checkpoints/*/*"))}
        check_travel(ship_into, {path: len(data) for path, data in new.items()})
        for path, data in new.items():
            path.write_bytes(data)


def travelling_sizes(repo: Path) -> dict[Path, int]:
    """The files a device call sends from ``repo`` and their sizes: what git tracks, and untracked files
    it does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                           capture_output=True, check=True).stdout.decode().split("\0")
    return {repo / n: (repo / n).stat().st_size for n in names if n and (repo / n).is_file()}


def check_travel(repo: Path, writes: dict[Path, int] | None = None) -> int:
    """Bytes a device call would send once ``writes`` (path -> size) are made: the tree and the carried
    .whl/. A HarnessError when that passes the device tool's limit, since no GPU check could run again."""
    sizes = travelling_sizes(repo) | (writes or {})
    total = sum(sizes.values()) + CARRIED_BYTES
    if total > DEVICE_CALL_BYTES:
        raise HarnessError(
            f"the tree would be {(total - CARRIED_BYTES) / 2**20:.1f} MiB, and with the carried .whl/ "
            f"({CARRIED_BYTES / 2**20:.0f} MiB) a device call would send {total / 2**20:.1f} MiB, over the "
            f"{DEVICE_CALL_BYTES / 2**20:.0f} MiB limit: no GPU check could run again. Ship fewer or smaller "
            f"files (docs/gpu-runners.md, \"What fits in a device call\")")
    return total


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _g(x, fmt: str = ".3g") -> str:
    return "" if x is None else format(x, fmt)


def summary_markdown(dest: Path) -> str:
    """The results folder as Markdown: environment, steps, determinism, agreement, Part B recipes, benchmarks."""
    read = lambda n: json.loads((dest / n).read_text()) if (dest / n).is_file() else None  # noqa: E731
    env, parts = read("env.json") or {}, []
    parts.append(f"# GPU check: {env.get('gpu', env.get('device'))}, {env.get('started', env.get('date', ''))}\n\n"
                 f"Commit {env.get('commit', 'not recorded')}; torch {env.get('torch')}, CUDA {env.get('cuda')}, driver {env.get('driver')}, "
                 f"Python {env.get('python')}; {env.get('libraries', '')}")
    if summary := read("summary.json"):
        parts.append("## Steps\n\n" + _table(["step", "status", "seconds", "note"], [
            [k, v["status"], v.get("seconds", ""), v.get("why", "")[:160]] for k, v in summary.items()]))
    if det := read("determinism.json"):
        bitwise = det["bitwise"]
        compared = [k for k, v in bitwise.items() if v["compared"]]
        equal = [k for k in compared if bitwise[k]["bitwise_equal"]]
        verdicts = det["golden_verdicts_from_second_process"]
        passed = [k for k, v in verdicts.items() if v and v["passed"]]
        parts.append(f"## Determinism\n\nTwo processes, same seeds: {len(equal)} of {len(compared)} cases bitwise equal "
                     f"(float32 outputs and metrics); {len(passed)} of {len(verdicts)} pass process A's golden from "
                     f"process B.\n\n" + _table(["case", "bitwise equal", "images that differ", "metrics that differ"], [
                         [k, v["bitwise_equal"], _few(v["images_differ"]), _few(v["metrics_differ"])]
                         for k, v in bitwise.items() if v["compared"]]))
    if agree := read("agreement.json"):
        parts.append("## CUDA against the CPU goldens\n\n" + _table(
            ["case", "min PSNR (dB)", "largest metric difference", "CPU tolerance passes", "CUDA tolerance passes"], [
                [k, _g(v["min_psnr"], ".1f"), _largest(v["metrics"]), v["cpu_tolerance_passes"], v["cuda_tolerance_passes"]]
                for k, v in agree.items()]))
    if runs := sorted(dest.glob("junit-*.xml")):
        parts.append("## Pytest runs\n\n" + _table(["run", "passed", "failed", "skipped", "failures"], [
            [path.stem.removeprefix("junit-"), *junit_counts(path)] for path in runs]))
    recipes = sorted(dest.glob("partb-*.json"))
    if recipes:
        rows = []
        for path in recipes:
            r = json.loads(path.read_text())
            flags = "+".join(k for k, v in r["speed"].items() if v) or "fp32 eager"
            m, losses = r.get("measure", {}), r["test_losses"]  # a recipe cut off by its box has no measurement
            epochs = f"{len(losses)}" + ("" if r["finished"] else f" of {r.get('recipe', {}).get('epochs', '?')}, cut off")
            rows.append([r["kind"], flags, r.get("cuda_kernels") or "", epochs, _g(r.get("train_seconds"), ".1f"),
                         _g(r["epoch_seconds"][0] if r["epoch_seconds"] else None, ".1f"),
                         _g(r.get("steady_images_per_s"), ".0f"), _g(losses[-1] if losses else None, ".4f"),
                         _g(m.get("fid_lite", m.get("psnr_sigma0.5")), ".2f"), _g(m.get("accuracy_cfg5"), ".3f")])
        parts.append("## Part B, the course recipes\n\n" + _table(
            ["model", "speed flags", "CUDA kernels", "epochs", "train s", "first epoch s", "steady img/s", "test loss",
             "FID-lite (PSNR for denoiser)", "accuracy"], rows))
    for path in sorted(dest.glob("bench*.json")):
        rows = [[b["name"].split("::")[-1], _g(b["stats"]["median"] * 1e3, ".1f"), _g(b["extra_info"].get("images_per_s")),
                 _g(b["extra_info"].get("efficiency")), _g(b["extra_info"].get("vs_diffusers")),
                 _g(b["extra_info"].get("peak_memory_mib"), ".0f")]
                for b in json.loads(path.read_text()).get("benchmarks", [])]
        if rows:
            parts.append(f"## Benchmarks ({path.name})\n\n" + _table(
                ["case", "median ms", "images/s", "efficiency", "vs_diffusers", "peak MiB"], rows))
    for name in ("cases-golden.json", "cases-deepfloyd-random-suite.json"):
        if cases := read(name):
            parts.append(f"## Wall time per case ({name})\n\n" + _table(["case", "seconds"], [
                [k, _g(v.get("seconds"), ".1f") or v.get("skipped", "")] for k, v in cases.items()]))
    return "\n\n".join(parts) + "\n"


def junit_counts(path: Path) -> list:
    """passed, failed (failures and errors), skipped, and the first failing tests of a JUnit XML file."""
    outcome = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = [e.tag for e in case if e.tag in ("failure", "error", "skipped")]
        outcome[f"{case.get('classname')}::{case.get('name')}"] = tags[0] if tags else "passed"
    failed = [k for k, v in outcome.items() if v in ("failure", "error")]
    counts = [sum(v == tag for v in outcome.values()) for tag in ("passed", "skipped")]
    return [counts[0], len(failed), counts[1], _few(failed)]


def _few(names: list[str], n: int = 3) -> str:
    """The first n names, and how many more."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _largest(metrics: dict) -> str:
    if not metrics:
        return ""
    name, m = max(metrics.items(), key=lambda kv: 0 if math.isnan(kv[1]["difference"]) else abs(kv[1]["difference"]))
    return f"{name}: {m['difference']:.3g}"


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m harness gpu-home", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", type=Path, help="the folder holding results.tar.gz (and checkpoints.tar.partNN)")
    p.add_argument("--ship-checkpoints", action="store_true", help="also copy the checkpoints into harness/data/partb/")
    p.add_argument("--weights", choices=WEIGHTS,
                   help="the format they ship in: fp16 (the default), or weight-only int8 per output channel "
                        "(harness.partb.int8)")
    a = p.parse_args(argv)
    if a.weights and not a.ship_checkpoints:
        p.error("--weights is the format of the shipped checkpoints: add --ship-checkpoints")
    try:
        print(f"results in {unpack(a.files, ship_checkpoints=a.ship_checkpoints, weights=a.weights or 'fp16')}")
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
