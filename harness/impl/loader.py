"""The user's file as a module, never modified: its source compiled as it is (a syntax error is one line with
its line number) and run in a fresh module whose namespace first holds the course notebook's globals, so its
top-level code and its functions find ``stage_1``, ``alphas_cumprod``, ... as the notebook's cells do.

Every piece of user code (the top level, each function call) runs in `user_code`: CUDA and fp16 on the
backend (`devicemap`), the global RNG seeded for that call and restored afterwards, and a time limit, in
any thread (`_limit`). An
exception becomes a `UserCodeError`: one line naming the file's line, with the traceback kept for the report.
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import signal
import sys
import threading
import traceback
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from harness.errors import BadValue
from harness.impl.calling import ImplError
from harness.impl.devicemap import on_backend
from harness.seeding import derive_seed

_names = itertools.count()


class UserCodeError(ImplError):
    """The user's code raised or ran too long; ``trace`` is its traceback, kept for the report."""

    def __init__(self, message: str, trace: str = ""):
        super().__init__(message)
        self.trace = trace


class TimeLimit(BaseException):
    """Raised inside user code when its time limit passes (a BaseException: user code rarely catches those)."""


def resolve(target: str) -> Path:
    """A Python file, or an importable module's file (``pkg.my_proj5``)."""
    path = Path(target)
    if path.is_file():
        return path
    spec = None if path.suffix == ".py" or "/" in target else importlib.util.find_spec(target)
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise BadValue(f"no file or module {target!r}: pass the path of your .py file (a notebook: File > "
                        f"Download > .py) or an importable module name")
    return Path(spec.origin)


def compile_file(path: Path) -> types.CodeType:
    """The file's code, compiled as it is; a syntax error is one line with its line number."""
    try:
        return compile(path.read_text(encoding="utf-8"), str(path), "exec")
    except SyntaxError as e:
        raise ImplError(f"{path.name} line {e.lineno}: syntax error: {e.msg}; fix it (notebook exports: remove "
                        f"the !pip and %magic lines)") from None


def load(path: Path, code: types.CodeType, namespace: dict[str, Any], device: torch.device, dtype: torch.dtype,
         seed: int, time_limit: float) -> types.ModuleType:
    """Run the file's ``code`` in a module that already holds ``namespace``."""
    module = types.ModuleType(f"harness_impl_user_{next(_names)}")
    module.__file__ = str(path)
    module.__dict__.update(namespace)
    sys.modules[module.__name__] = module  # dataclasses look their module up there while the file runs
    try:
        with user_code(device, dtype, seed, time_limit, f"{path.name} (its top level)", path):
            exec(code, module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


@contextmanager
def user_code(device: torch.device, dtype: torch.dtype, seed: int, time_limit: float, what: str,
              path: Path) -> Iterator[None]:
    """Run user code: on the backend's device and dtype, its global RNG seeded from (seed, what) and restored,
    under ``time_limit`` seconds; its exceptions become one-line `UserCodeError`s."""
    try:
        with torch.random.fork_rng(devices=[]), on_backend(device, dtype), _limit(time_limit):
            torch.manual_seed(derive_seed(seed, f"impl/global/{what}"))
            yield
    except TimeLimit:
        raise UserCodeError(f"{what} ran past the time limit of {time_limit:g} s: look for a loop that does not "
                            f"end, or pass a larger --time-limit") from None
    except (ImplError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise UserCodeError(f"{what} raised {type(e).__name__}: {_first_line(e)}{_where(e, path)}", _trace(e, path)) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else "(no message)"


def _trace(e: BaseException, path: Path) -> str:
    """The traceback from the first frame in the user's file on (the harness's frames above it left out)."""
    frames = traceback.extract_tb(e.__traceback__)
    first = next((i for i, f in enumerate(frames) if Path(f.filename) == path), 0)
    return "".join(["Traceback (most recent call last):\n", *traceback.format_list(frames[first:]),
                    *traceback.format_exception_only(type(e), e)])


def _where(e: BaseException, path: Path) -> str:
    """' (my_proj5.py line 42)': the deepest frame of the traceback in the user's file."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
    return f" ({path.name} line {lines[-1]})" if lines else ""


@contextmanager
def _limit(seconds: float) -> Iterator[None]:
    """TimeLimit raised in the running thread after ``seconds``, whichever thread runs the user's code.

    The main thread uses SIGALRM: its handler also interrupts a blocking call (``time.sleep``, a read), which an
    asynchronous exception waits out. Any other thread (a pytest plugin's, a GUI's worker) gets TimeLimit as an
    asynchronous exception (`PyThreadState_SetAsyncExc`) from a `threading.Timer`, raised at the next bytecode
    it runs (`_async_limit`)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        with _async_limit(seconds):
            yield
        return

    def expire(signum, frame):
        raise TimeLimit()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _async_limit(seconds: float) -> Iterator[None]:
    """TimeLimit set on this thread by a timer after ``seconds``; never after the block: the timer sets it only
    under the lock while the block runs, and on exit the block, under that lock, marks itself done and clears
    an exception the timer set that has not been raised yet (set in the race with the block's last bytecodes)."""
    ident, lock, state = threading.get_ident(), threading.Lock(), {"done": False, "fired": False}

    def expire() -> None:
        with lock:
            if not state["done"]:
                _set_async_exc(ident, TimeLimit)
                state["fired"] = True

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
        timer.cancel()
        if state["fired"]:
            _set_async_exc(ident, None)


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` asynchronously in thread ``ident`` (None: clear a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc))
