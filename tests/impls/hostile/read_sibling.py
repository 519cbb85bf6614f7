"""Hostile: forward looks for the other submissions (beside them lies sibling_canary.txt) and reads them; it
raises saying whether it saw one."""

import os
from pathlib import Path


def forward(im, t):
    for root in ("/tmp", "/work", "/root", "/home"):
        for folder, subs, files in os.walk(root):
            if folder.count(os.sep) - root.count(os.sep) >= 5:
                subs[:] = []
            if "sibling_canary.txt" in files:
                text = (Path(folder) / "sibling_canary.txt").read_text()
                raise RuntimeError(f"escaped: read a sibling's folder {folder}: {text[:40]}")
    raise FileNotFoundError("no sibling submission visible")
