"""Backends by name: each loader returns an object with a ``denoiser`` (see harness.denoisers.base)."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from harness.errors import UnknownName


def _tiny_if(device: str):
    from harness.denoisers.deepfloyd import load_deepfloyd
    from harness.denoisers.tiny_if import tiny_if_path

    root = tiny_if_path()
    return load_deepfloyd(str(root / "stage1"), str(root / "stage2"), device, name="tiny-if")


def _deepfloyd(device: str):
    from harness.denoisers.deepfloyd import load_deepfloyd

    return load_deepfloyd(device=device)


def _deepfloyd_random(device: str):
    from harness.denoisers.deepfloyd_random import load_deepfloyd_random

    return load_deepfloyd_random(device)


def _mnist(device: str):
    from harness.denoisers.mnist import MnistBackend

    return MnistBackend(device)


BACKENDS: dict[str, Callable[[str], object]] = {"tiny-if": _tiny_if, "deepfloyd": _deepfloyd,
                                                 "deepfloyd-random": _deepfloyd_random, "mnist": _mnist}
# Random weights at the real size, in fp16 on whatever GPU runs them: their images carry nothing to
# reproduce, so their cases check the sections' relations and keep no goldens (they measure cost).
WITHOUT_GOLDENS = ("deepfloyd-random",)


def backend_names() -> list[str]:
    return list(BACKENDS)


def has_goldens(name: str) -> bool:
    """Whether a backend's cases are compared with goldens (known without loading the backend)."""
    return name not in WITHOUT_GOLDENS


def backend_params(name: str) -> dict[str, dict]:
    """Section parameters a backend declares over the sections' own (section id -> parameters),
    known without loading the backend."""
    if name == "mnist":
        from harness.denoisers.mnist import SECTION_PARAMS

        return SECTION_PARAMS
    return {}


@lru_cache(maxsize=None)
def get_backend(name: str, device: str = "cpu"):
    """The loaded backend, once per (name, device) per process."""
    if name not in BACKENDS:
        raise UnknownName(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    return BACKENDS[name](device)
