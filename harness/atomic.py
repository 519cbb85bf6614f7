"""Atomic writes: a reader (or a parallel pytest-xdist worker) never sees half a file or folder, and a Ctrl-C
leaves the earlier files or the new ones, never a mix; and a Ctrl-C sent on purpose reaches a child process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


def hear_sigint() -> None:
    """For a child process before it starts (``preexec_fn``): SIGINT's default action, so that Python turns
    it into KeyboardInterrupt. A shell without job control starts background commands with SIGINT ignored,
    and children inherit that: a Ctrl-C sent on purpose (the GPU check's time box, the interrupted-write
    tests) would go unheard."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def hold_interrupts() -> Iterator[None]:
    """Hold off Ctrl-C (SIGINT) until the block ends, then deliver it: a commit of several renames completes."""
    held: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:  # no Python handler to swap
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; on success rename each over its path (os.replace), with
    Ctrl-C held off from the first rename to the last, so files that belong together change together."""
    paths = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            tmps.append(Path(tmp))
        yield tmps
        with hold_interrupts():
            for tmp, path in zip(tmps, paths):
                os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
                os.replace(tmp, path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path`` (os.replace)."""
    with atomic_paths(path) as (tmp,):
        yield tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def build_dir_once(path: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Make the folder ``path`` with ``build(tmp_dir)`` unless it exists; atomic under races.

    The folder is built in a temporary sibling and renamed into place; if another process won the
    race, its folder is kept and ours discarded, so readers only ever see a complete folder.
    """
    path = Path(path)
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        build(tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def replace_dir(src: Path, dest: Path) -> None:
    """Put the folder ``src`` in the place of ``dest`` (removing an earlier ``dest``), with Ctrl-C held off
    until the earlier one is gone: ``dest`` is never missing, half removed or left beside a stray copy."""
    with hold_interrupts():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
        if dest.exists():
            os.rename(dest, old)  # over the empty folder old
        os.rename(src, dest)
        shutil.rmtree(old)
