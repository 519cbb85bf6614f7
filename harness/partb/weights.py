"""Model weights drawn from an explicit generator instead of the global RNG."""

from __future__ import annotations

import torch


def init_weights_(model: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Redraw conv and linear parameters as PyTorch's defaults do, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    but from ``generator``; norms keep their constant init. Build the model inside
    ``torch.random.fork_rng()`` so its constructor leaves the global RNG untouched."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                bound = 1 / torch.nn.init._calculate_fan_in_and_fan_out(m.weight)[0] ** 0.5
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
    return model
