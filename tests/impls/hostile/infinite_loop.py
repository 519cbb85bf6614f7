"""Hostile: forward never returns (the per-call time limit stops it)."""


def forward(im, t):
    while True:
        pass
