"""A benchmark session interrupted in its second case still saves the first case's figures
(benchmarks/keep_finished.py), as the GPU check's time box and a user's Ctrl-C need."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.atomic import hear_sigint

ROOT = Path(__file__).resolve().parent.parent

CASES = '''
import time
from pathlib import Path

def test_first(benchmark):
    benchmark(lambda: sum(range(100)))

def test_second(benchmark):
    Path(r"{mark}").write_text("started")
    benchmark.pedantic(time.sleep, args=(600,), rounds=1)  # as the harness's cases: statistics made, then rounds
'''


def test_an_interrupted_benchmark_session_keeps_its_finished_cases(tmp_path):
    mark, results = tmp_path / "second-started", tmp_path / "bench.json"
    (tmp_path / "test_cases.py").write_text(CASES.format(mark=mark))
    # a session of its own, not an xdist worker's (pytest-benchmark saves nothing in one)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "benchmarks.keep_finished",
                             "--benchmark-enable", f"--benchmark-json={results}", str(tmp_path / "test_cases.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=hear_sigint)  # SIGINT heard even where this run's launcher ignores it
    while not mark.exists() and proc.poll() is None:  # the controlled point: the second case has begun
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    saved = json.loads(results.read_text())
    assert [b["name"] for b in saved["benchmarks"]] == ["test_first"], out[-2000:]
    assert saved["benchmarks"][0]["stats"]["rounds"] >= 1
    assert "test_second: no timed round finished; left out of the results" in out
