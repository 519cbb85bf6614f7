"""Every writeup section as a seeded case: it runs, its relations hold, and it matches its golden
(deepfloyd-random, random weights at the real size, keeps none: `harness.backends.has_goldens`).

pytest reproductions -k A1.7             # one section
pytest reproductions --backend deepfloyd --device cuda   # the real IF on a GPU runner
pytest reproductions --update-golden     # rewrite the goldens of the cases that run
pytest reproductions --report out/report # then build the report of this run's outputs

Each case writes its outputs to out/pytest/<device>/<section>/<backend>/ with golden.json, its golden
comparison (what the report shows), before a mismatch fails the test.
"""

from pathlib import Path

import pytest

import torch

from harness import golden
from harness.backends import has_goldens
from harness.devices import out_of_memory
from harness.errors import BackendUnavailable
from harness.report.cases import load_case
from harness.report.layouts import unplaced_images
from harness.runner import record_verdict, run_case, save_outputs
from harness.sections import get_section


def test_reproduces(case, device, request):
    section_id, backend = case
    try:
        out = run_case(section_id, backend, device=device)
    except BackendUnavailable as e:
        pytest.skip(str(e))
    except torch.OutOfMemoryError as e:
        pytest.fail(out_of_memory(e, f"running {section_id} on {backend}", "run the cases on fewer xdist workers "
                                  "per GPU (-n), or on a GPU with more memory"), pytrace=False)
    where = request.config.getoption("--device")  # the run's, not this xdist worker's cuda:K: one report
    folder = save_outputs(out, Path("out") / "pytest" / where / section_id / backend, device)
    verdict = None
    if has_goldens(backend):  # deepfloyd-random keeps none: its cases check the relations only
        if request.config.getoption("--update-golden"):
            golden.write(out, backend, device)
        verdict = record_verdict(out, folder, device)
    section = get_section(section_id)
    failed = [r.text for r in section.relations if r.applies_to(backend) and not r.holds(out.metrics)]
    assert not failed, f"{section_id} on {backend}: relations do not hold: {failed}; metrics {out.metrics}"
    unplaced = unplaced_images(load_case(section, backend, folder))
    assert not unplaced, f"{section_id}: its report layout does not place {unplaced}; name them in its layout"
    if verdict is not None:
        verdict.raise_if_failed()
