"""Noise replay: the user's draws from the global RNG (``torch.randn``, ``torch.randn_like``), in call order,
get the values the reference drew from the case's seeded streams (`harness.seeding`), in the order it drew
them; an implementation that draws what the reference draws, in the same order, reproduces its output.

`recording` captures the draws of the harness's loops (`harness.sampling` and `harness.editing` draw through
`harness.seeding.randn`), each with its role, named by the function that drew it: "x_T" (a sample's or an
inpainting's start), "step" (z of a strided step), "renoise" (inpainting's re-noised known region). A `Tape`
serves them again in call order: to the user's code (`replaying`), and to the reference re-run with a mistake
(`serving`, which may leave a role's draws out: no variance, none at the last step). A draw whose size is not
the next one's comes from the tape's extra stream and is counted as unmatched.
"""

from __future__ import annotations

import math
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

from harness import editing, sampling
from harness.impl.devicemap import patched
from harness.seeding import derive_seed

ROLES = {"sample": "x_T", "inpaint": "x_T", "iterative_denoise": "step", "keep_known": "renoise"}
LOOP_MODULES = (sampling, editing)  # the modules whose draws are recorded and served


@dataclass
class Tape:
    """The reference's draws (role, tensor) in call order, served once each, in that order."""

    draws: list[tuple[str, torch.Tensor]]
    seed: int
    position: int = 0
    unmatched: int = 0
    extra: torch.Generator = field(init=False)

    def __post_init__(self):
        self.extra = torch.Generator().manual_seed(derive_seed(self.seed, "impl/extra"))

    def fresh(self) -> "Tape":
        """The same draws, from the start (one tape per run: the user's, each mistake's)."""
        return Tape(self.draws, self.seed)

    def next(self, shape: Sequence[int]) -> torch.Tensor:
        """The next draw reshaped to ``shape`` if it has as many values, else one from the extra stream."""
        n = math.prod(shape)
        if self.position < len(self.draws) and self.draws[self.position][1].numel() == n:
            self.position += 1
            return self.draws[self.position - 1][1].reshape(tuple(shape)).clone()
        self.unmatched += 1
        return torch.randn(tuple(shape), generator=self.extra)

    def count(self, role: str) -> int:
        return sum(r == role for r, _ in self.draws)

    @property
    def total(self) -> int:
        return len(self.draws)


def _role() -> str:
    """The role of a loop's draw: the name of the function that called `randn` (two frames up)."""
    return ROLES.get(sys._getframe(2).f_code.co_name, "other")


@contextmanager
def _loop_randn(draw: Callable[[tuple[int, ...], Sequence[torch.Generator], object], torch.Tensor]) -> Iterator[None]:
    with ExitStack() as stack:
        for module in LOOP_MODULES:
            stack.enter_context(patched(module, "randn", draw))
        yield


@contextmanager
def recording(seed: int) -> Iterator[Tape]:
    """Inside the block the harness's loops draw as usual and every draw is kept, in order, on the tape."""
    tape = Tape([], seed)
    original = sampling.randn

    def draw(shape, gens, device="cpu"):
        x = original(shape, gens, device)
        tape.draws.append((_role(), x.detach().cpu().clone()))
        return x

    with _loop_randn(draw):
        yield tape


@contextmanager
def serving(tape: Tape, skip: Callable[[str, int, int], bool] | None = None) -> Iterator[Tape]:
    """Inside the block the harness's loops draw from ``tape`` in call order; a draw for which
    skip(role, k, n) holds (the k-th of the n draws of that role on the tape) is zero and takes nothing."""
    taken: dict[str, int] = {}

    def draw(shape, gens, device="cpu"):
        role = _role()
        k = taken[role] = taken.get(role, -1) + 1
        full = (len(gens), *shape)
        if skip is not None and skip(role, k, tape.count(role)):
            return torch.zeros(full, device=device)
        return tape.next(full).to(device)

    with _loop_randn(draw):
        yield tape


@contextmanager
def replaying(tape: Tape) -> Iterator[Tape]:
    """Inside the block ``torch.randn`` and ``torch.randn_like`` without an explicit generator return the
    tape's draws in call order (in the asked dtype and device); both are restored afterwards, also after an error."""
    randn = torch.randn

    def replay_randn(*size, generator=None, out=None, dtype=None, device=None, **kwargs):
        if generator is not None or out is not None:
            return randn(*size, generator=generator, out=out, dtype=dtype, device=device, **kwargs)
        shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        return tape.next(tuple(int(s) for s in shape)).to(device=device, dtype=dtype or torch.get_default_dtype())

    def replay_randn_like(input, *, dtype=None, device=None, **kwargs):
        return tape.next(tuple(input.shape)).to(device=device or input.device, dtype=dtype or input.dtype)

    with patched(torch, "randn", replay_randn), patched(torch, "randn_like", replay_randn_like):
        yield tape
