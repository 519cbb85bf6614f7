"""Command line: ``python -m harness {list,run,golden,data,train,report,gpu-check,gpu-home}``; see ``--help``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.errors import BadImage, GoldenError, HarnessError, UnknownName, WeightsUnavailable
from harness.seeding import DEFAULT_SEED


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    p.add_argument("--mnist-root", help="folder with the MNIST IDX files (MNIST/raw layout); default: MNIST_ROOT, "
                                        "else the cache filled by `python -m harness data mnist`")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every section: id, title, backends")

    run = sub.add_parser("run", help="run sections and write PNGs and metrics.json")
    run.add_argument("sections", nargs="+", metavar="SECTION",
                     help="section ids, or 'all' (every section on every embedded CPU backend: tiny-if, mnist)")
    run.add_argument("--backend", help="default: the section's first backend (tiny-if for Part A, mnist for Part B)")
    run.add_argument("--seed", type=int, default=DEFAULT_SEED)
    run.add_argument("--device", default="cpu")
    run.add_argument("--out", default="out", help="output root; a case writes to OUT/<section>/<backend>/, with "
                                                  "golden.json (its golden comparison) where a golden exists")
    run.add_argument("--image", help="your own image (PNG/JPEG) for SDEdit, inpainting, image-to-image")
    run.add_argument("--mask", help="binary mask for inpainting: white = regenerate, black = keep")
    run.add_argument("--prompt", help="your own prompt")
    run.add_argument("--no-progress", action="store_true")

    golden = sub.add_parser("golden", help="golden files")
    gsub = golden.add_subparsers(dest="golden_command", required=True)
    upd = gsub.add_parser("update", help="run sections and (over)write their goldens")
    upd.add_argument("sections", nargs="*", metavar="SECTION",
                     help="default: every section of the backend (without --backend: of every embedded CPU backend)")
    upd.add_argument("--backend", default=None)
    upd.add_argument("--device", default="cpu")

    data = sub.add_parser("data", help="fetch data sets (once; tests and reproductions never download)")
    data.add_argument("dataset", choices=["mnist"])

    train = sub.add_parser("train", help="train a Part B UNet (checkpoints, loss CSV and PNG in --out)")
    train.add_argument("kind", choices=["denoiser", "time", "class"])
    train.add_argument("--preset", choices=["course", "quick"], default="quick")
    train.add_argument("--out", default="out/train")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("--no-resume", action="store_true")
    for flag, what in (("--bf16", "bf16 autocast of the forward pass"), ("--channels-last", "channels_last weights"),
                       ("--compile", "torch.compile the model")):
        train.add_argument(flag, action="store_true", help=f"speed: {what} (not part of the recipe)")
    train.add_argument("--export", action="store_true",
                       help="measure the checkpoints and copy them (fp16) into harness/data/partb/")

    for name, what in (("gpu-check", "the GPU runner check (scripts/gpu_check.sh runs it; --help for its options)"),
                       ("gpu-home", "unpack a GPU check's results into the tree (--help for its options)")):
        sub.add_parser(name, help=what, add_help=False)  # listed here; main() hands them their arguments

    report = sub.add_parser("report", help="build the static HTML report of saved outputs (OUT/report/index.html)")
    report.add_argument("--outputs", default="out", help="outputs of `run` (OUTPUTS/<section>/<backend>/)")
    report.add_argument("--backend", action="append", help="only these backends (repeatable); default: all on disk")
    report.add_argument("--out", default="out/report", help="report folder")
    report.add_argument("--benchmarks", default=".benchmarks", help="pytest-benchmark storage (`make bench`)")
    return p


def _cases(ids: list[str], backend: str | None) -> list[tuple[str, str | None]]:
    """(section, backend) pairs: 'all' (or none) is every section on ``backend``, or without one on every
    embedded CPU backend it lists; named sections run on ``backend`` (None: the section's first)."""
    from harness.runner import EMBEDDED_BACKENDS, cases
    from harness.sections import get_section

    if ids in ([], ["all"]):
        return cases((backend,) if backend else EMBEDDED_BACKENDS)
    return [(get_section(i).id, backend) for i in ids]


def _check_backend(backend: str | None) -> None:
    from harness.backends import backend_names

    if backend is not None and backend not in backend_names():
        raise UnknownName(f"unknown backend {backend!r}; valid backends: {', '.join(backend_names())}")


def cmd_list() -> None:
    from harness.sections import SECTIONS

    width = max(len(s.id) for s in SECTIONS.values())
    for s in SECTIONS.values():
        print(f"{s.id:<{width}}  {s.title}  [{', '.join(s.backends)}]")


def cmd_run(args: argparse.Namespace) -> None:
    from harness.runner import fix_threads, run_case, save_outputs

    fix_threads()
    _check_backend(args.backend)
    own_inputs = any((args.image, args.mask, args.prompt)) or args.seed != DEFAULT_SEED
    for section_id, backend in _cases(args.sections, args.backend):
        out = run_case(section_id, backend, args.seed, args.device, args.image, args.mask, args.prompt,
                       progress=not args.no_progress)
        folder = save_outputs(out, Path(args.out) / section_id / out.meta["backend"], args.device)
        verdict = "" if own_inputs else _record_verdict(out, folder, args)
        print(f"{section_id}: wrote {len(out.images)} images and metrics.json to {folder}{verdict}")


def _record_verdict(out, folder: Path, args: argparse.Namespace) -> str:
    """Record (never fail on) the golden comparison of a default-input case that has a golden."""
    from harness import golden
    from harness.runner import record_verdict

    if not golden.exists(out.meta["backend"], out.meta["section"], args.device):
        return ""
    try:
        verdict = record_verdict(out, folder, args.device, Path(args.out) / "golden-failures")
    except GoldenError as e:
        return f"; golden: error ({e})"
    return "; golden: pass" if verdict.passed else f"; golden: FAIL ({len(verdict.problems)} problems, see golden.json)"


def cmd_golden_update(args: argparse.Namespace) -> None:
    from harness import golden
    from harness.backends import backend_names, has_goldens
    from harness.runner import fix_threads, run_case

    fix_threads()
    _check_backend(args.backend)
    if args.backend is not None and not has_goldens(args.backend):
        raise HarnessError(f"{args.backend} keeps no goldens (random weights: its cases check the sections' "
                           f"relations only); backends with goldens: {', '.join(filter(has_goldens, backend_names()))}")
    for section_id, backend in _cases(args.sections, args.backend):
        out = run_case(section_id, backend, device=args.device)
        folder = golden.write(out, out.meta["backend"], args.device)
        print(f"{section_id}: golden written to {folder}")


def cmd_report(args: argparse.Namespace) -> None:
    from harness.report import build_report

    for backend in args.backend or []:
        _check_backend(backend)
    print(build_report(args.outputs, args.out, backends=args.backend, benchmarks_root=args.benchmarks))


def cmd_data(args: argparse.Namespace) -> None:
    from harness.partb.mnist import ensure_mnist

    print(f"MNIST cached at {ensure_mnist()}")


def cmd_train(args: argparse.Namespace) -> None:
    from harness.partb import checkpoints
    from harness.partb.evaluate import measure
    from harness.partb.train import Speed, train
    from harness.runner import check_device, fix_threads

    fix_threads()
    check_device(args.device)
    speed = Speed(bf16=args.bf16, channels_last=args.channels_last, compile=args.compile)
    trainer = train(args.kind, args.preset, args.out, args.seed, args.device, resume=not args.no_resume, speed=speed)
    print(f"{args.kind}: {trainer.epoch} epochs, checkpoints and loss curves in {args.out}")
    if args.export:
        metrics = {str(e): measure(args.kind, checkpoints.load(args.kind, e, root=Path(args.out))[0], args.seed)
                   for e in trainer.recipe.save_epochs}
        for path in checkpoints.export(args.out, args.kind, metrics):
            print(f"exported {path}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gpu-check"]:
        from harness.gpu.check import main as gpu_check

        return gpu_check(argv[1:])
    if argv[:1] == ["gpu-home"]:
        from harness.gpu.home import main as gpu_home

        return gpu_home(argv[1:])
    args = _parser().parse_args(argv)
    if args.mnist_root:
        os.environ["MNIST_ROOT"] = args.mnist_root
    try:
        if args.command == "list":
            cmd_list()
        elif args.command == "run":
            cmd_run(args)
        elif args.command == "golden":
            cmd_golden_update(args)
        elif args.command == "data":
            cmd_data(args)
        elif args.command == "train":
            cmd_train(args)
        elif args.command == "report":
            cmd_report(args)
    except (UnknownName, BadImage) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (WeightsUnavailable, GoldenError, HarnessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
