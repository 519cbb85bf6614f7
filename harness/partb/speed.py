"""How a Part B training run is executed, and the command-line flags that choose it (the CLI's `train`,
`python -m harness.gpu.partb`, the benchmarks' options): one list, kept free of torch so that building
the CLI's parser stays cheap."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable


@dataclass(frozen=True)
class Speed:
    """How a run is executed, not what it computes (kept out of the recipe and its checkpoints; benchmarks
    record it): bf16 autocast of the forward pass, channels_last weights, a torch.compile'd model, the
    step as a CUDA graph (on the CPU the eager step, bitwise the same as without the flag). All off is the
    reference fp32 eager loop; `for_training` decides what a run uses, and checkpoints record it."""

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

    def label(self) -> str:
        """"bf16+channels_last", or "fp32 eager" with every flag off."""
        return "+".join(name for name in self.FLAGS if getattr(self, name)) or "fp32 eager"


# The fastest combination measured on a CPU with bf16 units that keeps the recipe's quality (docs/benchmarks.md,
# "Part B training on a CPU"): 3.2x the fp32 step there; --compile added nothing after a 47 s compile.
CPU_DEFAULT = Speed(bf16=True, channels_last=True)


def for_training(asked: Speed, fp32: bool, device_type: str, bf16_units: Callable[[], str | None]) -> tuple[Speed, str | None]:
    """The Speed a `train` run uses, and a one-line notice or None. ``--fp32`` is the reference loop; no
    flag on a CPU is `CPU_DEFAULT`; no flag on a GPU is fp32 eager (the GPU check chooses its flags).
    bf16 on a CPU without bf16 units (``bf16_units()`` None) would be emulated, slower than fp32: the run
    drops it and says so."""
    if fp32:
        return Speed(), None
    speed = CPU_DEFAULT if device_type == "cpu" and asked == Speed() else asked
    if device_type != "cpu" or not speed.bf16 or bf16_units() is not None:
        return speed, None
    return (replace(speed, bf16=False),
            "this CPU has no bf16 units (oneDNN runs bf16 only emulated): training in float32")
