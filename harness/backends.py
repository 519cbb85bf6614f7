"""Backends: what a section runs on. A backend is one module (in harness/denoisers/) that builds an object
meeting `harness.denoisers.backend.Backend`, and one row of `BACKENDS` that says how to load it and what
it is (which parts it runs, whether it runs on the CPU from what the package ships, whether it keeps
goldens, whether it was trained). Sections, the CLI, the reproductions, the report and the benchmarks
read this table and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from harness.denoisers.backend import Backend
from harness.errors import UnknownName


@dataclass(frozen=True)
class BackendSpec:
    """One row of the table. load(device) -> Backend. parts: the writeup parts whose sections run on it.
    embedded: runs on the CPU from what the package ships (`run all`, `make test` and the report cover it).
    goldens: its cases are compared with goldens (random weights at real size keep none). trained: it
    learned its data, so the relations that only a trained model satisfies apply. judged: its backend has
    a `Judge`, so the relations on what results depict apply."""

    load: Callable[[str], Backend]
    parts: tuple[str, ...] = ("A",)
    embedded: bool = False
    goldens: bool = True
    trained: bool = False
    judged: bool = False


def _tiny_if(device: str) -> Backend:
    from harness.denoisers.deepfloyd import load_deepfloyd
    from harness.denoisers.tiny_if import tiny_if_path

    root = tiny_if_path()
    return load_deepfloyd(str(root / "stage1"), str(root / "stage2"), device, name="tiny-if")


def _deepfloyd(device: str) -> Backend:
    from harness.denoisers.deepfloyd import load_deepfloyd

    return load_deepfloyd(device=device)


def _deepfloyd_random(device: str) -> Backend:
    from harness.denoisers.deepfloyd_random import load_deepfloyd_random

    return load_deepfloyd_random(device)


def _mnist(device: str) -> Backend:
    from harness.denoisers.mnist import MnistBackend

    return MnistBackend(device)


BACKENDS: dict[str, BackendSpec] = {
    "tiny-if": BackendSpec(_tiny_if, embedded=True),
    "deepfloyd": BackendSpec(_deepfloyd, trained=True),
    # random weights at the real size, fp16 on a GPU: they measure cost, so their images carry nothing to
    # reproduce and their cases check the sections' relations only
    "deepfloyd-random": BackendSpec(_deepfloyd_random, goldens=False),
    "mnist": BackendSpec(_mnist, parts=("A", "B"), embedded=True, trained=True, judged=True),
}


def spec(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise UnknownName(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def backend_names(**where) -> list[str]:
    """Backends in table order; ``where`` filters on BackendSpec fields, e.g. backend_names(embedded=True)."""
    return [n for n, s in BACKENDS.items() if all(getattr(s, k) == v for k, v in where.items())]


def backends_for(part: str) -> tuple[str, ...]:
    """The backends that run a part's sections."""
    return tuple(n for n, s in BACKENDS.items() if part in s.parts)


def has_goldens(name: str) -> bool:
    """Whether a backend's cases are compared with goldens (known without loading the backend)."""
    return spec(name).goldens


@lru_cache(maxsize=None)
def get_backend(name: str, device: str = "cpu") -> Backend:
    """The loaded backend, once per (name, device) per process."""
    return spec(name).load(device)
