"""Parametrize reproduction cases over the registry: one case per (section, backend)."""

import pytest

from harness.sections import SECTIONS

DEFAULT_BACKENDS = ("tiny-if", "mnist")


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    wanted = metafunc.config.getoption("--backend") or DEFAULT_BACKENDS
    part = getattr(metafunc.module, "PART", None)
    cases = [(s.id, b) for s in SECTIONS.values() if s.part == part for b in s.backends if b in wanted]
    metafunc.parametrize("case", cases, ids=[f"{sid}-{b}" for sid, b in cases])
