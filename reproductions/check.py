"""What every reproduction case checks: it runs, its relations hold, and it matches its golden."""

from pathlib import Path

import pytest

from harness import golden
from harness.errors import WeightsUnavailable
from harness.runner import run_case, save_outputs
from harness.sections import get_section


def check_case(case: tuple[str, str], device: str, update_golden: bool) -> None:
    section_id, backend = case
    try:
        out = run_case(section_id, backend, device=device)
    except WeightsUnavailable as e:
        pytest.skip(str(e))
    save_outputs(out, Path("out") / "pytest" / device / section_id / backend)
    failed = [r.text for r in get_section(section_id).relations if r.applies_to(backend) and not r.holds(out.metrics)]
    assert not failed, f"{section_id} on {backend}: relations do not hold: {failed}; metrics {out.metrics}"
    if update_golden:
        golden.write(out, backend, device, dtype="float32" if device == "cpu" else "float16")
    else:
        golden.compare(out, backend, device)
