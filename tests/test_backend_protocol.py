"""Adding a backend is one module and one table row: a throwaway backend, defined here and put in the
table for one test, runs every Part A section end to end; the shipped backends meet `Backend`."""

from __future__ import annotations

import pytest

from harness import backends
from harness.backends import BackendSpec, get_backend
from harness.denoisers.backend import Backend, Judge, PartBBackend
from harness.runner import cases, run_case
from harness.sections import get_section
from tests.analytic import ToyBackend


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "toy", BackendSpec(ToyBackend))
    yield "toy"
    get_backend.cache_clear()


def test_a_throwaway_backend_runs_every_part_a_section(toy):
    part_a = [(sid, b) for sid, b in cases(("toy",))]
    assert [sid for sid, _ in part_a] == [s for s, _ in cases(("tiny-if",))] and len(part_a) == 13
    assert isinstance(get_backend(toy), Backend)
    for section_id, backend in part_a:
        out = run_case(section_id, backend)
        assert out.meta["backend"] == "toy" and out.images, section_id
        assert all(x.shape[-1] == 64 for x in out.images.values()), section_id  # its own image size
        section = get_section(section_id)
        for relation in section.relations:
            if relation.applies_to(backend):  # untrained and unjudged: the relations any model must meet
                assert relation.holds(out.metrics), (section_id, relation.text)
    assert not any(r.applies_to("toy") for r in get_section("A1.4").relations)  # they need a trained model


@pytest.mark.parametrize("name", ["tiny-if", "mnist"])
def test_shipped_backends_meet_the_protocol(name):
    backend = get_backend(name)
    assert isinstance(backend, Backend) and backend.name == name
    assert backend.judge is None or isinstance(backend.judge, Judge)
    assert backends.spec(name).judged == (backend.judge is not None)
    assert isinstance(backend, PartBBackend) == ("B" in backends.spec(name).parts)
