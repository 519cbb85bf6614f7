"""Part B's model kinds, one name each: the DDPM ones (the course until 2024) and flow matching's (since
2025), with what each kind decides beyond its recipe. No torch here, so the CLI can list them cheaply."""

from __future__ import annotations

from harness.errors import BadValue

DDPM_KINDS = ("denoiser", "time", "class")
FLOW_KINDS = ("pure-noise", "fm-time", "fm-class")  # the course's 1.2.3, 2.2 and 2.5 since 2025
KINDS = DDPM_KINDS + FLOW_KINDS
CLASS_KINDS = ("class", "fm-class")  # trained with a one-hot class, dropped with probability p_uncond
NUM_TS = {"fm-time": 50, "fm-class": 300}  # Euler steps: the notebook's TimeConditionalFM, ClassConditionalFM


def check_kind(model, kind: str) -> None:
    """BadValue unless ``model`` was built for ``kind`` (`train.build_model` records it as ``model.kind``)."""
    built_for = getattr(model, "kind", kind)
    if built_for != kind:
        raise BadValue(f"a {built_for!r} UNet where a {kind!r} one belongs: load a {kind} checkpoint "
                       f"(train one with `python -m harness train {kind}`)")
