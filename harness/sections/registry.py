"""The registry: one `Section` per writeup section. The CLI, reproductions, benchmarks and the report
read it; none of them knows how a section is computed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from harness import finite
from harness.errors import UnknownName
from harness.layout import Rows
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

    where: on which backends it must hold: None (every one), "trained" (backends that learned their data),
    "judged" (backends with a judge that reads results), or a tuple of backend names.
    """

    text: str
    holds: Callable[[Mapping[str, float]], bool]
    where: str | tuple[str, ...] | None = None

    def applies_to(self, backend: str) -> bool:
        from harness.backends import spec

        if self.where == "trained":
            return spec(backend).trained
        if self.where == "judged":
            return spec(backend).judged
        return self.where is None or backend in self.where


@dataclass(frozen=True)
class Section:
    """A writeup section: ``run(ctx) -> Outputs`` with the writeup's parameters as defaults.

    inputs: the user inputs it accepts (``"image"``, ``"mask"``, ``"prompt"``).
    by_backend: backend name -> the parameters it changes on that backend (`params_for`).
    layout: fills the report's `Rows` from the image names ``run`` writes (written next to ``run``); None
    shows every image under "other outputs".
    It runs on every backend whose table row lists its part (`backends`).
    """

    id: str
    title: str
    part: str
    params: Mapping[str, Any]
    run: Callable[[RunContext], Outputs]
    inputs: tuple[str, ...] = ()
    relations: tuple[Relation, ...] = ()
    by_backend: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layout: Callable[[Rows], None] | None = None

    @property
    def backends(self) -> tuple[str, ...]:
        from harness.backends import backends_for

        return backends_for(self.part)

    def params_for(self, backend: str) -> dict[str, Any]:
        """The section's parameters on ``backend``: its own, overlaid by what it changes there."""
        return {**self.params, **self.by_backend.get(backend, {})}


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
    """Run with the section's parameters on the backend (`Section.params_for`), overlaid by ctx.params;
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
    ctx.params = {**section.params_for(ctx.backend_name), **ctx.params}
    with torch.inference_mode(), finite.watching() as watch:
        out = section.run(ctx)
    case = f"{section.id} on {ctx.backend_name}"
    watch.check(case)
    for name, x in out.images.items():
        if not torch.isfinite(x).all():
            raise finite.NonFiniteSample(f"{case}: image {name!r} holds NaN/Inf; nothing was saved")
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
