"""Hostile: forward sends SIGKILL to its parent, then to its whole process group."""

import os
import signal


def forward(im, t):
    os.kill(os.getppid(), signal.SIGKILL)
    os.killpg(0, signal.SIGKILL)
