"""Hostile: forward forks without end (the sandbox's process cap stops it)."""

import os


def forward(im, t):
    while True:
        os.fork()
