"""Same seed, other process: bitwise-equal outputs on CPU (thread count fixed); caches are race-free."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from harness.atomic import build_dir_once
from harness.runner import run_case

RUN = """
import sys, numpy as np
from harness.runner import run_case
from harness.devices import fix_threads
fix_threads()  # the same count as this process (which pytest's conftest set), also under pytest-xdist
out = run_case(sys.argv[1], "tiny-if", seed=int(sys.argv[2]))
np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.images.items()})
"""


def _run_in_process(section: str, seed: int, path: Path) -> dict[str, np.ndarray]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": str(seed)}  # hash seed varies on purpose
    res = subprocess.run([sys.executable, "-c", RUN, section, str(seed), str(path)], capture_output=True,
                         text=True, timeout=1200, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_a_case_is_bitwise_equal_across_processes(tmp_path):
    a = _run_in_process("A1.4", 180, tmp_path / "a.npz")
    b = _run_in_process("A1.4", 180, tmp_path / "b.npz")
    here = {k: v.numpy() for k, v in run_case("A1.4", "tiny-if", seed=180).images.items()}
    assert a.keys() == b.keys() == here.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], here[k]), k
    other = {k: v.numpy() for k, v in run_case("A1.4", "tiny-if", seed=181).images.items()}
    assert not np.array_equal(other["iterative"], here["iterative"])


def test_parallel_builders_see_one_complete_folder(tmp_path):
    """pytest-xdist workers building the same cache folder at once: one wins, nobody sees half of it."""
    def build(tmp: Path) -> None:
        (tmp / "part1").write_text("x" * 100000)
        torch.randn(1000, generator=torch.Generator().manual_seed(0))  # some work between the two files
        (tmp / "part2").write_text("done")

    target = tmp_path / "cache" / "model"
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: build_dir_once(target, build), range(8)))
    assert all(r == target for r in results)
    assert sorted(p.name for p in target.iterdir()) == ["part1", "part2"]
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # no temporary leftovers
