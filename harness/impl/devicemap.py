"""Course code hard-codes the GPU it ran on: ``.cuda()``, ``"cuda"``, ``.half()``, ``torch.float16``. While
the user's code runs (`on_backend`), those mean the backend's device and dtype, so the code runs unchanged on
a CPU-only machine: ``Tensor.cuda`` -> ``.to(device)``, ``Tensor.half`` -> ``.to(dtype)``, and any CUDA device
or float16 dtype given to ``Tensor.to`` or to a tensor factory (``torch.tensor``, ``torch.zeros``, ...) is
replaced. Everything is restored on exit, also after an error."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from functools import wraps
from typing import Any, Callable, Iterator

import torch

FACTORIES = ("tensor", "as_tensor", "zeros", "ones", "full", "empty", "arange", "linspace", "eye", "rand", "randn",
             "randint", "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like", "randint_like")
LOW_PRECISION = (torch.float16, torch.bfloat16)


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """owner.name = value inside the block, the original back afterwards (also after an error)."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


class DeviceMap:
    """Rewrites device and dtype arguments: CUDA -> ``device``; float16/bfloat16 -> ``dtype`` where the
    backend computes in float32 (on a GPU backend in fp16 they stay)."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = torch.device(device), dtype

    def value(self, v: Any) -> Any:
        if isinstance(v, (str, torch.device)):
            try:
                return self.device if torch.device(v).type == "cuda" else v
            except (RuntimeError, TypeError):
                return v
        if isinstance(v, torch.dtype) and v in LOW_PRECISION and self.dtype not in LOW_PRECISION:
            return self.dtype
        return v

    def args(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return tuple(self.value(a) for a in args), {k: self.value(v) for k, v in kwargs.items()}

    def factory(self, fn: Callable) -> Callable:
        @wraps(fn)
        def mapped(*args: Any, **kwargs: Any):
            kwargs = {k: self.value(v) if k in ("device", "dtype") else v for k, v in kwargs.items()}
            return fn(*args, **kwargs)
        return mapped


@contextmanager
def on_backend(device: torch.device | str, dtype: torch.dtype) -> Iterator[None]:
    """Inside the block, the user's CUDA and fp16 requests land on ``device`` and ``dtype``."""
    m = DeviceMap(device, dtype)
    to = torch.Tensor.to

    def tensor_to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        args, kwargs = m.args(args, kwargs)
        return to(self, *args, **kwargs)

    def cuda(self: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return to(self, m.device)

    def half(self: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return to(self, m.value(torch.float16))

    with ExitStack() as stack:
        for name, value in (("to", tensor_to), ("cuda", cuda), ("half", half)):
            stack.enter_context(patched(torch.Tensor, name, value))
        for name in FACTORIES:
            stack.enter_context(patched(torch, name, m.factory(getattr(torch, name))))
        yield
