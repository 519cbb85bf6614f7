"""Command line: ``python -m harness {list,run,check-impl,golden,data,train,measure,report,gpu-check,gpu-home}``; see
``--help``. ``train`` and ``measure`` also run under ``torchrun --nproc_per_node N -m harness ...``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.cli_args import ArgumentParser, file, folder, number, positive, seconds
from harness.errors import BadImage, BadValue, GoldenError, HarnessError, UnknownName
from harness.partb.formats import WEIGHTS
from harness.partb.kinds import KINDS, NUM_TS
from harness.partb.speed import Speed
from harness.seeding import DEFAULT_SEED


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m harness", description=__doc__)
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

    check = sub.add_parser("check-impl", help="check your implementation of the course's Part A functions against "
                                              "the reference, section by section (a table; outputs in --out)")
    check.add_argument("files", nargs="+", metavar="FILE", help="your notebook (.ipynb: its definitions only), .py "
                                                               "file or importable module with forward, "
                                                               "iterative_denoise, iterative_denoise_cfg, inpaint, ...; "
                                                               "or a class: folders and files, each in a sandbox")
    check.add_argument("--backend", default="tiny-if", help="tiny-if (default, random weights) or mnist (trained, judged)")
    check.add_argument("--section", action="append", metavar="SECTION", help="only these sections (repeatable)")
    check.add_argument("--stride", type=positive, default=30, help="stride of the strided timesteps (the course's 30)")
    check.add_argument("--seed", type=int, default=DEFAULT_SEED)
    check.add_argument("--device", default="cpu")
    check.add_argument("--time-limit", type=seconds, default=600.0, help="seconds one call of your function may take")
    check.add_argument("--out", default="out/check-impl", help="per section your images, the reference's and their "
                                                               "difference, and results.json, in OUT/<backend>/ "
                                                               "(a class: OUT/<submission>/<backend>/, grades.csv, "
                                                               "index.html)")
    grading = check.add_argument_group("a class (several files or a folder; README \"Grade a class\")")
    grading.add_argument("--workers", type=positive, help="sandboxes at a time (default: the cores)")
    grading.add_argument("--force", action="store_true", help="run again the submissions graded before, unchanged")
    grading.add_argument("--gradescope", action="store_true", help="also OUT/<submission>/gradescope/results.json")
    grading.add_argument("--rubric", help="points per section and verdict (TOML; default harness/data/rubric.toml)")
    grading.add_argument("--memory-gb", type=positive, default=8, help="a sandbox's address-space cap (GiB)")
    grading.add_argument("--wall-s", type=seconds, default=1800.0, help="a sandbox's wall-clock cap (seconds)")

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
    train.add_argument("kind", choices=KINDS, help="DDPM: denoiser, time, class; flow matching: pure-noise (1.2.3), "
                                                   "fm-time, fm-class")
    train.add_argument("--preset", choices=["course", "quick"], default="quick")
    train.add_argument("--out", default="out/train")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("--no-resume", action="store_true")
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="change a recipe field (JSON value), e.g. --set epochs=2 --set save_epochs=[1,2]")
    train.add_argument("--max-steps", type=positive, help="at most this many steps per epoch (smoke runs)")
    train.add_argument("--no-progress", action="store_true")
    Speed.add_flags(train.add_argument)
    train.add_argument("--fp32", action="store_true",
                       help="the reference fp32 eager loop (default on a GPU; on a CPU with bf16 units the default "
                            "is bf16 autocast with channels_last, on one without them fp32)")
    train.add_argument("--export", action="store_true",
                       help="measure the checkpoints and copy them (fp16) into harness/data/partb/")
    train.add_argument("--measure-bf16", action="store_true",
                       help="with --export: sample for FID-lite and accuracy with the UNet in bf16 autocast (faster; "
                            "docs/partb.md gives the difference from float32)")
    train.add_argument("--weights", choices=WEIGHTS,
                       help="with --export: the format it writes and measures (default: writes fp16, measures the "
                            "float32 checkpoints)")

    measure = sub.add_parser("measure", help="FID-lite (time, class and fm-; class kinds also accuracy), PSNR (denoiser) "
                                              "or MSE to the training mean (pure-noise) of a Part B checkpoint; under "
                                              "torchrun the samples split over ranks")
    measure.add_argument("kind", choices=KINDS)
    measure.add_argument("--epoch", type=positive, help="default: the last epoch of the recipe")
    measure.add_argument("--checkpoints", help="folder of a `train --out`; default: the shipped checkpoints")
    measure.add_argument("--samples", type=positive, default=1000, help="samples (at most the MNIST test digits)")
    measure.add_argument("--stride", type=positive, default=10, help="DDPM: sample every stride-th of the T=300 timesteps")
    measure.add_argument("--num-ts", type=positive, help="flow matching: Euler steps (default: the course's, "
                                                         + ", ".join(f"{k} {v}" for k, v in NUM_TS.items()) + ")")
    measure.add_argument("--guidance-scale", type=number, default=5.0, help="class kinds: CFG's gamma (default 5)")
    measure.add_argument("--seed", type=int, default=0)
    measure.add_argument("--bf16", action="store_true",
                         help="the UNet in bf16 autocast while sampling (faster where the device has bf16 units; the "
                              "goldens and reproductions always sample in float32)")
    measure.add_argument("--device", default="cpu")
    measure.add_argument("--weights", choices=WEIGHTS,
                         help="measure the checkpoint re-stored in this format, as `gpu-home --ship-checkpoints "
                              "--weights` would ship it (default: as stored); the result gives its bytes")
    measure.add_argument("--out", help="also write the measurements to this JSON file")

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
    from harness.runner import cases
    from harness.sections import get_section

    if ids in ([], ["all"]):
        return cases((backend,) if backend else None)
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
    from harness.devices import fix_threads
    from harness.runner import run_case, save_outputs

    fix_threads()
    _check_backend(args.backend)
    root = folder(args.out)
    own = own_inputs(args)
    for section_id, backend in _cases(args.sections, args.backend):
        out = run_case(section_id, backend, args.seed, args.device, args.image, args.mask, args.prompt,
                       progress=not args.no_progress)
        saved = save_outputs(out, root / section_id / out.meta["backend"], args.device)
        verdict = f"; golden: not judged (own {', '.join(own)})" if own else _record_verdict(out, saved, args)
        print(f"{section_id}: wrote {len(out.images)} images and metrics.json to {saved}{verdict}")


def own_inputs(args: argparse.Namespace) -> list[str]:
    """The flags of `run` that make a case the user's own (an empty --prompt too): it is not judged
    against the default inputs' golden."""
    return [f"--{k}" for k in ("image", "mask", "prompt", "seed") if getattr(args, k) not in (None, DEFAULT_SEED)]


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


def cmd_check_impl(args: argparse.Namespace) -> int:
    """The table of verdicts; exit status 1 if a section is wrong or raised."""
    from harness.devices import check_device, fix_threads
    from harness.impl.run import check_file, save, table

    fix_threads()
    _check_backend(args.backend)
    root = folder(args.out)
    check_device(args.device)
    if len(args.files) > 1 or Path(args.files[0]).is_dir():
        return _grade_class(args, root)
    results = check_file(args.files[0], args.backend, args.section, args.seed, args.stride, args.time_limit,
                         args.device, progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    meta = {"file": args.files[0], "backend": args.backend, "seed": args.seed, "stride": args.stride}
    page = save(results, root / args.backend, meta)
    print(table(results))
    print(f"report (your images beside the reference's, tracebacks): {page.resolve()}")
    return int(any(r.verdict in ("wrong", "error") for r in results))


def _grade_class(args: argparse.Namespace, root: Path) -> int:
    """Each file in its sandbox, the gradebook in OUT; exit status 0 once it is written."""
    from harness.impl.batch import Options, grade
    from harness.impl.run import select
    from harness.impl.sandbox import GIB, Limits

    select(args.section)  # an unknown section: one line, before any work
    limits = Limits(memory=args.memory_gb * GIB, wall_s=args.wall_s)
    options = Options(args.backend, tuple(args.section or ()), args.seed, args.stride, args.time_limit, args.device,
                      limits)
    grades = grade(args.files, root, options, args.workers, args.force, args.gradescope,
                   Path(args.rubric) if args.rubric else None)
    print(f"{len(grades)} submissions: {(root / 'grades.csv').resolve()}, {(root / 'index.html').resolve()}")
    return 0


def cmd_golden_update(args: argparse.Namespace) -> None:
    from harness import golden
    from harness.backends import backend_names, has_goldens
    from harness.devices import fix_threads
    from harness.runner import run_case

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
    import torch

    from harness.devices import check_device, cpu_bf16_units, device_name, fix_threads
    from harness.partb import checkpoints, distributed
    from harness.partb.evaluate import measure
    from harness.partb.speed import for_training
    from harness.partb.train import recipe_overrides, train

    fix_threads()
    overrides = recipe_overrides(args.set)
    folder(args.out)
    check_device(args.device)
    world = distributed.init(args.device)
    device = world.device(args.device)
    speed, notice = for_training(Speed.from_flags(lambda name: getattr(args, name)), args.fp32, torch.device(device).type,
                                 cpu_bf16_units)
    if world.is_main:
        print(notice or f"training {args.kind} with {speed.label()} on {device_name(device)}")
    trainer = train(args.kind, args.preset, args.out, args.seed, device, resume=not args.no_resume,
                    max_steps=args.max_steps, progress=not args.no_progress, speed=speed, world=world, **overrides)
    if world.is_main:
        print(f"{args.kind}: {trainer.epoch} epochs on {world.size} process(es), checkpoints and loss curves in {args.out}")
    if args.export:
        metrics = {str(e): measure(args.kind, checkpoints.load(args.kind, e, Path(args.out), device, args.weights)[0],
                                   args.seed, world=world, bf16=args.measure_bf16) for e in trainer.recipe.save_epochs}
        written = checkpoints.export(args.out, args.kind, metrics, weights=args.weights or "fp16") if world.is_main else []
        for path in written:
            print(f"exported {path}")
    distributed.shutdown()


def cmd_measure(args: argparse.Namespace) -> None:
    import json

    from harness.atomic import atomic_write_text
    from harness.devices import check_device, fix_threads
    from harness.partb import checkpoints, distributed
    from harness.partb.evaluate import measure
    from harness.partb.mnist import SPLIT_SIZES
    from harness.partb.train import PRESETS

    fix_threads()
    recipe = PRESETS["quick"][args.kind]
    root = Path(args.checkpoints) if args.checkpoints else None
    if root is not None and not root.is_dir():
        raise BadValue(f"--checkpoints {root} is no folder: pass the --out of a `train` run, or leave it out for "
                       f"the shipped checkpoints")
    epoch = args.epoch or recipe.epochs
    if epoch not in (saved := checkpoints.saved_epochs(args.kind, root)):
        raise BadValue(f"--epoch {epoch}: no {args.kind} checkpoint of that epoch in {root or checkpoints.shipped_dir()}; "
                       f"epochs there: {', '.join(map(str, saved)) or 'none (train one first)'}")
    if args.samples > SPLIT_SIZES["test"]:
        raise BadValue(f"--samples {args.samples}: at most the {SPLIT_SIZES['test']} test digits")
    if args.stride > recipe.T:
        raise BadValue(f"--stride {args.stride}: at most T = {recipe.T} (1 samples every timestep)")
    if args.out:
        file(args.out)
    check_device(args.device)
    world = distributed.init(args.device)
    data = checkpoints.read(args.kind, epoch, root, args.weights)
    model, meta = checkpoints.model_of(data, world.device(args.device))
    result = {"kind": args.kind, "epoch": epoch, "ranks": world.size, "weights": meta["weights"], "bytes": len(data),
              **measure(args.kind, model, args.seed, args.samples, args.stride, world, args.bf16, args.num_ts,
                        args.guidance_scale)}
    if world.is_main:
        print(json.dumps(result))
        if args.out:
            atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    distributed.shutdown()


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
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun rank: an uncaught error goes into torchrun's failure summary
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(_dispatch)(args)
    return _dispatch(args)


COMMANDS = {"list": lambda args: cmd_list(), "run": cmd_run, "check-impl": cmd_check_impl, "golden": cmd_golden_update, "data": cmd_data,
            "train": cmd_train, "measure": cmd_measure, "report": cmd_report}


# How to need less GPU memory, per command (the one line of an out-of-memory error).
LESS_MEMORY = {
    "run": "run one section at a time (`run SECTION`), or --device cpu, which needs no GPU memory",
    "check-impl": "check one section at a time (--section), or --device cpu, which needs no GPU memory",
    "golden": "update one section at a time (`golden update SECTION`)",
    "train": "lower the batch, e.g. --set batch_size=64, or train over several GPUs with torchrun",
    "measure": "measure fewer samples (--samples), or split them over GPUs with torchrun",
    "report": "the report needs no GPU: run it where the outputs are",
}


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command (its own exit status if it returns one: check-impl's 1 for a wrong section); a
    HarnessError or running out of GPU memory becomes one line on stderr (naming the rank under torchrun) and
    exit status 2 (a bad name, value or image) or 1."""
    try:
        status = COMMANDS[args.command](args)
    except HarnessError as e:
        print(f"error: {_rank()}{e}", file=sys.stderr)
        return 2 if isinstance(e, (UnknownName, BadImage, BadValue)) else 1
    except Exception as e:
        import torch

        from harness.devices import out_of_memory

        if not isinstance(e, torch.OutOfMemoryError):
            raise
        fix = LESS_MEMORY.get(args.command, "free GPU memory (other processes) and run it again")
        print(f"error: {_rank()}{out_of_memory(e, f'running `{args.command}`', fix)}",
              file=sys.stderr)
        return 1
    return status or 0


def _rank() -> str:
    """'rank R of N: ' under torchrun, else ''."""
    from harness.partb.distributed import World

    world = World.from_env()
    return f"rank {world.rank} of {world.size}: " if world.distributed else ""
