"""Hostile: forward turns off the time limit's alarm and never returns (the sandbox's wall clock stops it)."""

import signal


def forward(im, t):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    while True:
        pass
