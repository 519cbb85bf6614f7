"""Parametrize the reproduction cases over the registry: one case per (section, backend)."""

from harness.runner import EMBEDDED_BACKENDS  # the default; --backend deepfloyd on a GPU runner
from harness.sections import SECTIONS


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        wanted = metafunc.config.getoption("--backend") or EMBEDDED_BACKENDS
        cases = [(s.id, b) for s in SECTIONS.values() for b in s.backends if b in wanted]
        metafunc.parametrize("case", cases, ids=[f"{sid}-{b}" for sid, b in cases])
