"""Hostile: forward prints 1 GB (the sandbox's file-size cap stops it)."""

import sys


def forward(im, t):
    sys.stdout.write("x" * 2**30)
    sys.stdout.flush()
