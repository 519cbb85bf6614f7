"""Hostile: forward tries to write a file outside its folder: beside the class's submissions (found by their
canary), in the home and work folders, the root and its folder's parent; it raises saying whether a write
escaped."""

import os
from pathlib import Path

NAME = "harness-hostile-escaped.txt"
ROOTS = ("/tmp", "/work", "/root", "/home")


def forward(im, t):
    targets = [Path(r) for r in ROOTS[1:]] + [Path("/"), Path.cwd().parent]
    for root in ROOTS:
        for folder, subs, files in os.walk(root):
            if folder.count(os.sep) - root.count(os.sep) >= 5:
                subs[:] = []
            if "sibling_canary.txt" in files:
                targets.append(Path(folder))
    for folder in targets:
        try:
            (folder / NAME).write_text("escaped")
        except OSError:
            continue
        raise RuntimeError(f"escaped: wrote {folder / NAME}")
    raise PermissionError(f"no write outside its folder succeeded ({len(targets)} folders tried)")
