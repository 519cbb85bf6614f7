"""Every writeup section as a seeded case: it runs, its relations hold, and it matches its golden.

pytest reproductions -k A1.7             # one section
pytest reproductions --backend deepfloyd --device cuda   # the real IF on a GPU runner
pytest reproductions --update-golden     # rewrite the goldens of the cases that run
"""

from pathlib import Path

import pytest

from harness import golden
from harness.errors import WeightsUnavailable
from harness.runner import run_case, save_outputs
from harness.sections import get_section


def test_reproduces(case, device, request):
    section_id, backend = case
    try:
        out = run_case(section_id, backend, device=device)
    except WeightsUnavailable as e:
        pytest.skip(str(e))
    save_outputs(out, Path("out") / "pytest" / device / section_id / backend)
    failed = [r.text for r in get_section(section_id).relations if r.applies_to(backend) and not r.holds(out.metrics)]
    assert not failed, f"{section_id} on {backend}: relations do not hold: {failed}; metrics {out.metrics}"
    if request.config.getoption("--update-golden"):
        golden.write(out, backend, device)
    else:
        golden.compare(out, backend, device)
