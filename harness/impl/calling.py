"""The user's signature variants, read from the signature and the output, not from a fixed list of names.

Each parameter gets a role from its name (`role`): the image, the mask, t, i_start, the timesteps, the prompt
embeddings (one, or two as ``prompt1_embeds``/``prompt_embeds_2``/``far``/``near`` ..., or both in one
``prompt_embeds`` as a tuple or a dict: `Pair`), the unconditional ones (``uncond_prompt_embeds``,
``uncond_embeds``), the CFG scale, ``display`` (False), ``alphas_cumprod``, ``stage_1``, the hybrid filter's
kernel_size and sigma, ``device``, an anagram's ``view``/``transform`` (`ViewArg`). Without an ``i_start`` the loop is given the timesteps from i_start on.

The output is read back (`read_output`) as an (N, C, H, W) tensor in the model's data range: NCHW numpy or
torch (the course's ``image.cpu().numpy()``), CHW, or HWC in [0, 1] (the course's display form x / 2 + 0.5);
a tuple or list gives its first image ((clean, intermediates), (upright, flipped)).
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable

import numpy as np
import torch

from harness.errors import HarnessError

ROLE_PATTERNS = (  # (role, pattern on the lower-case parameter name); the first match wins
    ("display", r"display|show|verbose|plot|save|vis|debug"),
    ("view", r"^view(_?name|_?fn)?$|^transform$"),
    ("uncond", r"uncond|negative|neg_|null|empty"),
    ("mask", r"mask"),
    ("i_start", r"start"),
    ("timesteps", r"timesteps|^ts$|strided|schedule"),
    ("scale", r"scale|gamma|guidance|cfg|^w$"),
    ("alphas_cumprod", r"alpha|abar"),
    ("unet", r"unet"),
    ("stage_1", r"stage|pipe|model"),
    ("kernel_size", r"kernel|ksize"),
    ("sigma", r"sigma"),
    ("device", r"device"),
    ("prompt", r"prompt|embed|emb|cond|text|^p\d|^c\d|far|near|low|high|upright|flip"),
    ("noise", r"noise$|^eps|epsilon"),
    ("t", r"^t$|^t_?idx$|^t_?index$|^timestep$|^time"),
    ("image", r"im|img|image|^x|sample|latent|orig|input|^z$|noisy"),
)


class ImplError(HarnessError):
    """The user's code cannot be called or read back as given; the message names the fix."""


def role(name: str) -> str | None:
    """A parameter's role from its name; prompts say which of two: "prompt1", "prompt2" or "prompt"."""
    low = name.lower()
    for r, pattern in ROLE_PATTERNS:
        if re.search(pattern, low):
            return _which_prompt(low) if r == "prompt" else r
    return None


def _which_prompt(name: str) -> str:
    if re.search(r"1|far|low|upright", name):
        return "prompt1"
    if re.search(r"2|near|high|flip|down|rot", name):
        return "prompt2"
    return "prompt"


class Pair(tuple):
    """Two prompt embeddings in one argument: unpacked, indexed, or read as a dict whose keys name which
    (a digit 1 / 2, far/low/upright vs near/high/flip, else the order the keys are first read in)."""

    def __new__(cls, first: torch.Tensor, second: torch.Tensor):
        pair = super().__new__(cls, (first, second))
        pair.keys_seen = {}
        return pair

    def __getitem__(self, key: Any):
        if not isinstance(key, str):
            return super().__getitem__(key)
        if key not in self.keys_seen:
            which = _which_prompt(key.lower())
            self.keys_seen[key] = {"prompt1": 0, "prompt2": 1}.get(which, min(len(self.keys_seen), 1))
        return super().__getitem__(self.keys_seen[key])

    def values(self):
        return list(self)


class ViewArg(str):
    """An anagram's view given to a general function's ``view``/``transform`` parameter: its name ("flip",
    "rot90", "rot180"), so ``view == "rot90"`` works, and callable: the view applied (``.invert``: its inverse)."""

    def __new__(cls, view: Any):
        arg = super().__new__(cls, view.name)
        arg.view = view
        return arg

    def __call__(self, x: Any) -> Any:
        return self.view.apply(x)

    def invert(self, x: Any) -> Any:
        return self.view.invert(x)


def bind(fn: Callable, values: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``fn`` from ``values`` (role -> value; "prompts" holds two embeddings).
    A required parameter with no role here is a one-line error naming it."""
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    roles = {name: role(name) for name in params}
    prompts = values.get("prompts")
    for name, p in params.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        r = roles[name]
        if r == "prompt" and prompts is not None:
            kwargs[name] = Pair(*prompts)
        elif r in ("prompt1", "prompt2") and prompts is not None:
            kwargs[name] = prompts[int(r[-1]) - 1]
        elif r in ("prompt1", "prompt") and "prompt" in values:
            kwargs[name] = values["prompt"]
        elif r == "display":
            kwargs[name] = False
        elif r in values:
            kwargs[name] = values[r]
        elif p.default is p.empty:
            raise ImplError(f"{fn.__name__}: cannot tell what parameter {name!r} is; name it as the course does "
                            f"({', '.join(sorted(set(values) - {'prompts'}))}, prompt embeddings)")
    if "i_start" in values and "i_start" not in roles.values():
        ts = [n for n, r in roles.items() if r == "timesteps"]
        if ts:  # no i_start: the loop starts at 0, so it gets the timesteps from i_start on
            kwargs[ts[0]] = list(values["timesteps"])[values["i_start"]:]
    return kwargs


def read_output(out: Any, like: torch.Tensor, what: str) -> torch.Tensor:
    """The user's output as (N, C, H, W) float32, shaped like ``like``; a wrong shape or a non-finite value
    is a one-line ImplError (a wrong range is a finding of the verdict: `out_of_range`)."""
    if isinstance(out, (tuple, list)) and out and not isinstance(out[0], (int, float)):
        out = out[0]
    if isinstance(out, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(out))
    elif isinstance(out, torch.Tensor):
        x = out.detach()
    else:
        raise ImplError(f"{what} returned {type(out).__name__}: return the image, NCHW numpy in [-1, 1] as the "
                        f"course's image.cpu().numpy(), or HWC in [0, 1]")
    x = x.to("cpu", torch.float32)
    n, c, h, w = like.shape
    hwc = x.dim() >= 3 and x.shape[-1] == c and tuple(x.shape[-3:-1]) == (h, w) and c != h
    if hwc:
        x = (x.movedim(-1, -3) * 2 - 1)  # the course's display form x / 2 + 0.5 undone
    if x.dim() == 2 and c == 1:
        x = x[None]
    if x.dim() == 3:
        x = x[None]
    if tuple(x.shape) != tuple(like.shape):
        raise ImplError(f"{what} returned shape {tuple(out.shape)}: expected {tuple(like.shape)} (NCHW) or "
                        f"{(h, w, c)} (HWC in [0, 1])")
    if not torch.isfinite(x).all():
        raise ImplError(f"{what} returned NaN/Inf: look for a division by sqrt(1 - abar) at t = 0 or a wrong index")
    return x


def out_of_range(outs: list[torch.Tensor], data_range: tuple[float, float]) -> str | None:
    """A one-line finding if the outputs leave the data range by more than a noisy x_t does (5 spans)."""
    lo, hi = data_range
    low, high = min(float(x.min()) for x in outs), max(float(x.max()) for x in outs)
    margin = 5 * max(hi - lo, 1.0)
    if low < lo - margin or high > hi + margin:
        return (f"values in [{low:.3g}, {high:.3g}], expected about [{lo:g}, {hi:g}]: return the image itself "
                f"(not scaled to 0..255, not the noise), or look for a loop that diverges")
    return None
