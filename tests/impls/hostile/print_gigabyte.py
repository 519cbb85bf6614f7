"""Hostile: forward prints 1 GB, a megabyte at a time (the sandbox's file-size cap stops it)."""

import sys


def forward(im, t):
    for _ in range(1024):
        sys.stdout.write("x" * 2**20)
    sys.stdout.flush()
