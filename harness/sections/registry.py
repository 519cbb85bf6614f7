"""The registry: one `Section` per writeup section. The CLI, reproductions, benchmarks and the report
read it; none of them knows how a section is computed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from harness.errors import UnknownName
from harness.outputs import Outputs
from harness.seeding import DEFAULT_SEED, generators


@dataclass
class RunContext:
    """Everything a section run may use: backend, device, seed, parameters and user inputs.

    image/mask/prompt are a user's own inputs (CLI ``--image/--mask/--prompt``); None means the
    section's defaults. ``gens(stream, n)`` gives one generator per image for a named stream.
    """

    backend_name: str
    device: str = "cpu"
    seed: int = DEFAULT_SEED
    params: dict[str, Any] = field(default_factory=dict)
    image: torch.Tensor | None = None
    image_meta: dict[str, str] | None = None  # the user image's source and the shape it was loaded in
    mask: torch.Tensor | None = None
    prompt: str | None = None
    progress: bool = False

    def backend(self):
        """The loaded backend (memoised per process); raises WeightsUnavailable if it cannot load."""
        from harness.backends import get_backend

        return get_backend(self.backend_name, self.device)

    def gens(self, stream: str, n: int) -> list[torch.Generator]:
        return generators(self.seed, stream, n)


@dataclass(frozen=True)
class Relation:
    """A relation between a case's metrics that makes it a reproduction, e.g. one-step PSNR above blur.

    backends: where it must hold (trained models); None means every backend.
    """

    text: str
    holds: Callable[[Mapping[str, float]], bool]
    backends: tuple[str, ...] | None = None

    def applies_to(self, backend: str) -> bool:
        return self.backends is None or backend in self.backends


@dataclass(frozen=True)
class Section:
    """A writeup section: ``run(ctx) -> Outputs`` with the writeup's parameters as defaults.

    inputs: the user inputs it accepts (``"image"``, ``"mask"``, ``"prompt"``).
    """

    id: str
    title: str
    part: str
    backends: tuple[str, ...]
    params: Mapping[str, Any]
    run: Callable[[RunContext], Outputs]
    inputs: tuple[str, ...] = ()
    relations: tuple[Relation, ...] = ()
    description: str = ""


SECTIONS: dict[str, Section] = {}


def register(section: Section) -> Section:
    if section.id in SECTIONS:
        raise ValueError(f"section {section.id} registered twice")
    SECTIONS[section.id] = section
    return section


def get_section(section_id: str) -> Section:
    if section_id not in SECTIONS:
        raise UnknownName(f"unknown section {section_id!r}; valid sections: {', '.join(SECTIONS)}")
    return SECTIONS[section_id]


def run_section(section: Section, ctx: RunContext) -> Outputs:
    """Run with the section's parameters, overlaid by the backend's (`backend_params`), then by ctx.params;
    records seed, backend and params."""
    unknown = set(ctx.params) - set(section.params)
    if unknown:
        raise UnknownName(
            f"unknown parameter(s) {sorted(unknown)} for {section.id}; valid: {sorted(section.params)}"
        )
    if ctx.backend_name not in section.backends:
        raise UnknownName(
            f"section {section.id} does not run on backend {ctx.backend_name!r}; "
            f"valid backends: {', '.join(section.backends)}"
        )
    from harness.backends import backend_params

    ctx.params = {**section.params, **backend_params(ctx.backend_name).get(section.id, {}), **ctx.params}
    with torch.inference_mode():
        out = section.run(ctx)
    out.images = {k: v.clone() for k, v in out.images.items()}  # plain tensors, editable by callers
    out.animations = {k: v.clone() for k, v in out.animations.items()}
    out.meta = {"section": section.id, "backend": ctx.backend_name, "seed": ctx.seed,
                "params": _jsonable(ctx.params), **out.meta}
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
