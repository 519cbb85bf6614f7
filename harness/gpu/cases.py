"""Run reproduction cases in this process for the GPU check, recording what a second process is compared on.

    python -m harness.gpu.cases --root R --device cuda --backend tiny-if --backend mnist [--against A]

For every case: the golden under ``R`` (`golden.write`, skipped with --no-golden), the sha256 of each
float32 output image (bitwise comparison between processes), its metrics, its wall time and, with
--against, the golden verdict against the goldens under ``A``. ``R/cases.json`` is rewritten after
every case, so a run cut off by its time box still reports the cases it finished.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from harness import golden
from harness.atomic import atomic_write_text
from harness.errors import BackendUnavailable
from harness.runner import cases, run_case
from harness.devices import fix_threads


def image_hashes(images) -> dict[str, str]:
    """sha256 of each image's float32 bytes: equal hashes are bitwise-equal outputs."""
    return {k: hashlib.sha256(v.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest() for k, v in images.items()}


def run_cases(pairs: list[tuple[str, str]], device: str, root: Path, against: Path | None = None,
              write_golden: bool = True) -> dict:
    """Run ``pairs`` and record each case in ``root/cases.json`` (see the module docstring)."""
    fix_threads()
    record: dict[str, dict] = {}
    for section, backend in pairs:
        key = f"{backend}/{section}"
        start = time.perf_counter()
        try:
            record[key] = _run_one(section, backend, device, root, against, write_golden, start)
        except BackendUnavailable as e:
            record[key] = {"skipped": str(e)}
        atomic_write_text(root / "cases.json", json.dumps(record, indent=1, allow_nan=True) + "\n")
    return record


def _run_one(section: str, backend: str, device: str, root: Path, against: Path | None, write_golden: bool,
             start: float) -> dict:
    out = run_case(section, backend, device=device)
    entry = {"seconds": time.perf_counter() - start, "hashes": image_hashes(out.images), "metrics": out.metrics}
    if write_golden:
        golden.write(out, backend, device, root=root)
    if against is not None:
        v = golden.verdict(out, backend, device, root=against, failures_root=root / "failures")
        entry["verdict"] = {"passed": v.passed, "problems": v.problems,
                            "min_psnr": min((i.get("psnr", 0.0) for i in v.images.values()), default=None)}
    return entry


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m harness.gpu.cases", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--backend", action="append", required=True)
    p.add_argument("--section", action="append", help="only these sections (default: all on the backends)")
    p.add_argument("--against", type=Path)
    p.add_argument("--no-golden", action="store_true")
    args = p.parse_args(argv)
    pairs = [c for c in cases(tuple(args.backend)) if not args.section or c[0] in args.section]
    run_cases(pairs, args.device, args.root, args.against, write_golden=not args.no_golden)


if __name__ == "__main__":
    main()
