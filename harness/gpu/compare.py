"""What the GPU check compares: two processes' CUDA outputs (determinism) and CUDA goldens against the CPU
goldens (can a CPU golden judge a GPU run?). Pure numpy over golden folders and `cases.json` records."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness import golden


def determinism(first: dict, second: dict) -> dict:
    """Per case of two `harness.gpu.cases` records: bitwise_equal (every float32 image hash and every metric
    equal) and the images that differ. Skipped or missing cases are listed, not judged."""
    result: dict[str, dict] = {}
    for key in sorted(set(first) | set(second)):
        a, b = first.get(key, {}), second.get(key, {})
        if "hashes" not in a or "hashes" not in b:
            result[key] = {"compared": False, "why": a.get("skipped") or b.get("skipped") or "not run in both"}
            continue
        differ = sorted(k for k in a["hashes"] if a["hashes"][k] != b["hashes"].get(k))
        metrics = sorted(k for k in a["metrics"] if not _same(a["metrics"][k], b["metrics"].get(k)))
        result[key] = {"compared": True, "bitwise_equal": not differ and not metrics,
                       "images_differ": differ, "metrics_differ": metrics}
    return result


def _same(x, y) -> bool:
    return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))


def agreement(root: Path, device: str = "cuda", cpu_root: Path | None = None) -> dict:
    """Per case stored under ``root/<device>``: each image's PSNR and max |diff| against the CPU golden
    (under ``cpu_root``, default the repository's), each metric's difference, and whether the CPU and
    the CUDA tolerances would pass it."""
    result: dict[str, dict] = {}
    for folder in sorted((Path(root) / golden.device_class(device)).glob("*/*")):
        backend, section = folder.parent.name, folder.name
        if not golden.exists(backend, section, "cpu", cpu_root):
            continue
        got, got_record = golden.read(backend, section, device, root)
        want, want_record = golden.read(backend, section, "cpu", cpu_root)
        images = {k: {"psnr": golden.image_psnr(got[k], want[k]), "max_abs": float(np.max(np.abs(got[k] - want[k])))}
                  for k in sorted(set(got) & set(want)) if got[k].shape == want[k].shape}
        metrics = {k: {"obtained": got_record["metrics"][k], "cpu": v, "difference": got_record["metrics"][k] - v}
                   for k, v in sorted(want_record["metrics"].items()) if k in got_record["metrics"]}
        passes = {dc: all(golden.image_passes(i["max_abs"], i["psnr"], golden.TOLERANCES[dc]) for i in images.values())
                  and all(golden.metric_close(m["obtained"], m["cpu"], golden.TOLERANCES[dc]) for m in metrics.values())
                  for dc in golden.TOLERANCES}
        psnrs = [i["psnr"] for i in images.values()]
        result[f"{backend}/{section}"] = {"min_psnr": min(psnrs, default=None), "images": images, "metrics": metrics,
                                          "cpu_tolerance_passes": passes["cpu"], "cuda_tolerance_passes": passes["cuda"]}
    return result

