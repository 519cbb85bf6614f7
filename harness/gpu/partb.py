"""A Part B recipe run for the GPU check: train with speed flags, time every epoch, measure, export fp16.

    python -m harness.gpu.partb time --device cuda --out DIR [--bf16 --channels-last --compile --graphs] [--export]

Writes ``DIR/result.json`` after every epoch: the flags, wall time of the whole run and of each epoch (the
first holds torch.compile's compilation), images/s of the steady epochs, test losses, and the measurement of
the last checkpoint (`harness.partb.evaluate.measure`: FID-lite of --fid-samples samples at every
--fid-stride-th timestep, accuracy for class, PSNR for the denoiser). With --export the checkpoints are
copied as fp16 into ``DIR/export`` (`checkpoints.export`), the form they come home in; `gpu-home
--ship-checkpoints --weights` chooses the form `harness/data/partb/` ships.
--tiny is the dry run's recipe: the quick preset cut to a few steps of a narrow UNet.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from harness.atomic import atomic_write_text
from harness.partb import checkpoints
from harness.partb.evaluate import measure
from harness.partb.kinds import KINDS
from harness.partb.speed import Speed
from harness.partb.train import train
from harness.devices import cuda_kernels, fix_threads

TINY = dict(num_hiddens=8, subset=128, test_subset=32, epochs=2, save_epochs=(1, 2))


def run_recipe(kind: str, out: Path, device: str, speed: Speed, preset: str = "course", fid_samples: int = 1000,
               fid_stride: int = 1, export: bool = False, **overrides) -> dict:
    """Train ``kind`` (no resume), timing each epoch; measure and optionally export. ``out/result.json`` is
    rewritten after every epoch (``finished`` false until the measurement is in), so a run stopped by a
    time box still says how far it got and how fast."""
    fix_threads()
    cuda = torch.device(device).type == "cuda"
    result = {"kind": kind, "preset": preset, "speed": dataclasses.asdict(speed), "finished": False,
              "cuda_kernels": cuda_kernels() if cuda else None,
              "device": torch.cuda.get_device_name() if cuda else "cpu", "epoch_seconds": [], "test_losses": []}
    start = time.perf_counter()

    def on_epoch(trainer) -> None:
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        result["epoch_seconds"].append(elapsed - sum(result["epoch_seconds"]))
        result.update(train_seconds=elapsed, test_losses=[v for _, v in trainer.test_log],
                      recipe=dataclasses.asdict(trainer.recipe), images_per_epoch=len(trainer.x))
        _write(out, result)

    trainer = train(kind, preset, out, device=device, resume=False, progress=False, speed=speed, on_epoch=on_epoch,
                    **overrides)
    steady = result["epoch_seconds"][1:] or result["epoch_seconds"]  # the first holds compilation and warm-up
    result |= {"steady_images_per_s": len(trainer.x) * len(steady) / sum(steady), "test_loss": trainer.test_log[-1][1],
               "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}
    n = fid_samples if kind != "class" else fid_samples - fid_samples % 10
    measured = time.perf_counter()
    result["measure"] = measure(kind, trainer.model.eval(), n=n, stride=fid_stride)
    result |= {"measure_seconds": time.perf_counter() - measured, "finished": True}
    if export:
        checkpoints.export(out, kind, {str(trainer.recipe.epochs): result["measure"]}, root=_mkdir(out / "export"))
    _write(out, result)
    return result


def _write(out: Path, result: dict) -> None:
    atomic_write_text(out / "result.json", json.dumps(result, indent=1) + "\n")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m harness.gpu.partb", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--fid-samples", type=int, default=1000)
    p.add_argument("--fid-stride", type=int, default=1)
    p.add_argument("--export", action="store_true")
    p.add_argument("--tiny", action="store_true", help="the dry run's recipe (see the module docstring)")
    Speed.add_flags(p.add_argument)
    a = p.parse_args(argv)
    speed = Speed.from_flags(lambda name: getattr(a, name))
    preset, overrides = ("quick", TINY) if a.tiny else ("course", {})
    run_recipe(a.kind, a.out, a.device, speed, preset, a.fid_samples, a.fid_stride, a.export, **overrides)


if __name__ == "__main__":
    main()
