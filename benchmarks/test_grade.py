"""check-impl on a class: the cost per notebook in a batch of N (`harness.impl.batch`: N sandboxes, the
cores' count at a time, every reference computed once) against N single runs (`python -m harness check-impl
FILE`, a process each, each computing its references), on tiny-if at the default stride, every section.
The notebooks are tests/impls/course.py, N copies that differ by a comment (so that none is skipped as
unchanged). One round each: a batch of 20 is minutes on a 2-core CPU. Slow, so deselected by default:

    .venv/bin/python -m pytest benchmarks/test_grade.py -m slow --benchmark-enable
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.conftest import timed
from harness.impl.batch import Options, grade

CLASS_SIZE = 20
COURSE = Path(__file__).parents[1] / "tests" / "impls" / "course.py"


@pytest.mark.slow
def test_a_batch_against_single_runs(benchmark, tmp_path):
    n = CLASS_SIZE if not benchmark.disabled else 2
    klass = tmp_path / "class"
    klass.mkdir()
    for i in range(n):
        (klass / f"student{i:02d}.py").write_text(f"# student {i}\n{COURSE.read_text()}")
    files = sorted(klass.iterdir())

    def singles() -> None:
        for i, f in enumerate(files):
            subprocess.run([sys.executable, "-m", "harness", "check-impl", str(f), "--out", str(tmp_path / "single" / str(i))],
                           check=True, capture_output=True, cwd=Path(__file__).parents[1])

    def batch() -> list[dict]:
        return grade([str(klass)], tmp_path / "batch", Options(), force=True, echo=lambda line: None)

    benchmark.group = "check-impl class"
    if benchmark.disabled:
        grades = benchmark(batch)
    else:
        grades = benchmark.pedantic(batch, rounds=1, warmup_rounds=0, iterations=1)
        single_s = timed(singles, "cpu")
        batch_s = benchmark.stats.stats.min
        benchmark.extra_info.update({"notebooks": n, "batch_s_per_notebook": batch_s / n,
                                     "single_s_per_notebook": single_s / n, "single_over_batch": single_s / batch_s})
    assert {r["verdict"] for g in grades for r in g["rows"]} == {"matches the reference"}
