"""Golden outputs: store a case's images and metrics, and compare a new run against them.

Layout: ``golden/<device class>/<backend>/<section>/images.npz`` (float16 arrays: 8-bit PNGs would
lose the CPU tolerance) and ``metrics.json`` (metrics, metadata, versions, and the sha256 of the npz,
so a half-updated or corrupt pair is detected). The pair is written atomically (a Ctrl-C leaves the old
pair or the new one), and only on request (`--update-golden`, `python -m harness golden update`).
"""

from __future__ import annotations

import hashlib
import io
import os
import json
import math
import platform
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from harness.atomic import atomic_paths
from harness.devices import cuda_kernels
from harness.errors import GoldenError
from harness.outputs import Outputs

GOLDEN_ROOT = Path(__file__).resolve().parent.parent / "golden"  # HARNESS_GOLDEN_ROOT overrides
FAILURES_ROOT = Path("out") / "golden-failures"


class GoldenMismatch(GoldenError, AssertionError):
    """The output differs from the golden beyond the tolerance of its device class."""


@dataclass(frozen=True)
class Tolerance:
    """Images pass when max |a - b| <= max_abs (if set) and PSNR(a, b) >= min_psnr (data range 2);
    metrics pass when |a - b| <= metric_abs + metric_rel |b|."""

    max_abs: float | None
    min_psnr: float
    metric_rel: float
    metric_abs: float


# CPU: same code, same thread count -> only ISA-level float differences; tight.
# CUDA: kernels differ between GPUs and library versions; PSNR-based.
TOLERANCES = {
    "cpu": Tolerance(max_abs=1e-2, min_psnr=60.0, metric_rel=1e-3, metric_abs=1e-4),
    "cuda": Tolerance(max_abs=None, min_psnr=40.0, metric_rel=5e-2, metric_abs=1e-2),
}


def device_class(device: str | torch.device) -> str:
    """'cpu' or 'cuda': goldens are kept per device class."""
    kind = torch.device(device).type
    if kind not in TOLERANCES:
        raise GoldenError(f"no goldens for device {kind!r}; device classes: {', '.join(TOLERANCES)}")
    return kind


def golden_dir(backend: str, section: str, device: str | torch.device, root: Path | None = None) -> Path:
    root = root or Path(os.environ.get("HARNESS_GOLDEN_ROOT", GOLDEN_ROOT))
    return Path(root) / device_class(device) / backend / section


def exists(backend: str, section: str, device: str | torch.device, root: Path | None = None) -> bool:
    """Whether a golden (complete or not) is stored for the case."""
    folder = golden_dir(backend, section, device, root)
    return (folder / "metrics.json").exists() or (folder / "images.npz").exists()


def update_command(section: str, backend: str, device: str | torch.device) -> str:
    return f"python -m harness golden update {section} --backend {backend} --device {torch.device(device).type}"


def image_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR between two images in [-1, 1] (data range 2): 10 log10(4 / mse); inf when equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__}


def write(out: Outputs, backend: str, device: str | torch.device, root: Path | None = None) -> Path:
    """Store ``out`` as the golden for its section (the npz and the json naming its hash, as one atomic pair).
    Models run in float32 on CPU and float16 on CUDA (recorded as ``dtype``; on CUDA also which kernels,
    `devices.cuda_kernels`)."""
    folder = golden_dir(backend, out.meta["section"], device, root)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.detach().cpu().numpy().astype(np.float16) for k, v in out.images.items()})
    data = buf.getvalue()
    record = {
        "metrics": out.metrics,
        "meta": out.meta,
        "device": str(device),
        "dtype": "float32" if device_class(device) == "cpu" else "float16",
        "threads": torch.get_num_threads(),
        "versions": _versions(),
        "images_sha256": hashlib.sha256(data).hexdigest(),
    }
    if device_class(device) == "cuda":
        record["cuda_kernels"] = cuda_kernels()
    with atomic_paths(folder / "images.npz", folder / "metrics.json") as (npz, js):
        npz.write_bytes(data)
        js.write_text(json.dumps(record, indent=1, sort_keys=True, allow_nan=True) + "\n")
    return folder


def read(backend: str, section: str, device: str | torch.device, root: Path | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The stored (images, record); GoldenError naming the fix when missing or corrupt."""
    folder = golden_dir(backend, section, device, root)
    npz, js = folder / "images.npz", folder / "metrics.json"
    fix = f"recreate it with `{update_command(section, backend, device)}`"
    if not js.exists() or not npz.exists():
        raise GoldenError(f"no golden for {section} on {device_class(device)}/{backend} at {folder}: create it with "
                          f"`{update_command(section, backend, device)}` (or pytest --update-golden)")
    try:
        record = json.loads(js.read_text())
        data = npz.read_bytes()
        if hashlib.sha256(data).hexdigest() != record["images_sha256"]:
            raise ValueError("images.npz does not match the sha256 recorded in metrics.json")
        with np.load(io.BytesIO(data)) as z:
            images = {k: z[k].astype(np.float32) for k in z.files}
    except (ValueError, KeyError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise GoldenError(f"corrupt golden for {section} at {folder} ({e}); {fix}") from None
    return images, record


@dataclass
class Verdict:
    """A comparison with the golden: per image (max_abs, psnr, passed, and the obtained/golden/diff PNGs
    of a failing one), per metric (obtained, golden, difference, passed), and the problems found.
    ``to_json()`` is what the CLI and the reproductions record next to a case's outputs (golden.json)."""

    section: str
    backend: str
    device_class: str
    golden: str
    tolerance: Tolerance
    images: dict[str, dict]
    metrics: dict[str, dict]
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems

    def message(self) -> str:
        files = [f for rec in self.images.values() for f in rec.get("files", {}).values()]
        where = f"; obtained/golden/diff images in {Path(files[0]).parent}" if files else ""
        return (f"{self.section} on {self.device_class}/{self.backend} differs from its golden{where}:\n  "
                + "\n  ".join(self.problems)
                + f"\nIf the change is intended: `{update_command(self.section, self.backend, self.device_class)}`")

    def raise_if_failed(self) -> None:
        if self.problems:
            raise GoldenMismatch(self.message())

    def to_json(self) -> dict:
        return {"passed": self.passed, "section": self.section, "backend": self.backend,
                "device_class": self.device_class, "golden": self.golden, "tolerance": asdict(self.tolerance),
                "images": self.images, "metrics": self.metrics, "problems": self.problems,
                "update_command": update_command(self.section, self.backend, self.device_class)}


def verdict(out: Outputs, backend: str, device: str | torch.device, root: Path | None = None,
            failures_root: Path = FAILURES_ROOT) -> Verdict:
    """Compare ``out`` with its golden without raising on a mismatch (GoldenError when the golden is
    missing or corrupt); a failing image's obtained, golden and |diff| PNGs are saved under failures_root.
    Rounding metrics (`Outputs.add_rounding`) are left out on both sides: a golden recorded before one was
    added still passes, and one recorded with it does not compare it."""
    section = out.meta["section"]
    golden_images, record = read(backend, section, device, root)
    tol = TOLERANCES[device_class(device)]
    problems: list[str] = []
    images: dict[str, dict] = {}
    if set(golden_images) != set(out.images):
        problems.append(f"image names differ: golden {sorted(golden_images)}, obtained {sorted(out.images)}")
    for name in sorted(set(golden_images) & set(out.images)):
        got, want = out.images[name].detach().cpu().numpy(), golden_images[name]
        if got.shape != want.shape:
            problems.append(f"{name}: shape {got.shape} != golden {want.shape}")
            images[name] = {"passed": False, "shape": list(got.shape), "golden_shape": list(want.shape)}
            continue
        err = float(np.max(np.abs(got - want))) if got.size else 0.0
        psnr = image_psnr(got, want)
        images[name] = {"max_abs": err, "psnr": psnr, "passed": True}
        if not np.isfinite(got).all() or not image_passes(err, psnr, tol):
            problems.append(f"{name}: max|diff| {err:.3g} (tol {tol.max_abs}), PSNR {psnr:.1f} dB (min {tol.min_psnr})")
            folder = failures_root / device_class(device) / backend / section
            images[name].update(passed=False, files=_save_failure(folder, name, got, want))
    rounding = set(out.meta.get("rounding_metrics", ()))  # judged by the section's relations (Outputs.add_rounding)
    want_metrics = {k: v for k, v in record["metrics"].items() if k not in rounding}
    got_metrics = {k: v for k, v in out.metrics.items() if k not in rounding}
    if set(want_metrics) != set(got_metrics):
        problems.append(f"metric names differ: golden {sorted(want_metrics)}, obtained {sorted(got_metrics)}")
    metrics: dict[str, dict] = {}
    for name in sorted(set(want_metrics) & set(got_metrics)):
        got, want = got_metrics[name], want_metrics[name]
        metrics[name] = {"obtained": got, "golden": want, "difference": got - want, "passed": metric_close(got, want, tol)}
        if not metrics[name]["passed"]:
            problems.append(f"metric {name}: {got:.6g} != golden {want:.6g}")
    return Verdict(section, backend, device_class(device), str(golden_dir(backend, section, device, root)), tol,
                   images, metrics, problems)


def compare(out: Outputs, backend: str, device: str | torch.device, root: Path | None = None,
            failures_root: Path = FAILURES_ROOT) -> None:
    """Raise GoldenMismatch (saving obtained, golden and |diff| PNGs) when ``out`` leaves the tolerance."""
    verdict(out, backend, device, root, failures_root).raise_if_failed()


def image_passes(max_abs: float, psnr: float, tol: Tolerance) -> bool:
    """An image within ``tol``: max |diff| <= max_abs (where set) and PSNR >= min_psnr."""
    return (tol.max_abs is None or max_abs <= tol.max_abs) and psnr >= tol.min_psnr


def metric_close(got: float, want: float, tol: Tolerance) -> bool:
    if math.isinf(want) or math.isinf(got) or math.isnan(want) or math.isnan(got):
        return got == want or (math.isnan(got) and math.isnan(want))
    return abs(got - want) <= tol.metric_abs + tol.metric_rel * abs(want)


def _save_failure(folder: Path, name: str, got: np.ndarray, want: np.ndarray) -> dict[str, str]:
    from harness.image_io import make_grid, save_png

    def grid(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return make_grid(t.reshape(-1, *t.shape[-3:]), nrow=8) if t.dim() == 4 else t

    diff = np.clip(np.abs(got - want) * 10 - 1, -1, 1)  # |diff| x 5 on the [0, 1] scale
    files = {}
    for suffix, arr in (("obtained", np.clip(got, -1, 1)), ("golden", want), ("diff", diff)):
        save_png(folder / f"{name}_{suffix}.png", grid(arr))
        files[suffix] = str(folder / f"{name}_{suffix}.png")
    return files
