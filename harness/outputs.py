"""What a section run returns: named images, scalar metrics and the metadata that explains them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Outputs:
    """images: name -> float tensor (C, H, W) or (N, C, H, W) in [-1, 1] (CPU, float32).
    animations: name -> frames (F, N, C, H, W) in [-1, 1], saved as GIFs (not golden-checked: their
    last frame is an image). metrics: name -> float. meta: JSON-serialisable parameters, and under
    "rounding_metrics" the names of the metrics `add_rounding` recorded."""

    images: dict[str, torch.Tensor] = field(default_factory=dict)
    animations: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def add_image(self, name: str, image: torch.Tensor) -> None:
        if name in self.images:
            raise ValueError(f"duplicate output image name {name!r}")
        self.images[name] = image.detach().to("cpu", torch.float32).contiguous()

    def add_animation(self, name: str, frames: torch.Tensor) -> None:
        self.animations[name] = frames.detach().to("cpu", torch.float32).contiguous()

    def add_rounding(self, name: str, value: float) -> None:
        """A metric that measures rounding: the gap between two computations equal in exact arithmetic, or what
        bounds it. The section's relations judge it; goldens record it but do not compare it, since on CUDA it
        changes between processes (A1.9's gap on mnist: 0.071, then 0.122)."""
        self.metrics[name] = value
        self.meta.setdefault("rounding_metrics", []).append(name)
