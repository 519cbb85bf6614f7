"""The shipped Part B checkpoints (harness/data/partb/): fp16 safetensors, recipe and metrics inside.

``export`` copies a training run's checkpoints and loss logs there; ``load`` returns a model in eval
mode (float32) with its metadata. The `mnist` backend is this set of checkpoints.
"""

from __future__ import annotations

import csv
import json
import shutil
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from harness.atomic import atomic_path
from harness.errors import WeightsUnavailable
from harness.partb.train import Recipe, build_model


def shipped_dir() -> Path:
    return Path(str(files("harness.data").joinpath("partb")))


def _path(kind: str, epoch: int, root: Path | None = None) -> Path:
    return (root or shipped_dir()) / f"{kind}_epoch{epoch}.safetensors"


def saved_epochs(kind: str, root: Path | None = None) -> list[int]:
    """The epochs of ``kind`` with a checkpoint in ``root`` (default: the shipped set), in order."""
    names = (root or shipped_dir()).glob(f"{kind}_epoch*.safetensors")
    return sorted(int(p.stem.removeprefix(f"{kind}_epoch")) for p in names if p.stem.removeprefix(f"{kind}_epoch").isdigit())


def metadata(kind: str, epoch: int, root: Path | None = None) -> dict:
    with safe_open(_path(kind, epoch, root), "pt") as f:
        return dict(f.metadata() or {})


def load(kind: str, epoch: int, root: Path | None = None, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The checkpoint's model (eval, float32) and metadata (recipe, epoch, losses, metrics)."""
    path = _path(kind, epoch, root)
    if not path.is_file():
        raise WeightsUnavailable(f"no Part B checkpoint {path.name} in {path.parent}: train it with "
                                 f"`python -m harness train {kind} --preset quick` and export it (see README)")
    meta = metadata(kind, epoch, root)
    recipe = Recipe.from_json(meta["recipe"])
    model = build_model(kind, recipe.num_hiddens)
    model.load_state_dict({k: v.float() for k, v in load_file(path).items()})
    return model.to(device).eval(), meta


def loss_log(kind: str, root: Path | None = None) -> tuple[list[tuple[int, int, float]], list[tuple[int, float]]]:
    """(train rows (step, epoch, loss), test rows (epoch, loss)) shipped beside the checkpoints."""
    root = root or shipped_dir()
    with open(root / f"{kind}_train_loss.csv") as f:
        train = [(int(r["step"]), int(r["epoch"]), float(r["train_loss"])) for r in csv.DictReader(f)]
    with open(root / f"{kind}_test_loss.csv") as f:
        test = [(int(r["epoch"]), float(r["test_loss"])) for r in csv.DictReader(f)]
    return train, test


def export(train_dir: str | Path, kind: str, metrics: dict | None = None, root: Path | None = None) -> list[Path]:
    """Copy a run's checkpoints (as fp16, with ``metrics`` added to the metadata) and loss CSVs."""
    root = root or shipped_dir()
    train_dir = Path(train_dir)
    written = []
    for src in sorted(train_dir.glob(f"{kind}_epoch*.safetensors")):
        with safe_open(src, "pt") as f:
            meta = dict(f.metadata() or {})
        meta.update({k: json.dumps(v) for k, v in (metrics or {}).get(meta["epoch"], {}).items()})
        with atomic_path(root / src.name) as tmp:
            save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(src).items()}, str(tmp), metadata=meta)
        written.append(root / src.name)
    for name in (f"{kind}_train_loss.csv", f"{kind}_test_loss.csv"):
        shutil.copyfile(train_dir / name, root / name)
    return written


@lru_cache(maxsize=None)
def load_model(kind: str, epoch: int, device: str = "cpu") -> torch.nn.Module:
    """The shipped checkpoint's model, loaded once per process (the `mnist` backend's models)."""
    return load(kind, epoch, device=device)[0]
