"""Where and how torch runs: the device a ``--device`` names (with a one-line error when it cannot run),
copies to it that never block, the CPU thread count (one decision for the CLI, the goldens and the tests;
shared out among pytest-xdist workers and torchrun ranks), the GPU of an xdist worker, the settings
for deterministic CUDA kernels, which CUDA errors lose the process's context, the machine epsilon a
model's kernels round to, and whether this CPU has bf16 units."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import torch

from harness.errors import BadValue


def to_device(x: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """x on ``device``; a CPU draw bound for a GPU goes through pinned memory without blocking, so a
    sampling or training loop never waits for the GPU (a plain ``.to("cuda")`` synchronises)."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def fix_threads() -> int:
    """Set torch's CPU thread count to `thread_count()`: CPU goldens and bitwise checks assume one count per
    process (1 vs 2 threads differ by ~1e-6 per UNet call, inside the CPU golden tolerance). Unless
    HARNESS_FAST_CUDA=1, also `deterministic_cuda` (see `cuda_kernels`)."""
    n = thread_count()
    torch.set_num_threads(n)
    if cuda_kernels() == "deterministic":
        deterministic_cuda()
    return n


def cuda_kernels(env: Mapping[str, str] = os.environ) -> str:
    """"deterministic" (the default: the same bits in every process, `deterministic_cuda`) or "fast"
    (HARNESS_FAST_CUDA=1: torch's defaults, TF32 convolutions and cuDNN's fastest algorithms, for speed;
    outputs may move between processes).
    Recorded in every case's metrics.json and golden, and in the Part B recipe results."""
    return "fast" if env.get("HARNESS_FAST_CUDA") == "1" else "deterministic"


def thread_count(env: Mapping[str, str] = os.environ, cores: int | None = None) -> int:
    """HARNESS_NUM_THREADS if set; else, in a pytest-xdist worker or a torchrun rank, this machine's cores
    shared out among the machine's workers or ranks (at least 1 each), so that N processes' OpenMP threads
    never spin against each other (2 workers of 2 threads each on 2 cores ran over 6x slower than
    serial); else 2, the goldens' count."""
    if "HARNESS_NUM_THREADS" in env:
        return int(env["HARNESS_NUM_THREADS"])
    for processes in ("PYTEST_XDIST_WORKER_COUNT", "LOCAL_WORLD_SIZE"):
        if processes in env:
            cores = cores or len(os.sched_getaffinity(0))
            return max(1, cores // int(env[processes]))
    return 2


def worker_device(device: str, worker: str | None, gpus: int) -> str:
    """The device of a pytest-xdist worker: with ``--device cuda`` and several GPUs, worker gwK takes GPU
    K mod gpus; an explicit index (cuda:1), one GPU, the CPU or no worker leave ``device`` as it is."""
    if device != "cuda" or worker is None or gpus < 2:
        return device
    return f"cuda:{int(worker.removeprefix('gw')) % gpus}"


def check_device(device: str | torch.device) -> torch.device:
    """The torch device that ``--device`` names, or a one-line BadValue saying what is missing."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BadValue(f"--device {device!r} is not a torch device ({e}): pass cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = ("this torch is a CPU build" if torch.version.cuda is None
               else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES)")
        raise BadValue(f"--device {device}: {why} (torch {torch.__version__}); on a GPU machine "
                           f"`pip install torch==2.13.0` takes the CUDA build, or pass --device cpu")
    return dev


def out_of_memory(e: BaseException, doing: str, fix: str) -> str:
    """One line for a torch.OutOfMemoryError: what was being done, the allocation that failed, the free and
    total memory of the current GPU, and how to need less."""
    asked = re.search(r"Tried to allocate [\d.]+ [KMG]iB", str(e))
    where = ""
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        where = f"; {free / 2**30:.1f} of {total / 2**30:.1f} GiB free on {torch.cuda.get_device_name()}"
    return f"out of GPU memory while {doing} ({asked[0] if asked else 'allocation failed'}{where}): {fix}"


# CUDA's sticky errors: after one, every CUDA call of the process fails the same way until it exits
CONTEXT_LOST = ("device-side assert", "illegal memory access", "unspecified launch failure", "misaligned address",
                "illegal instruction", "hardware stack error", "launch timed out")


def context_lost(e: BaseException) -> bool:
    """Whether ``e`` left this process's CUDA context unusable (a CUDA error of the `CONTEXT_LOST` kinds, which
    torch raises as `torch.AcceleratorError`); an out-of-memory error, or an invalid argument, does not."""
    text = str(e)
    return isinstance(e, RuntimeError) and "CUDA error" in text and any(k in text for k in CONTEXT_LOST)


def deterministic_cuda() -> None:
    """CUDA kernels that give the same bits in every process: cuDNN's deterministic algorithms, no TF32,
    torch.use_deterministic_algorithms (warning where an op has none), and the cuBLAS workspace setting
    it needs (read when cuBLAS starts, so call this first). Nothing where no GPU is visible: CPU work is
    deterministic at a fixed thread count already, and the CPU goldens were recorded without these settings."""
    if not torch.cuda.is_available():
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def kernel_eps(dtype: torch.dtype, device: str | torch.device) -> float:
    """The machine epsilon of a model's arithmetic in ``dtype`` on ``device``: torch.finfo(dtype).eps
    (float32 2^-23, float16 2^-10, bfloat16 2^-7), except float32 on CUDA where TF32 is allowed (PyTorch's
    default for cuDNN convolutions; off under `deterministic_cuda`): TF32 keeps 10 mantissa bits, 2^-10."""
    tf32 = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
    if torch.device(device).type == "cuda" and dtype == torch.float32 and tf32:
        return 2.0**-10
    return torch.finfo(dtype).eps


def cpu_bf16_units() -> str | None:
    """The CPU's bf16 instruction sets when oneDNN runs bf16 natively on it (its ISA check), as
    /proc/cpuinfo names them ("amx_bf16 avx512_bf16"; "bf16" where cpuinfo cannot be read); None where it
    has none, so bf16 would be emulated (slower than float32)."""
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return None
    try:
        flags = set(re.findall(r"\b(amx_bf16|avx512_bf16)\b", Path("/proc/cpuinfo").read_text()))
    except OSError:
        flags = set()
    return " ".join(sorted(flags)) or "bf16"


def device_name(device: str | torch.device) -> str:
    """What a run computed on, for the records: the GPU's name, or "cpu" with its bf16 units."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_bf16_units() or 'no bf16 units'})"
