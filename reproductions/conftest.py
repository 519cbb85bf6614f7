"""Parametrize the reproduction cases over the registry: one case per (section, backend)."""

from harness.runner import cases  # default: the embedded backends; --backend deepfloyd on a GPU runner


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        wanted = cases(metafunc.config.getoption("--backend") or None)
        metafunc.parametrize("case", wanted, ids=[f"{sid}-{b}" for sid, b in wanted])
