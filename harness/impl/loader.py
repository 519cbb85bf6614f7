"""The user's file as a module, never modified: its code (`source`: a .py file as it is, a notebook's
definitions only; a syntax error is one line naming its line, and a notebook's its cell) run in a fresh module
whose namespace first holds the course notebook's globals, so its top-level code and its functions find
``stage_1``, ``alphas_cumprod``, ... as the notebook's cells do.

Imports: a module the course uses only for display or in Colab that is not installed here, and torchvision
where it cannot be imported, get a stand-in (`standins`; the table's "setup" row says so); any other module
that is not installed is a one-line error naming it and the fix. The names the course notebook's first cell
imports (`COURSE_IMPORTS`: torch, np, media, TF) are bound first, as that cell binds them. A .py file's top level runs as it is (it may be anyone's module); when
it raises, the line says to pass the notebook itself or guard the setup.

Every piece of user code (the top level, each function call) runs in `user_code`: CUDA and fp16 on the
backend (`devicemap`), the global RNG seeded for that call and restored afterwards, and a time limit, in any
thread (`_limit`). An exception becomes a `UserCodeError`: one line naming the file's line (a notebook's cell
and line), with the traceback kept for the report.
"""

from __future__ import annotations

import builtins
import ctypes
import functools
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
from harness.impl import standins
from harness.impl.calling import ImplError
from harness.impl.devicemap import on_backend
from harness.impl.source import Source
from harness.seeding import derive_seed

_names = itertools.count()
COURSE_IMPORTS = {"torch": "torch", "np": "numpy", "media": "mediapy", "TF": "torchvision.transforms.functional"}
TOP_LEVEL_HINT = ("; a notebook's setup (loading DeepFloyd, embeddings, displays) cannot run here: pass the .ipynb "
                  "itself (only its definitions run) or put the setup under if __name__ == '__main__':")


class UserCodeError(ImplError):
    """The user's code raised or ran too long; ``trace`` is its traceback, kept for the report."""

    def __init__(self, message: str, trace: str = ""):
        super().__init__(message)
        self.trace = trace


class TimeLimit(BaseException):
    """Raised inside user code when its time limit passes (a BaseException: user code rarely catches those)."""


def resolve(target: str) -> Path:
    """A Python file or notebook, or an importable module's file (``pkg.my_proj5``)."""
    path = Path(target)
    if path.is_file():
        return path
    spec = None if path.suffix in (".py", ".ipynb") or "/" in target else importlib.util.find_spec(target)
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise BadValue(f"no file or module {target!r}: pass the path of your notebook (.ipynb) or .py file, or an "
                       f"importable module name")
    return Path(spec.origin)


def load(source: Source, namespace: dict[str, Any], device: torch.device, dtype: torch.dtype, seed: int,
         time_limit: float) -> tuple[types.ModuleType, list[str]]:
    """Run the file's code in a module that already holds ``namespace`` and `COURSE_IMPORTS`; the module, and
    the modules that got a stand-in (a course import's only if the code reads its name)."""
    module = types.ModuleType(f"harness_impl_user_{next(_names)}")
    module.__file__ = str(source.path)
    module.__dict__.update(namespace)
    stand_ins: list[str] = []
    used, course = _names_read(source.code), []
    for alias, name in COURSE_IMPORTS.items():
        got: list[str] = []
        module.__dict__[alias] = functools.reduce(getattr, name.split(".")[1:], _importer(got)(name))
        course += got if alias in used else []
    module.__dict__["__builtins__"] = {**vars(builtins), "__import__": _importer(stand_ins)}
    sys.modules[module.__name__] = module  # dataclasses look their module up there while the file runs
    try:
        with user_code(device, dtype, seed, time_limit, f"{source.path.name} (its top level)", source,
                       "" if source.notebook else TOP_LEVEL_HINT):
            exec(source.code, module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module, list(dict.fromkeys(stand_ins + course))


def _names_read(code: types.CodeType) -> set[str]:
    """The global and attribute names the code, and every function in it, reads."""
    nested = (c for c in code.co_consts if isinstance(c, types.CodeType))
    return set(code.co_names).union(*map(_names_read, nested))


def _importer(stand_ins: list[str]):
    """``__import__`` for the user's code: torchvision where it cannot be imported, and a missing display-only
    module, get their `standins` (the name appended to ``stand_ins``); any other missing module raises naming
    it and the fix."""
    real = builtins.__import__

    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and standins.kind(name) == "torchvision" and not standins.torchvision_importable():
            stand_ins.append(name)
            return standins.stand_in(name, fromlist)
        try:
            return real(name, globals, locals, fromlist, level)
        except ModuleNotFoundError as e:
            if level == 0 and standins.kind(name) == "display":
                stand_ins.append(name)
                return standins.stand_in(name, fromlist)
            raise ModuleNotFoundError(f"no module named {e.name!r} here: install it (pip install {e.name}), or drop "
                                      f"the import if your course functions do not use it", name=e.name) from None

    return guarded


@contextmanager
def user_code(device: torch.device, dtype: torch.dtype, seed: int, time_limit: float, what: str,
              source: Source, hint: str = "") -> Iterator[None]:
    """Run user code: on the backend's device and dtype, its global RNG seeded from (seed, what) and restored,
    under ``time_limit`` seconds; its exceptions become one-line `UserCodeError`s (``hint`` appended)."""
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
        raise UserCodeError(f"{what} raised {type(e).__name__}: {_first_line(e)}{_where(e, source)}{hint}",
                            _trace(e, source)) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else "(no message)"


def _user_frames(e: BaseException, source: Source) -> list[traceback.FrameSummary]:
    """The traceback's frames from the first in the user's file on, a notebook's named by cell and line."""
    frames = traceback.extract_tb(e.__traceback__)
    first = next((i for i, f in enumerate(frames) if Path(f.filename) == source.path), 0)
    return [_named(f, source) for f in frames[first:]]


def _named(frame: traceback.FrameSummary, source: Source) -> traceback.FrameSummary:
    """A frame in a notebook as 'my_proj5.ipynb cell 7', its line in that cell, and the line's text."""
    if Path(frame.filename) != source.path or not source.notebook:
        return frame
    cell, line = source.cell_at(frame.lineno)
    return traceback.FrameSummary(f"{source.path.name} cell {cell.number}", line, frame.name,
                                  line=source.text(frame.lineno))


def _trace(e: BaseException, source: Source) -> str:
    """The traceback from the first frame in the user's file on (the harness's frames above it left out)."""
    return "".join(["Traceback (most recent call last):\n", *traceback.format_list(_user_frames(e, source)),
                    *traceback.format_exception_only(type(e), e)])


def _where(e: BaseException, source: Source) -> str:
    """' (my_proj5.py line 42)' or ' (my_proj5.ipynb cell 7 line 12)': the deepest frame in the user's file."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == source.path]
    return f" ({source.where(lines[-1])})" if lines else ""


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
