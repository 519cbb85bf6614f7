"""Ctrl-C at a controlled point of `golden update`, `train` and `report` (issue 27, item 5). The child runs
``python -m harness`` under a wrapper that patches one function from outside and sends itself SIGINT at its
nth matching call; after the usual KeyboardInterrupt exit, the earlier goldens, checkpoints and state, and
report are intact or replaced by complete new ones, no temporary file is left, and the next run resumes or
rebuilds cleanly."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import golden
from harness.atomic import hear_sigint
from harness.cli import main
from harness.report import build_report

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import importlib, os, runpy, signal, sys
from pathlib import Path

module, attr, when, match, nth, mark = sys.argv[1:7]
owner = importlib.import_module(module)
*outer, name = attr.split(".")
for part in outer:
    owner = getattr(owner, part)
real, seen = getattr(owner, name), []


def interrupt():
    Path(mark).write_text("reached")
    os.kill(os.getpid(), signal.SIGINT)


def hooked(*args, **kwargs):
    if args and match in str(args[0]):
        seen.append(args[0])
        if len(seen) == int(nth):
            if when == "before":
                interrupt()
            elif when == "half":
                args = (args[0], args[1][: len(args[1]) // 2])
            result = real(*args, **kwargs)
            if when != "before":
                interrupt()
            return result
    return real(*args, **kwargs)


setattr(owner, name, hooked)
sys.argv = ["harness", *sys.argv[7:]]
runpy.run_module("harness", run_name="__main__", alter_sys=True)
'''


def _interrupt(point: tuple, argv: list[str], tmp_path: Path, **env: str) -> None:
    """Run ``python -m harness argv`` until ``point`` (module, attribute, before/after/half, a substring of
    the call's first argument, n), where it gets SIGINT; it must end with the usual KeyboardInterrupt exit."""
    mark = tmp_path / "reached"
    module, attr, when, match, nth = point
    proc = subprocess.run([sys.executable, "-c", CHILD, module, attr, when, match, str(nth), str(mark), *argv],
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=300, preexec_fn=hear_sigint)  # a hang guard only; SIGINT heard as in a terminal
    assert mark.exists(), f"the run never reached {point}:\n{proc.stderr[-3000:]}"
    assert proc.returncode == -signal.SIGINT and proc.stderr.rstrip().endswith("KeyboardInterrupt"), proc.stderr[-3000:]


def _files(folder: Path) -> dict[str, object]:
    """Each file's content; a safetensors header as a dict (its metadata's key order varies by process)."""
    return {str(p.relative_to(folder)): _content(p.read_bytes()) if p.suffix == ".safetensors" else p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _content(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def _no_temporaries(folder: Path) -> None:
    assert not list(folder.rglob("*.tmp")), f"temporary files left in {folder}"


# -- golden update --------------------------------------------------------------------------------------
SECTIONS = ["A1.1", "A1.2"]
UPDATE = ["golden", "update", *SECTIONS, "--backend", "tiny-if"]


@pytest.fixture(scope="module")
def new_goldens(tmp_path_factory) -> dict[str, bytes]:
    """What `golden update` of SECTIONS writes (the runs are deterministic)."""
    root = tmp_path_factory.mktemp("golden")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_GOLDEN_ROOT", str(root))
        assert main(UPDATE) == 0
    return _files(root)


def _plant_earlier(root: Path, new: dict[str, bytes]) -> dict[str, bytes]:
    """Store an earlier golden of every section, valid but unlike the new one (images halved)."""
    for name, data in new.items():
        if name.endswith("images.npz"):
            with np.load(io.BytesIO(data)) as z:
                buf = io.BytesIO()
                np.savez_compressed(buf, **{k: z[k] / 2 for k in z.files})
            record = json.loads(new[name.replace("images.npz", "metrics.json")])
            record["images_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
            (root / name).parent.mkdir(parents=True)
            (root / name).write_bytes(buf.getvalue())
            (root / name).with_name("metrics.json").write_text(json.dumps(record))
    return _files(root)


GOLDEN_POINTS = {
    "npz half written": ("pathlib", "Path.write_bytes", "half", "images.npz", 1),
    "npz written, not renamed": ("os", "replace", "before", "images.npz", 1),
    "npz renamed, json not": ("os", "replace", "after", "images.npz", 1),
    "first section updated": ("os", "replace", "after", "metrics.json", 1),
}


@pytest.mark.parametrize("point", GOLDEN_POINTS.values(), ids=GOLDEN_POINTS)
def test_interrupted_golden_update_leaves_each_pair_old_or_new(point, new_goldens, tmp_path, monkeypatch):
    root = tmp_path / "golden"
    earlier = _plant_earlier(root, new_goldens)
    _interrupt(point, UPDATE, tmp_path, HARNESS_GOLDEN_ROOT=str(root))
    now = _files(root)
    assert set(now) == set(earlier)
    for section in SECTIONS:
        pair = [f"cpu/tiny-if/{section}/{name}" for name in ("images.npz", "metrics.json")]
        assert [now[f] for f in pair] in ([earlier[f] for f in pair], [new_goldens[f] for f in pair]), \
            f"{section}: neither the earlier pair nor the new one"
        golden.read("tiny-if", section, "cpu", root)
    _no_temporaries(root)
    monkeypatch.setenv("HARNESS_GOLDEN_ROOT", str(root))
    assert main(UPDATE) == 0
    assert _files(root) == new_goldens


# -- train ----------------------------------------------------------------------------------------------
SETS = ["num_hiddens=8", "subset=256", "epochs=2", "save_epochs=[1,2]", "test_subset=64"]
RECIPE = ["--preset", "quick", *(a for s in SETS for a in ("--set", s)), "--max-steps", "3", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, bytes]:
    """The files of an uninterrupted run (resumed runs continue bitwise)."""
    out = tmp_path_factory.mktemp("train")
    assert main(["train", "time", *RECIPE, "--out", str(out)]) == 0
    return _files(out)


TRAIN_POINTS = {
    "mid epoch 2": ("harness.partb.train", "Trainer.test_loss", "before", "", 2),
    "checkpoint written, not renamed": ("os", "replace", "before", "time_epoch2.safetensors", 1),
    "checkpoint saved, state not": ("os", "replace", "after", "time_epoch2.safetensors", 1),
    "state half written": ("pathlib", "Path.write_bytes", "half", "time_state.pt", 2),
    "last state saved": ("os", "replace", "after", "time_state.pt", 2),
}


@pytest.mark.parametrize("point", TRAIN_POINTS.values(), ids=TRAIN_POINTS)
def test_interrupted_train_keeps_checkpoint_and_state_and_resumes(point, trained, tmp_path, capsys):
    out = tmp_path / "train"
    _interrupt(point, ["train", "time", *RECIPE, "--out", str(out)], tmp_path)
    _no_temporaries(out)
    epoch = torch.load(out / "time_state.pt", weights_only=False)["epoch"]
    assert epoch in (1, 2)
    now = _files(out)
    for e in range(1, epoch + 1):  # every checkpoint the state counts is there, whole
        assert now[f"time_epoch{e}.safetensors"] == trained[f"time_epoch{e}.safetensors"]
    assert all(now[name] == trained[name] for name in now if name.endswith(".safetensors"))
    assert main(["train", "time", *RECIPE, "--out", str(out)]) == 0
    assert f"resuming time from epoch {epoch}" in capsys.readouterr().out  # Trainer.load_state took the state
    assert _files(out) == trained


# -- report ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("outputs")
    assert main(["run", "A1.1", "--out", str(out), "--no-progress"]) == 0
    return out


def _complete_report(folder: Path, names: set[str]) -> None:
    """A whole report: index.html to its end, every file an earlier one had, every file it links there."""
    html = (folder / "index.html").read_text()
    assert html.rstrip().endswith("</html>")
    assert set(_files(folder)) == names
    assert all((folder / link).is_file() for link in re.findall(r'src="(img/[^"]+)"', html))


REPORT_POINTS = {
    "mid render": ("harness.report.build", "_summary", "before", "", 1),
    "rendered, not in place": ("harness.report.build", "_render", "after", "", 1),
    "before the first rename": ("os", "rename", "before", "", 1),
    "earlier report half removed": ("os", "unlink", "after", "index.html", 1),
}


@pytest.mark.parametrize("point", REPORT_POINTS.values(), ids=REPORT_POINTS)
def test_interrupted_report_leaves_a_whole_report_and_rebuilds(point, outputs, tmp_path):
    shutil.copytree(outputs, tmp_path / "out")
    dest = tmp_path / "out" / "report"
    build_report(tmp_path / "out", dest)
    earlier = set(_files(dest))
    _interrupt(point, ["report", "--outputs", str(tmp_path / "out"), "--out", str(dest)], tmp_path)
    _complete_report(dest, earlier)
    _no_temporaries(tmp_path / "out")
    build_report(tmp_path / "out", dest)
    _complete_report(dest, earlier)
    _no_temporaries(tmp_path / "out")
