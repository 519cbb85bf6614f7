"""Run one case (section x backend x seed x device) and save what it made; shared by the CLI,
the reproductions and the benchmarks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch

from harness.atomic import atomic_write_text
from harness.devices import check_device, cuda_kernels
from harness.errors import GoldenError
from harness.outputs import Outputs
from harness.seeding import DEFAULT_SEED


def cases(backends: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Every (section id, backend) case on ``backends`` (default: the embedded ones, which run on the CPU
    from what the package ships), in registry order: the one list that the CLI, the reproductions, the
    report tests and the GPU check run."""
    from harness.backends import backend_names
    from harness.sections import SECTIONS

    backends = backend_names(embedded=True) if backends is None else backends
    return [(s.id, b) for s in SECTIONS.values() for b in s.backends if b in backends]


def run_case(section_id: str, backend: str | None = None, seed: int = DEFAULT_SEED, device: str = "cpu",
             image: str | None = None, mask: str | None = None, prompt: str | None = None,
             progress: bool = False, params: dict | None = None) -> Outputs:
    """Run a section; backend None means the section's first (embedded CPU) backend.

    image/mask are paths to a user's own inputs (sections that take them); they are checked and
    loaded in the backend's own image shape (grey 28x28 for mnist, RGB 64x64 for IF) with one-line
    BadImage errors, and the shape they were loaded in is recorded with their source.
    """
    from harness.image_io import open_image
    from harness.user_inputs import image_size, load_image, load_mask
    from harness.sections import RunContext, get_section, run_section
    from harness.errors import UnknownName

    section = get_section(section_id)
    for name, value in (("image", image), ("mask", mask), ("prompt", prompt)):
        if value is not None and name not in section.inputs:
            raise UnknownName(f"section {section.id} takes no --{name}; sections that do: "
                              + ", ".join(s.id for s in _sections_taking(name)))
    check_device(device)
    for name, path in (("image", image), ("mask", mask)):
        if path is not None:
            open_image(path, name)  # a missing or unreadable file says so before any model is built
    ctx = RunContext(backend_name=backend or section.backends[0], device=device, seed=seed,
                     params=dict(params or {}), prompt=prompt, progress=progress)
    if image is not None or mask is not None:
        channels, size = ctx.backend().denoiser.image_shape[0], ctx.backend().denoiser.image_shape[-1]
    if image is not None:
        ctx.image = load_image(image, size=size, channels=channels)
        ctx.image_meta = {"source": str(image), "loaded_as": f"{'grey' if channels == 1 else 'RGB'} {size}x{size}, "
                                                            f"{ctx.backend_name}'s image shape"}
    if mask is not None:
        canvas = image_size(image) if image is not None else None
        ctx.mask = load_mask(mask, size=size, image_size=canvas)
        if canvas is not None and image_size(mask) != canvas:
            ctx.image_meta["mask"] = (f"{mask}: resized from {'x'.join(map(str, image_size(mask)))} to the image's "
                                      f"{'x'.join(map(str, canvas))} (nearest-neighbour)")
    return run_section(section, ctx)


def _sections_taking(name: str):
    from harness.sections import SECTIONS

    return [s for s in SECTIONS.values() if name in s.inputs]


def save_outputs(out: Outputs, folder: str | Path, device: str = "cpu") -> Path:
    """Write every image as PNG (batches as one grid), animations as GIF, and metrics.json (with the
    run's device, threads, versions, date and, on CUDA, `cuda_kernels` under "run"); drop a golden.json left by an earlier run
    (record_verdict writes this run's)."""
    from harness.image_io import make_grid, save_gif, save_png

    folder = Path(folder)
    (folder / "golden.json").unlink(missing_ok=True)
    for name, x in out.images.items():
        save_png(folder / f"{name}.png", make_grid(x, nrow=min(x.shape[0], 10)) if x.dim() == 4 else x)
    for name, frames in out.animations.items():
        save_gif(folder / f"{name}.gif", frames)
    record = {"metrics": out.metrics, "meta": out.meta, "run": _run_info(device)}
    atomic_write_text(folder / "metrics.json", json.dumps(record, indent=1, allow_nan=True) + "\n")
    return folder


def _run_info(device: str) -> dict:
    import platform
    from datetime import datetime, timezone
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    info = {"device": str(device), "threads": torch.get_num_threads(), "machine": platform.machine(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions}
    if torch.device(device).type == "cuda":
        info["cuda_kernels"] = cuda_kernels()
    return info


def record_verdict(out: Outputs, folder: str | Path, device: str, failures_root: str | Path | None = None):
    """Compare ``out`` with its golden and record the result in ``folder/golden.json`` (paths of failure
    PNGs relative to ``folder``), for the report; returns the golden.Verdict. A missing or corrupt golden
    is recorded as ``{"passed": false, "error": ...}`` and the GoldenError re-raised."""
    from harness import golden

    folder = Path(folder)
    kwargs = {} if failures_root is None else {"failures_root": Path(failures_root)}
    try:
        verdict = golden.verdict(out, out.meta["backend"], device, **kwargs)
    except GoldenError as e:
        atomic_write_text(folder / "golden.json", json.dumps({"passed": False, "error": str(e)}, indent=1) + "\n")
        raise
    record = verdict.to_json()
    for image in record["images"].values():
        if "files" in image:
            image["files"] = {k: os.path.relpath(Path(v).resolve(), folder.resolve()) for k, v in image["files"].items()}
    atomic_write_text(folder / "golden.json", json.dumps(record, indent=1, allow_nan=True) + "\n")
    return verdict
