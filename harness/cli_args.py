"""What every command line of the harness shares: a parser whose errors are one line with exit status 2
(argparse prints its usage block first), and the checks of values that argparse cannot make alone."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from harness.errors import BadValue


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser (sub-commands too), its errors as ``error: PROG: MESSAGE (PROG --help)``."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def positive(text: str) -> int:
    """argparse type: a whole number >= 1 (a count of samples or steps, a stride, an epoch)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count: pass 1 or more")
    return value


def number(text: str) -> float:
    """argparse type: a finite number (a guidance scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: pass one such as 5") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number: pass one such as 5")
    return value


def seconds(text: str) -> float:
    """argparse type: a time in seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} s is no time: pass a number of seconds above 0")
    return value


def folder(path: str | Path, flag: str = "--out") -> Path:
    """An output folder (made later if missing), never an existing file."""
    if Path(path).exists() and not Path(path).is_dir():
        raise BadValue(f"{flag} {path} is a file: pass a folder (it is created if missing)")
    return Path(path)


def file(path: str | Path, flag: str = "--out") -> Path:
    """An output file, whose folder exists or can be made, never an existing folder."""
    if Path(path).is_dir():
        raise BadValue(f"{flag} {path} is a folder: pass a file name, e.g. {Path(path) / 'result.json'}")
    return Path(path)
