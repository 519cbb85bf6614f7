"""The GPU runner check: every GPU measurement the project needs, in one command, most valuable first.

    bash scripts/gpu_check.sh                       # on a lent GPU (device tool, carry .whl): results in $OUT
    bash scripts/gpu_check.sh --dry-run --out DIR   # here, on CPU: every step at tiny sizes (tests run it)

Steps run by the plan in STEPS: phases in order, a phase's lanes at once, each lane's steps in turn. Each
step runs in its own process(es) under a time box; when it ends, its status and time go into
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.atomic import atomic_write_text, hear_sigint
from harness.cli_args import ArgumentParser, folder, seconds
from harness.errors import BadValue

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

    def python(self, args: list[str], log: str, env: dict | None = None) -> None:
        """Run ``python args`` from the repo root, output appended to work/logs/<log>.log; StepFailed on a
        non-zero exit or when the deadline (the step's time box) passes. The step runs in its own
        process group. At the time box (or on Ctrl-C) the group gets SIGINT, as a terminal's Ctrl-C gives
        it, and GRACE_S to finish, so pytest still writes its benchmark JSON and junit XML for the cases it
        finished (a killed pytest writes neither); then whatever is left of the group (xdist workers,
        torchrun ranks) is killed, so the next step starts on an idle GPU."""
        timeout = max(self.deadline - time.monotonic(), 1)
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
                                    preexec_fn=hear_sigint)
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

    def cases(self, root: str, backends: tuple[str, ...], *extra: str, env: dict | None = None) -> None:
        args = ["-m", "harness.gpu.cases", "--root", str(self.work / root), "--device", self.device]
        args += [a for b in backends for a in ("--backend", b)]
        args += [a for s in DRY_SECTIONS for a in ("--section", s)] if self.dry else []
        self.python(args + list(extra), root, env)

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


def _tail(path: Path, n: int = 400) -> str:
    return " ".join(path.read_text(errors="replace")[-n:].split())


# -- the steps, in order of value --------------------------------------------------------------------

def step_env(c: Check) -> None:
    """Versions, GPU, driver; and a smoke test that fails in seconds: a matmul on the device, diffusers
    importable, MNIST readable."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": c.device, "dry_run": c.dry, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    info |= json.loads((c.work / "run.json").read_text())  # started, commit (`_start_run`)
    if c.device == "cuda":
        if not torch.cuda.is_available():
            raise StepFailed("torch sees no CUDA device")
        info |= {"gpu": torch.cuda.get_device_name(), "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30,
                 "driver": _nvidia_smi("driver_version"), "cudnn": torch.backends.cudnn.version()}
    x = torch.randn(256, 256, generator=torch.Generator().manual_seed(0)).to(c.device)
    assert torch.isfinite(x @ x).all()
    c.python(["-c", "import diffusers, transformers, torchmetrics, skimage; from diffusers import IFPipeline; "
                    "from harness.partb.mnist import load_mnist; load_mnist('test'); "
                    "print('diffusers', diffusers.__version__, 'transformers', transformers.__version__)"], "env")
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
    c.cases("golden", FULL_BACKENDS)


def step_determinism(c: Check) -> None:
    """Process B: the same cases again, judged against A's goldens (`golden.verdict`), and bitwise-compared
    with A through their float32 hashes."""
    from harness.gpu.compare import determinism

    c.cases("golden-b", FULL_BACKENDS, "--no-golden", "--against", str(c.work / "golden"))
    a, b = c.record("golden"), c.record("golden-b")
    verdicts = {k: v.get("verdict") for k, v in b.items()}
    atomic_write_text(c.work / "determinism.json", json.dumps(
        {"bitwise": determinism(a, b), "golden_verdicts_from_second_process": verdicts}, indent=1, allow_nan=True) + "\n")


def step_golden_check(c: Check) -> None:
    """The reproductions (goldens and relations) under pytest on the device, as a GPU runner runs them: in a
    third process against the goldens this run recorded (the `goldens` step), else the repository's."""
    recorded = c.work / "golden"
    env = {"HARNESS_GOLDEN_ROOT": str(recorded)} if (recorded / "cases.json").is_file() else None
    from harness.runner import cases

    select = [f"reproductions/test_sections.py::test_reproduces[{s}-{b}]" for s, b in cases(FULL_BACKENDS)
              if s in DRY_SECTIONS] if c.dry else ["reproductions"]
    _pytest(c, "reproductions", [*select, "--backend", "tiny-if", "--backend", "mnist"], env)


def step_agreement(c: Check) -> None:
    """CUDA outputs against the repository's CPU goldens: PSNR per image, metric differences."""
    from harness.gpu.compare import agreement

    atomic_write_text(c.work / "agreement.json", json.dumps(agreement(c.work / "golden", c.device), indent=1, allow_nan=True) + "\n")


def _pytest(c: Check, name: str, args: list[str], env: dict | None = None) -> None:
    json_path = c.work / "bench" / f"{name}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    c.python(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", c.device, f"--benchmark-json={json_path}",
              f"--junitxml={c.work / 'bench' / (name + '.xml')}", *args], name, env)


def _bench_args(c: Check) -> list[str]:
    """One timed round per case after the warm-up and the sizing round (GPU timings vary little; an H200
    took 25 to 35 s per true-size case with two rounds)."""
    return ["--benchmark-enable", "--bench-budget-s", "0", "--bench-min-rounds", "1"]


def step_bench(c: Check) -> None:
    """The sampler matrix (stride x guide, batch 1) on tiny-if and mnist, and Part B throughput."""
    select = ["-k", "tiny-if-30-plain"] if c.dry else ["-k", "not deepfloyd"]  # dry: one cheap case (4 s a round)
    _pytest(c, "bench", ["benchmarks/test_sampler.py", "benchmarks/test_partb.py", *_bench_args(c), *select])


def step_bench_deepfloyd_random(c: Check) -> None:
    """The sampler matrix on IF at its real size with random weights (skips, saying why, without CUDA)."""
    select = "deepfloyd-random-30-cfg" if c.dry else "deepfloyd-random"
    _pytest(c, "bench-deepfloyd-random", ["benchmarks/test_sampler.py", *_bench_args(c), "-k", select])


def _partb(kind: str, *flags: str) -> Callable[[Check], None]:
    """A Part B course recipe, measured; with no speed flags (fp32 eager, TF32: training needs speed, not
    bits, so HARNESS_FAST_CUDA=1) also exported as fp16 for shipping, since it is the reference."""
    name = "-".join([kind, *(f.removeprefix("--") for f in flags)])

    def step(c: Check) -> None:
        args = ["-m", "harness.gpu.partb", kind, "--device", c.device, "--out", str(c.work / "partb" / name), *flags]
        args += [] if flags else ["--export"]
        if c.dry:
            args += ["--tiny", "--fid-samples", "20", "--fid-stride", "30"]
        c.python(args, f"partb-{name}", env={"HARNESS_FAST_CUDA": "1"})
    step.__doc__ = f"Part B {kind}: the course recipe, {' '.join(flags) or 'fp32 eager, exported'}."
    return step


# Tests the device does not run: those needing what the GPU image lacks, Chromium (the report's browser
# checks), check-jsonschema (the workflow lint, whose broken-file test would pass there for the wrong
# reason) and Hypothesis (the CPU-only property tests); and this check's own tests, CPU logic and a
# 2-minute dry run on the CPU.
NOT_ON_DEVICE = ["-k", "not chromium", "--ignore", "tests/test_workflow.py", "--ignore", "tests/test_properties.py",
                 "--ignore", "tests/test_gpu_check.py"]


def step_tests(c: Check) -> None:
    """The unit tests on the device (loop guards under CUDA sync debug mode), 4 xdist workers sharing the
    GPU (serially they outlast the box)."""
    select = ["tests/test_loops.py", "-k", "part_b_sampling"] if c.dry else ["tests", "-n", "4", *NOT_ON_DEVICE]
    _pytest(c, "tests", select, env={"HARNESS_NUM_THREADS": "2"})  # 8 of the 16 cores: lanes run beside it


def step_ddp(c: Check) -> None:
    """Part B training with DDP over nccl (one rank per GPU; one GPU still runs nccl) against one process."""
    _pytest(c, "ddp", ["tests/test_distributed.py", *(["-k", "world"] if c.dry else [])])


def step_deepfloyd_random_suite(c: Check) -> None:
    """The Part A suite on deepfloyd-random: wall time per section at the real model's cost."""
    c.cases("deepfloyd-random-suite", ("deepfloyd-random",), "--no-golden")


@dataclass(frozen=True)
class Step:
    run: Callable[[Check], None]
    box: float  # seconds: measured on an H200 (2026-11-27/28) with a margin, see docs/gpu-runners.md
    phase: int  # phases run in order; a phase's lanes run at once, each lane's steps one after another
    lane: str


# The default plan, by what only a GPU can produce: (1) env; (2) at once, each in its own processes: the
# three course recipes (checkpoints; 146-175 s of training alone), the goldens lane (record, a second
# process bitwise, against the CPU goldens, pytest reproductions against this run's goldens: about 80 s
# each) and the tests lane (unit tests on CUDA, then DDP over nccl); (3) alone, since they are timed: the
# time recipe with --graphs (target 20 s, against the eager recipe's figures from phase 2), the benchmarks
# and the Part A suite at the real model's size (about 30 s a case). Two calls fit a 15-minute
# lease: `--budget-s 450`, then `--resume --budget-s 220`, which brings the remaining exports home first.
STEPS: dict[str, Step] = {
    "env": Step(step_env, 90, 1, "env"),
    "partb-time": Step(_partb("time"), 420, 2, "time"),
    "partb-class": Step(_partb("class"), 420, 2, "class"),
    "partb-denoiser": Step(_partb("denoiser"), 360, 2, "denoiser"),
    "goldens": Step(step_goldens, 200, 2, "goldens"),
    "determinism": Step(step_determinism, 200, 2, "goldens"),
    "agreement": Step(step_agreement, 30, 2, "goldens"),
    "golden-check": Step(step_golden_check, 200, 2, "goldens"),
    "tests": Step(step_tests, 420, 2, "tests"),
    "ddp": Step(step_ddp, 180, 2, "tests"),
    "partb-time-graphs": Step(_partb("time", "--graphs"), 240, 3, "timed"),
    "bench": Step(step_bench, 240, 3, "timed"),
    "bench-deepfloyd-random": Step(step_bench_deepfloyd_random, 300, 3, "timed"),
    "deepfloyd-random-suite": Step(step_deepfloyd_random_suite, 300, 3, "timed"),
}
MIN_STEP_S = 20  # a step starts only with at least this much of the budget left
# The dry run checks that every step works, not how fast: on a busy 2-core machine a tiny step can take
# minutes, so its box only catches a hang.
DRY_BOX_S = 1800


def pack(c: Check, summary: dict[str, dict], home: set[str]) -> None:
    """OUT/results.tar.gz: everything small under work (not checkpoints, training state or process B's
    goldens); OUT/checkpoints.tar.partNN: the fp16 checkpoints of the finished Part B steps that no earlier
    call brought ``home``, in 15 MiB parts, as many whole exports as fit beside the results in what one call
    may bring back (FILES_BACK_*: the three course exports together are about 69 MB). The exports packed
    are listed in work/exports-pending.json; a --resume call counts them as home and packs the rest."""
    def small(info: tarfile.TarInfo):
        skip = (info.name.endswith(("_state.pt", ".safetensors", ".tmp")) or "/golden-b/cuda" in info.name
                or "/golden-b/cpu" in info.name)
        return None if skip else info

    tmp = c.out / "results.tar.gz.tmp"
    for attempt in range(3):  # steps in other lanes write beside it: a file can go between listing and reading
        try:
            with tarfile.open(tmp, "w:gz") as tar:
                tar.add(c.work, arcname="gpu-check", filter=small)
            break
        except OSError as e:
            print(f"gpu-check: packing again ({e})", flush=True)
    else:  # the earlier results.tar.gz stays; the next step's pack tries again
        tmp.unlink(missing_ok=True)
        print("gpu-check: results.tar.gz not updated after 3 tries; the next step packs again", flush=True)
        return
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
    """Run the named steps by the plan in STEPS (phases in order, a phase's lanes at once); summary.json
    and the packed results after each step. The env step failing stops the run. ``resume``: keep an
    earlier run's summary (same work folder) and skip the steps it finished ("ok")."""
    summary: dict[str, dict] = {}
    if resume and (c.work / "summary.json").is_file():
        summary = json.loads((c.work / "summary.json").read_text())
    _start_run(c.work, resume)
    home, lock = _exports_home(c.work, resume), threading.Lock()

    def run_lane(lane: list[str]) -> None:
        for name in lane:
            result = _run_step(c, name, summary.get(name))
            with lock:
                summary[name] = result
                print(f"gpu-check {name}: {result['status']} {result.get('seconds', '')} "
                      f"{result.get('why', '')}".rstrip(), flush=True)
                atomic_write_text(c.work / "summary.json", json.dumps(summary, indent=1) + "\n")
                pack(c, summary, home)

    for phase in sorted({STEPS[n].phase for n in names}):
        lanes: dict[str, list[str]] = {}
        for name in names:
            if STEPS[name].phase == phase:
                lanes.setdefault(STEPS[name].lane, []).append(name)
        with ThreadPoolExecutor(len(lanes)) as pool:
            list(pool.map(run_lane, lanes.values()))
        if summary.get("env", {}).get("status") == "failed":
            break
    return summary


def _run_step(c: Check, name: str, earlier: dict | None) -> dict:
    """One step's summary entry: "ok" from an earlier call stands (env always runs again), "skipped" when
    less than MIN_STEP_S of the budget is left, else it runs under min(its box, the run's deadline)."""
    if earlier and earlier["status"] == "ok" and name != "env":
        return earlier
    start = time.monotonic()
    if c.deadline - start < MIN_STEP_S:
        return {"status": "skipped", "why": f"{c.deadline - start:.0f} s of the budget left"}
    try:
        box = DRY_BOX_S if c.dry else STEPS[name].box
        STEPS[name].run(Check(c.out, c.work, c.device, c.dry, min(c.deadline, start + box)))
        result = {"status": "ok"}
    except Exception as e:  # noqa: BLE001 - a step's failure is recorded and the next step runs
        result = {"status": "failed", "why": f"{type(e).__name__}: {e}"[:2000]}
    return result | {"seconds": round(time.monotonic() - start, 1)}


def _start_run(work: Path, resume: bool) -> None:
    """work/run.json: when the run began and at which commit (HARNESS_COMMIT, since the device's copy of the
    tree has no .git); a --resume call keeps it, so all of a run's calls come home to one folder."""
    path = work / "run.json"
    if resume and path.is_file():
        return
    atomic_write_text(path, json.dumps({"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                        "commit": os.environ.get("HARNESS_COMMIT") or _git_head()}) + "\n")


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m harness gpu-check", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="where results go (default: $OUT)")
    p.add_argument("--work", type=Path, help="working folder (default: OUT/../gpu-check-work)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, every step")
    p.add_argument("--budget-s", type=seconds, help="the whole run's time budget (default 450 s, a first call of "
                                                  "the plan in STEPS; none for --dry-run)")
    p.add_argument("--steps", help=f"comma-separated subset of: {', '.join(STEPS)}")
    p.add_argument("--resume", action="store_true", help="skip the steps an earlier run in --work finished")
    a = p.parse_args(argv)
    if a.out is None:
        p.error("--out is required where $OUT is not set")
    names = [n for n in STEPS if a.steps is None or n in a.steps.split(",")]
    unknown = set(a.steps.split(",")) - set(STEPS) if a.steps else set()
    if unknown:
        p.error(f"unknown steps {sorted(unknown)}; steps: {', '.join(STEPS)}")
    try:
        for flag, path in (("--out", a.out), ("--work", a.work or a.out)):
            folder(path, flag)
    except BadValue as e:
        p.error(str(e))
    a.out.mkdir(parents=True, exist_ok=True)
    work = a.work or a.out.resolve().parent / "gpu-check-work"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    budget = a.budget_s if a.budget_s is not None else (DRY_BOX_S * len(names) if a.dry_run else 450)
    check = Check(a.out, work, "cpu" if a.dry_run else "cuda", a.dry_run, time.monotonic() + budget)
    summary = run(check, names, a.resume)
    return 0 if summary.get("env", {}).get("status") in ("ok", None) else 1
