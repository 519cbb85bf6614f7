"""How a Part B training run is executed, and the command-line flags that choose it (the CLI's `train`,
`python -m harness.gpu.partb`, the benchmarks' options): one list, kept free of torch so that building
the CLI's parser stays cheap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Speed:
    """How a run is executed, not what it computes (kept out of the recipe and its checkpoints; benchmarks
    record it): bf16 autocast of the forward pass, channels_last weights, a torch.compile'd model, the
    step as a CUDA graph (on the CPU the eager step, bitwise the same as without the flag). All off (the
    default) is the reference fp32 eager loop that the shipped checkpoints came from."""

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    graphs: bool = False

    FLAGS = {"bf16": "bf16 autocast of the forward pass", "channels_last": "channels_last weights",
             "compile": "torch.compile the model", "graphs": "on CUDA, each full batch's step replays one CUDA graph"}

    @staticmethod
    def add_flags(add_option: Callable) -> None:
        """--bf16 --channels-last --compile --graphs through ``add_option`` (argparse's add_argument,
        pytest's addoption)."""
        for name, what in Speed.FLAGS.items():
            add_option(f"--{name.replace('_', '-')}", action="store_true", help=f"speed: {what} (not part of the recipe)")

    @classmethod
    def from_flags(cls, get: Callable[[str], bool]) -> Speed:
        """The Speed that the flags read by ``get(name)`` ask for."""
        return cls(**{name: bool(get(name)) for name in cls.FLAGS})
