"""Non-finite samples caught where they appear: a sampling loop whose x turns NaN or Inf fails its case
with the step named, instead of being saved as a black PNG or judged by a relation.

`watching()` opens a watch for one case (`run_section`); every step of `iterative_denoise` updates it
with device-side tensor operations only (the loops read nothing on the host), and `Watch.check` reads it
once, after the case has run.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch

from harness.errors import HarnessError


class NonFiniteSample(HarnessError):
    """A sample turned NaN or Inf; the message names the loop and step where it first did."""


class Watch:
    """Each step's (loop, step i, timestep t') on the host and whether its x_t' was finite on the device."""

    def __init__(self):
        self.loops = 0
        self.steps: list[tuple[int, int, int]] = []
        self.finite: list[torch.Tensor] = []

    def start_loop(self) -> None:
        self.loops += 1

    def step(self, x: torch.Tensor, i: int, t: int) -> None:
        """After step i (to timestep t) of the current loop."""
        self.steps.append((self.loops, i, t))
        self.finite.append(torch.isfinite(x).all())

    def check(self, what: str) -> None:
        """NonFiniteSample naming the first bad step of ``what`` (one host read: call it after the loops)."""
        if not self.finite:
            return
        finite = torch.stack(self.finite).cpu()
        if not finite.all():
            loop, i, t = self.steps[int((~finite).nonzero()[0])]
            raise NonFiniteSample(
                f"{what}: the sample turned NaN/Inf at step {i} (to t = {t}) of sampling loop {loop}; nothing was "
                f"saved. The denoiser's output or the step overflowed there: on an fp16 model, --device cpu "
                f"(float32) shows whether precision is the cause")


_current: ContextVar[Watch | None] = ContextVar("finite_watch", default=None)


def current() -> Watch | None:
    """The open watch of the case being run, if any (`iterative_denoise` updates it)."""
    return _current.get()


@contextmanager
def watching() -> Iterator[Watch]:
    """Open a watch for the sampling loops run inside."""
    token = _current.set(Watch())
    try:
        yield _current.get()
    finally:
        _current.reset(token)
