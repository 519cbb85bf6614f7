"""The GPU runner check: every GPU measurement the project needs, in one command, most valuable first.

    bash scripts/gpu_check.sh                       # on a lent GPU (device tool, carry .whl): results in $OUT
    bash scripts/gpu_check.sh --dry-run --out DIR   # here, on CPU: every step at tiny sizes (tests run it)

Each step runs in its own process(es) under a time box; when it ends, its status and time go into
``summary.json`` and the small results are packed again into ``OUT/results.tar.gz`` (Part B checkpoints
into ``OUT/checkpoints.tar.partNN``, 15 MiB parts), so a run cut off at any point still brings home every
finished step. A step whose time box no longer fits in what is left of --budget-s is skipped and says so.
`harness.gpu.home` unpacks a run into the tree.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.atomic import atomic_write_text

PART_BYTES = 15 * 2**20
# A device call sends at most 64 MiB (the tree and the carried paths) and brings back from $OUT at most
# 8 files, 16 MiB each, 64 MiB together (device README); 2 MiB of that kept for slack.
DEVICE_CALL_BYTES = 64 * 2**20
FILES_BACK_COUNT, FILES_BACK_BYTES = 8, DEVICE_CALL_BYTES - 2 * 2**20
GRACE_S = 20  # seconds an interrupted step has to write what it finished
FULL_BACKENDS = ("tiny-if", "mnist")
DRY_SECTIONS = ("A1.1", "B1.2")  # cheap sections: Part A on both backends, Part B on mnist


class StepFailed(Exception):
    pass


@dataclass
class Check:
    """One run: where it writes, on which device, how long it may take."""

    out: Path
    work: Path
    device: str
    dry: bool
    deadline: float

    def python(self, args: list[str], log: str, timeout: float, env: dict | None = None) -> None:
        """Run ``python args`` from the repo root, output appended to work/logs/<log>.log; StepFailed on a
        non-zero exit or when ``timeout`` (capped by the run's deadline) passes. The step runs in its own
        process group. At the time box (or on Ctrl-C) the group gets SIGINT, as a terminal's Ctrl-C gives
        it, and GRACE_S to finish, so pytest still writes its benchmark JSON and junit XML for the cases it
        finished (a killed pytest writes neither); then whatever is left of the group (xdist workers,
        torchrun ranks) is killed, so the next step starts on an idle GPU."""
        timeout = max(min(timeout, self.deadline - time.monotonic()), 1)
        path = self.work / "logs" / f"{log}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(f"$ python {' '.join(args)}\n")
            f.flush()
            # a child is no pytest-xdist worker (pytest-benchmark saves nothing in one), but keeps the
            # worker count: its share of the cores (`devices.thread_count`)
            inherited = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
            proc = subprocess.Popen([sys.executable, *args], stdout=f, stderr=subprocess.STDOUT,
                                    env={**inherited, **(env or {})}, cwd=ROOT, start_new_session=True,
                                    preexec_fn=_hear_sigint)
            grace = min(GRACE_S, timeout / 5)
            try:
                rc = proc.wait(timeout - grace)
            except subprocess.TimeoutExpired:
                _interrupt(proc, grace)
                raise StepFailed(f"time box of {timeout:.0f} s passed; interrupted, partial results kept "
                                 f"(see logs/{log}.log)") from None
            except KeyboardInterrupt:
                _interrupt(proc, grace)
                raise
            finally:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if rc != 0:
            raise StepFailed(f"exit {rc}: {_tail(path)}")

    def cases(self, root: str, backends: tuple[str, ...], timeout: float, *extra: str, env: dict | None = None) -> None:
        args = ["-m", "harness.gpu.cases", "--root", str(self.work / root), "--device", self.device]
        args += [a for b in backends for a in ("--backend", b)]
        args += [a for s in DRY_SECTIONS for a in ("--section", s)] if self.dry else []
        self.python(args + list(extra), root, timeout, env)

    def record(self, root: str) -> dict:
        return json.loads((self.work / root / "cases.json").read_text())


ROOT = Path(__file__).resolve().parents[2]


def _interrupt(proc: subprocess.Popen, grace: float) -> None:
    """SIGINT to the step's process group, and ``grace`` seconds for its leader to finish."""
    _signal_group(proc, signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # the group is gone
        pass


def _hear_sigint() -> None:
    """In the child before it starts: SIGINT's default action, so that Python turns it into
    KeyboardInterrupt. A shell without job control starts background commands with SIGINT ignored, and
    children inherit that: the time box's SIGINT would then go unheard and the step be killed, losing
    what it had finished."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _tail(path: Path, n: int = 400) -> str:
    return " ".join(path.read_text(errors="replace")[-n:].split())


# -- the steps, in order of value --------------------------------------------------------------------

def step_env(c: Check) -> None:
    """Versions, GPU, driver; and a smoke test that fails in seconds: a matmul on the device, diffusers
    importable, MNIST readable."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": c.device, "dry_run": c.dry, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if c.device == "cuda":
        if not torch.cuda.is_available():
            raise StepFailed("torch sees no CUDA device")
        info |= {"gpu": torch.cuda.get_device_name(), "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30,
                 "driver": _nvidia_smi("driver_version"), "cudnn": torch.backends.cudnn.version()}
    x = torch.randn(256, 256, generator=torch.Generator().manual_seed(0)).to(c.device)
    assert torch.isfinite(x @ x).all()
    c.python(["-c", "import diffusers, transformers, torchmetrics, skimage; from diffusers import IFPipeline; "
                    "from harness.partb.mnist import load_mnist; load_mnist('test'); "
                    "print('diffusers', diffusers.__version__, 'transformers', transformers.__version__)"], "env", 120)
    info["libraries"] = (c.work / "logs" / "env.log").read_text().splitlines()[-1]
    atomic_write_text(c.work / "env.json", json.dumps(info, indent=1) + "\n")


def _nvidia_smi(field: str) -> str:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def step_goldens(c: Check) -> None:
    """Process A: every case of the embedded backends on the device; goldens under work/golden/<device>/."""
    c.cases("golden", FULL_BACKENDS, 600)


def step_determinism(c: Check) -> None:
    """Process B: the same cases again, judged against A's goldens (`golden.verdict`), and bitwise-compared
    with A through their float32 hashes."""
    from harness.gpu.compare import determinism

    c.cases("golden-b", FULL_BACKENDS, 600, "--no-golden", "--against", str(c.work / "golden"))
    a, b = c.record("golden"), c.record("golden-b")
    verdicts = {k: v.get("verdict") for k, v in b.items()}
    atomic_write_text(c.work / "determinism.json", json.dumps(
        {"bitwise": determinism(a, b), "golden_verdicts_from_second_process": verdicts}, indent=1, allow_nan=True) + "\n")


def step_determinism_strict(c: Check) -> None:
    """mnist's cases in two more processes with HARNESS_DETERMINISTIC=1 (`devices.deterministic_cuda`):
    bitwise equal then? The first is also judged against the repository's CUDA goldens (recorded without
    it), which says how far those settings move the outputs."""
    from harness.golden import GOLDEN_ROOT
    from harness.gpu.compare import determinism

    env = {"HARNESS_DETERMINISTIC": "1"}
    c.cases("strict-a", ("mnist",), 150, "--no-golden", "--against", str(GOLDEN_ROOT), env=env)
    c.cases("strict-b", ("mnist",), 150, "--no-golden", env=env)
    a = c.record("strict-a")
    atomic_write_text(c.work / "determinism-strict.json", json.dumps(
        {"bitwise": determinism(a, c.record("strict-b")),
         "verdicts_against_repository_goldens": {k: v.get("verdict") for k, v in a.items()}},
        indent=1, allow_nan=True) + "\n")


def step_golden_check(c: Check) -> None:
    """The reproductions (goldens and relations) on the device against the repository's CUDA goldens, as
    a GPU runner runs them: are goldens recorded on one GPU good on this one?"""
    _pytest(c, "reproductions", ["reproductions", "--backend", "tiny-if", "--backend", "mnist",
                                 *(["-k", " or ".join(DRY_SECTIONS)] if c.dry else [])], 300)


def step_agreement(c: Check) -> None:
    """CUDA outputs against the repository's CPU goldens: PSNR per image, metric differences."""
    from harness.gpu.compare import agreement

    atomic_write_text(c.work / "agreement.json", json.dumps(agreement(c.work / "golden", c.device), indent=1, allow_nan=True) + "\n")


def _pytest(c: Check, name: str, args: list[str], timeout: float) -> None:
    json_path = c.work / "bench" / f"{name}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    c.python(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", c.device, f"--benchmark-json={json_path}",
              f"--junitxml={c.work / 'bench' / (name + '.xml')}", *args], name, timeout)


def _bench_args(c: Check) -> list[str]:
    """One timed round per case after the warm-up and the sizing round (GPU timings vary little; an H200
    took 25 to 35 s per true-size case with two rounds)."""
    return ["--benchmark-enable", "--bench-budget-s", "0", "--bench-min-rounds", "1"]


def step_bench(c: Check) -> None:
    """The sampler matrix (stride x guide, batch 1) on tiny-if and mnist, and Part B throughput."""
    select = ["-k", "tiny-if-30-plain or test_sampling"] if c.dry else ["-k", "not deepfloyd"]
    _pytest(c, "bench", ["benchmarks/test_sampler.py", "benchmarks/test_partb.py", *_bench_args(c), *select], 420)


def step_bench_deepfloyd_random(c: Check) -> None:
    """The sampler matrix on IF at its real size with random weights (skips, saying why, without CUDA)."""
    select = "deepfloyd-random-30-cfg" if c.dry else "deepfloyd-random"
    _pytest(c, "bench-deepfloyd-random", ["benchmarks/test_sampler.py", *_bench_args(c), "-k", select], 420)


def _partb(kind: str, name: str, *flags: str) -> Callable[[Check], None]:
    def step(c: Check) -> None:
        args = ["-m", "harness.gpu.partb", kind, "--device", c.device, "--out", str(c.work / "partb" / name)]
        if c.dry:  # tiny sizes, and no --compile: compiling on a CPU takes most of a minute
            args += [f for f in flags if f != "--compile"] + ["--tiny", "--fid-samples", "20", "--fid-stride", "30"]
        else:
            args += flags
        c.python(args, f"partb-{name}", 420)
    step.__doc__ = f"Part B {kind}: the course recipe{' with ' + ' '.join(flags) if flags else ', fp32 eager'}."
    return step


# Tests the device does not run: those needing what the GPU image lacks, Chromium (the report's browser
# checks) and check-jsonschema (the workflow lint, whose broken-file test would pass there for the wrong
# reason); and this check's own tests, CPU logic and a 2-minute dry run on the CPU.
NOT_ON_DEVICE = ["-k", "not chromium", "--ignore", "tests/test_workflow.py", "--ignore", "tests/test_gpu_check.py"]


def step_tests(c: Check) -> None:
    """The unit tests on the device (loop guards under CUDA sync debug mode), 4 xdist workers sharing the
    GPU (serially they outlast the box)."""
    select = ["tests/test_loops.py", "-k", "part_b_sampling"] if c.dry else ["tests", "-n", "4", *NOT_ON_DEVICE]
    _pytest(c, "tests", select, 300)


def step_ddp(c: Check) -> None:
    """Part B training with DDP over nccl (one rank per GPU; one GPU still runs nccl) against one process."""
    _pytest(c, "ddp", ["tests/test_distributed.py", *(["-k", "world"] if c.dry else [])], 120)


def step_deepfloyd_random_suite(c: Check) -> None:
    """The Part A suite on deepfloyd-random: wall time per section at the real model's cost."""
    c.cases("deepfloyd-random-suite", ("deepfloyd-random",), 600, "--no-golden")


FAST = ("--bf16", "--channels-last")  # with --compile, backward failed on torch 2.11 (H200, 2026-11-27)

# name -> (step, time box in seconds). Ordered by value: what no GPU run has measured yet first, and the
# three course recipes (with the fp32 reference that judges the fast flags' quality) together, so that one
# lease measures all of them and brings their checkpoints home (over two calls: `pack`). The CUDA goldens,
# determinism and agreement were recorded on an H200 on 2026-11-27 (benchmarks/results/), so they come
# last: run them (--steps goldens,determinism,agreement) after a change that moves CUDA outputs.
STEPS: dict[str, tuple[Callable[[Check], None], int]] = {
    "env": (step_env, 90),
    "partb-time-fast": (_partb("time", "time-fast", *FAST, "--export"), 170),
    "partb-time-fp32": (_partb("time", "time-fp32"), 170),
    "partb-class-fast": (_partb("class", "class-fast", *FAST, "--export"), 170),
    "partb-denoiser-fast": (_partb("denoiser", "denoiser-fast", *FAST, "--export"), 150),
    "ddp": (step_ddp, 90),
    "bench-deepfloyd-random": (step_bench_deepfloyd_random, 240),
    "bench": (step_bench, 240),
    "determinism-strict": (step_determinism_strict, 120),
    "golden-check": (step_golden_check, 180),
    "partb-time-compile": (_partb("time", "time-compile", "--bf16", "--compile"), 200),
    "tests": (step_tests, 240),
    "deepfloyd-random-suite": (step_deepfloyd_random_suite, 300),
    "goldens": (step_goldens, 180),
    "determinism": (step_determinism, 180),
    "agreement": (step_agreement, 30),
}
MIN_STEP_S = 20  # a step starts only with at least this much of the budget left


def pack(c: Check, summary: dict[str, dict], home: set[str]) -> None:
    """OUT/results.tar.gz: everything small under work (not checkpoints, training state or process B's
    goldens); OUT/checkpoints.tar.partNN: the fp16 checkpoints of the finished Part B steps that no earlier
    call brought ``home``, in 15 MiB parts, as many whole exports as fit beside the results in what one call
    may bring back (FILES_BACK_*: the three course exports together are about 69 MB). The exports packed
    are listed in work/exports-pending.json; a --resume call counts them as home and packs the rest."""
    def small(info: tarfile.TarInfo):
        skip = info.name.endswith(("_state.pt", ".safetensors")) or "/golden-b/cuda" in info.name or "/golden-b/cpu" in info.name
        return None if skip else info

    tmp = c.out / "results.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(c.work, arcname="gpu-check", filter=small)
    tmp.replace(c.out / "results.tar.gz")
    room = FILES_BACK_BYTES - (c.out / "results.tar.gz").stat().st_size
    chosen: list[Path] = []
    packed = 0  # tar bytes of the chosen exports
    for name, result in summary.items():
        folder = c.work / "partb" / name.removeprefix("partb-") / "export"
        if not (name.startswith("partb-") and result["status"] == "ok" and folder.is_dir()) or name in home:
            continue
        size = packed + _tar_bytes(folder)
        if size <= room and math.ceil(size / PART_BYTES) <= FILES_BACK_COUNT - 1:
            chosen.append(folder)
            packed = size
    for old in c.out.glob("checkpoints.tar.part*"):
        old.unlink()
    if chosen:
        buf = io.BytesIO()  # in memory: a tar file under work would travel in the next results.tar.gz
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for folder in chosen:
                tar.add(folder, arcname=f"checkpoints/{folder.parent.name}")
        data = buf.getvalue()
        for i in range(0, len(data), PART_BYTES):
            (c.out / f"checkpoints.tar.part{i // PART_BYTES:02d}").write_bytes(data[i:i + PART_BYTES])
    atomic_write_text(c.work / "exports-pending.json", json.dumps([f"partb-{f.parent.name}" for f in chosen]) + "\n")


def _tar_bytes(folder: Path) -> int:
    """About what ``folder``'s files take in an uncompressed tar (a 512-byte header and padding each)."""
    return sum(f.stat().st_size + 1024 for f in folder.iterdir())


def _exports_home(work: Path, resume: bool) -> set[str]:
    """The Part B steps whose exports earlier calls brought home: on --resume, the last call's pending ones
    join work/exports-home.json (what a call leaves under $OUT comes back, even when it is cut off)."""
    home_path, pending_path = work / "exports-home.json", work / "exports-pending.json"
    home = set(json.loads(home_path.read_text())) if resume and home_path.is_file() else set()
    if resume and pending_path.is_file():
        home |= set(json.loads(pending_path.read_text()))
    pending_path.unlink(missing_ok=True)
    atomic_write_text(home_path, json.dumps(sorted(home)) + "\n")
    return home


def run(c: Check, names: list[str], resume: bool = False) -> dict:
    """Run the named steps in STEPS order; summary.json after each. The env step failing stops the run.
    ``resume``: keep an earlier run's summary (same work folder) and skip the steps it finished ("ok")."""
    summary: dict[str, dict] = {}
    if resume and (c.work / "summary.json").is_file():
        summary = json.loads((c.work / "summary.json").read_text())
    home = _exports_home(c.work, resume)
    for name in names:
        if summary.get(name, {}).get("status") == "ok" and name != "env":
            continue
        step, box = STEPS[name]
        left = c.deadline - time.monotonic()
        if left < MIN_STEP_S:
            summary[name] = {"status": "skipped", "why": f"{left:.0f} s of the budget left"}
        else:
            start = time.monotonic()
            c_step = Check(c.out, c.work, c.device, c.dry, min(c.deadline, start + box))
            try:
                step(c_step)
                summary[name] = {"status": "ok"}
            except Exception as e:  # noqa: BLE001 - a step's failure is recorded and the next step runs
                summary[name] = {"status": "failed", "why": f"{type(e).__name__}: {e}"[:2000]}
            summary[name]["seconds"] = round(time.monotonic() - start, 1)
        print(f"gpu-check {name}: {summary[name]['status']} {summary[name].get('seconds', '')} "
              f"{summary[name].get('why', '')}".rstrip(), flush=True)
        atomic_write_text(c.work / "summary.json", json.dumps(summary, indent=1) + "\n")
        pack(c, summary, home)
        if name == "env" and summary[name]["status"] != "ok":
            break
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness gpu-check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="where results go (default: $OUT)")
    p.add_argument("--work", type=Path, help="working folder (default: OUT/../gpu-check-work)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, every step")
    p.add_argument("--budget-s", type=float, default=540, help="the whole run's time budget (default 540 = 9 min)")
    p.add_argument("--steps", help=f"comma-separated subset of: {', '.join(STEPS)}")
    p.add_argument("--resume", action="store_true", help="skip the steps an earlier run in --work finished")
    a = p.parse_args(argv)
    if a.out is None:
        p.error("--out is required where $OUT is not set")
    names = [n for n in STEPS if a.steps is None or n in a.steps.split(",")]
    unknown = set(a.steps.split(",")) - set(STEPS) if a.steps else set()
    if unknown:
        p.error(f"unknown steps {sorted(unknown)}; steps: {', '.join(STEPS)}")
    a.out.mkdir(parents=True, exist_ok=True)
    work = a.work or a.out.resolve().parent / "gpu-check-work"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    check = Check(a.out, work, "cpu" if a.dry_run else "cuda", a.dry_run, time.monotonic() + a.budget_s)
    summary = run(check, names, a.resume)
    return 0 if summary.get("env", {}).get("status") in ("ok", None) else 1
