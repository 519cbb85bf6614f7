"""The shipped Part B checkpoints (harness/data/partb/): safetensors, recipe and metrics inside.

Two formats, named by the metadata's "weights" (absent: fp16): ``fp16``, every float tensor in fp16;
``int8``, each conv and linear weight (dim >= 2) as int8 with a float32 scale per output channel under
NAME.scale (`harness.partb.int8`: w ~ s_c q_ci within s_c / 2), the other float tensors in fp16.
``export`` copies a training run's checkpoints and loss logs there; ``stored`` re-stores a checkpoint in
either format (the ship path, `gpu-home --ship-checkpoints --weights`); ``load`` returns a model in eval
mode (float32) with its metadata, from either. The `mnist` backend is this set of checkpoints.
"""

from __future__ import annotations

import csv
import json
import shutil
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from harness.atomic import atomic_write_bytes
from harness.errors import BadValue, HarnessError, WeightsUnavailable
from harness.partb.formats import WEIGHTS
from harness.partb.int8 import dequantize, quantize, transposed
from harness.partb.train import Recipe, build_model

SCALE = ".scale"  # suffix of an int8 weight's scale


def shipped_dir() -> Path:
    return Path(str(files("harness.data").joinpath("partb")))


def _path(kind: str, epoch: int, root: Path | None = None) -> Path:
    return (root or shipped_dir()) / f"{kind}_epoch{epoch}.safetensors"


def saved_epochs(kind: str, root: Path | None = None) -> list[int]:
    """The epochs of ``kind`` with a checkpoint in ``root`` (default: the shipped set), in order."""
    names = (root or shipped_dir()).glob(f"{kind}_epoch*.safetensors")
    return sorted(int(p.stem.removeprefix(f"{kind}_epoch")) for p in names if p.stem.removeprefix(f"{kind}_epoch").isdigit())


def _open(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and metadata, whose "weights" names the format: files that name none
    (training's float32 checkpoints, fp16 ones exported before int8) are named by their float dtype."""
    meta, tensors = _metadata(data), load_tensors(data)
    if "weights" not in meta:
        meta["weights"] = "fp32" if any(v.dtype == torch.float32 for v in tensors.values()) else "fp16"
    elif meta["weights"] not in WEIGHTS:
        raise HarnessError(f"checkpoint weights {meta['weights']!r} are not one of {', '.join(WEIGHTS)}: "
                           f"a newer harness wrote it; update this one")
    return tensors, meta


def _metadata(data: bytes) -> dict[str, str]:
    """A safetensors file's metadata, from its JSON header alone."""
    return dict(json.loads(data[8:8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {})


def _model(meta: dict[str, str]) -> torch.nn.Module:
    """The untrained UNet of a checkpoint's recipe."""
    recipe = Recipe.from_json(meta["recipe"])
    return build_model(recipe.kind, recipe.num_hiddens)


def encode(state: dict[str, torch.Tensor], weights: str, transposed_weights: set[str]) -> dict[str, torch.Tensor]:
    """The tensors a ``weights`` file stores for a float state dict (see the module docstring);
    ``transposed_weights`` (`int8.transposed`) have their output channels on axis 1."""
    if weights not in WEIGHTS:
        raise HarnessError(f"unknown weights format {weights!r}: use one of {', '.join(WEIGHTS)}")
    out = {}
    for name, v in state.items():
        if weights == "int8" and v.is_floating_point() and v.dim() >= 2:
            out[name], out[name + SCALE] = quantize(v, int(name in transposed_weights))
        else:
            out[name] = v.half() if v.is_floating_point() else v
    return out


def decode(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 state dict of either format: an int8 tensor is s * q with its NAME.scale."""
    return {name: dequantize(v, tensors[name + SCALE]) if v.dtype == torch.int8 else
            v.float() if v.is_floating_point() else v for name, v in tensors.items() if not name.endswith(SCALE)}


def stored(data: bytes, weights: str, extra: dict[str, str] | None = None) -> bytes:
    """A checkpoint's bytes re-stored as a ``weights`` file, its metadata kept, ``extra`` added and the
    format recorded."""
    tensors, meta = _open(data)
    state = encode(decode(tensors), weights, transposed(_model(meta)))
    return save_tensors(state, metadata=meta | (extra or {}) | {"weights": weights})


def read(kind: str, epoch: int, root: Path | None = None, weights: str | None = None) -> bytes:
    """The checkpoint file's bytes; with ``weights``, re-stored in that format (as shipping it would).
    BadValue if its recipe is another kind's (a DDPM checkpoint under a flow kind's name)."""
    path = _path(kind, epoch, root)
    if not path.is_file():
        raise WeightsUnavailable(f"no Part B checkpoint {path.name} in {path.parent}: train it with "
                                 f"`python -m harness train {kind} --preset quick` and export it (see README)")
    data = path.read_bytes()
    if (trained := Recipe.from_json(_metadata(data)["recipe"]).kind) != kind:
        raise BadValue(f"{path} holds a {trained!r} UNet, not a {kind!r} one: pass the checkpoints of a "
                       f"`python -m harness train {kind}` run")
    return stored(data, weights) if weights else data


def model_of(data: bytes, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A checkpoint's model (eval, float32, either format) and metadata (recipe, epoch, losses, metrics, weights)."""
    tensors, meta = _open(data)
    model = _model(meta)
    model.load_state_dict(decode(tensors))
    return model.to(device).eval(), meta


def load(kind: str, epoch: int, root: Path | None = None, device: str = "cpu",
         weights: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The checkpoint's model and metadata (`model_of`); with ``weights``, of it re-stored in that format."""
    return model_of(read(kind, epoch, root, weights), device)


def loss_log(kind: str, root: Path | None = None) -> tuple[list[tuple[int, int, float]], list[tuple[int, float]]]:
    """(train rows (step, epoch, loss), test rows (epoch, loss)) shipped beside the checkpoints."""
    root = root or shipped_dir()
    with open(root / f"{kind}_train_loss.csv") as f:
        train = [(int(r["step"]), int(r["epoch"]), float(r["train_loss"])) for r in csv.DictReader(f)]
    with open(root / f"{kind}_test_loss.csv") as f:
        test = [(int(r["epoch"]), float(r["test_loss"])) for r in csv.DictReader(f)]
    return train, test


def export(train_dir: str | Path, kind: str, metrics: dict | None = None, root: Path | None = None,
           weights: str = "fp16") -> list[Path]:
    """Copy a run's checkpoints (as ``weights`` files, with ``metrics`` added to the metadata) and loss CSVs."""
    root = root or shipped_dir()
    train_dir = Path(train_dir)
    written = []
    for src in sorted(train_dir.glob(f"{kind}_epoch*.safetensors")):
        data = src.read_bytes()
        extra = {k: json.dumps(v) for k, v in (metrics or {}).get(_open(data)[1]["epoch"], {}).items()}
        atomic_write_bytes(root / src.name, stored(data, weights, extra))
        written.append(root / src.name)
    for name in (f"{kind}_train_loss.csv", f"{kind}_test_loss.csv"):
        shutil.copyfile(train_dir / name, root / name)
    return written


@lru_cache(maxsize=None)
def load_model(kind: str, epoch: int, device: str = "cpu") -> torch.nn.Module:
    """The shipped checkpoint's model, loaded once per process (the `mnist` backend's models)."""
    return load(kind, epoch, device=device)[0]
