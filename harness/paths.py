"""Where the harness keeps what it builds: $HARNESS_CACHE or ~/.cache/diffusion-harness."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    path = Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "diffusion-harness")
    path.mkdir(parents=True, exist_ok=True)
    return path
