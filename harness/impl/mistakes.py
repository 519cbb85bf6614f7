"""The common mistakes, each a way to re-run the reference with it (`harness.impl.checks` re-runs them on the
case's tape of draws and compares): a wrong result is diagnosed by what it matches, not guessed from names.

A mistake is a patch of the reference's pieces while it runs (``patch``), draws it leaves out (``skip``:
the user's code makes fewer draws, so the ones it does make are served in the same order), or a flag the
section's reference reads (the forward process, the anagram views, the hybrid's bands).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager

from harness import editing, guides
from harness.impl.devicemap import patched


@dataclass(frozen=True)
class Mistake:
    """name: what the result looks like; skip(role, k, n): reference draws left out (see `replay.serving`)."""

    name: str
    patch: Callable[[], ContextManager] = nullcontext
    skip: Callable[[str, int, int], bool] | None = None


SQRT_MISSING = Mistake("sqrt missing in the forward process: x_t = abar x0 + (1 - abar) eps")
SQRT_MISSING_NOISE = Mistake("sqrt missing on the noise: x_t = sqrt(abar) x0 + (1 - abar) eps")
CFG_AROUND_COND = Mistake(
    "CFG around the conditional estimate: eps_c + gamma (eps_c - eps_u), not eps_u + gamma (eps_c - eps_u)",
    patch=lambda: patched(guides, "cfg", lambda c, u, scale: c + scale * (c - u)))
NO_VARIANCE = Mistake("no variance added (add_variance never called)", skip=lambda role, k, n: role == "step")
NO_LAST_VARIANCE = Mistake("no variance at the last step (the course adds it on the step to t = 0 too)",
                           skip=lambda role, k, n: role == "step" and k == n - 1)
NOT_RENOISED = Mistake(
    "known region not re-noised: x_t <- m x_t + (1 - m) x_orig instead of forward(x_orig, t)",
    patch=lambda: patched(editing, "forward", lambda x0, t, alphas_cumprod, eps: x0),
    skip=lambda role, k, n: role == "renoise")
VIEW_NOT_INVERTED = Mistake("anagram view not inverted: the viewed branch's noise is not flipped or rotated back")
BANDS_SWAPPED = Mistake("bands swapped: low-pass of the near prompt, high-pass of the far one")

LOOP = (NO_VARIANCE, NO_LAST_VARIANCE)  # every strided loop can make these
GUIDED = (CFG_AROUND_COND, *LOOP)
