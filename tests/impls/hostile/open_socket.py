"""Hostile: forward opens a network connection (the sandbox has no network)."""

import socket


def forward(im, t):
    socket.create_connection(("1.1.1.1", 53), timeout=5).close()
    raise RuntimeError("escaped: connected to 1.1.1.1")
