"""check-impl on a class (`harness.impl.batch`): each file in its own sandbox, the grader's verdicts on what
comes back as data, the gradebook (grades.csv, index.html, Gradescope's results.json), re-runs that skip
unchanged files, and the hostile notebooks of tests/impls/hostile/ each an "error" row saying which, with
the class's files, the grader's home and the output folder untouched. Every run is A1.1 (and a few sections
in the slow one) at stride 330."""

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from harness.impl import gradebook, sandbox, transfer
from harness.impl.batch import Options, grade, submissions
from harness.impl.run import Result
from harness.impl.sandbox import GIB, MIB, Limits
from harness.paths import cache_dir
from tests.browser import BrowserUnavailable, check_page, ensure_chromium

IMPLS = Path(__file__).parent / "impls"
HOSTILE = IMPLS / "hostile"
ESCAPED = "harness-hostile-escaped.txt"


def snapshot(*folders: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in f.rglob("*") if p.is_file()}


def rows_of(grades: list[dict]) -> dict[str, dict[str, tuple[str, str]]]:
    """submission -> key -> (verdict, figures)."""
    return {g["name"]: {r["key"]: (r["verdict"], r["figures"]) for r in g["rows"]} for g in grades}


def self_contained(name: str) -> str:
    """tests/impls/NAME's text with its exec of course.py inlined: a sandbox sees no sibling file."""
    text = (IMPLS / name).read_text()
    return text.replace('exec(Path(__file__).with_name("course.py").read_text())', (IMPLS / "course.py").read_text())


def test_files_and_folders_become_submissions_with_unique_names(tmp_path):
    for path in ("a/p5.py", "b/p5.py", "b/p5.ipynb", "b/.ipynb_checkpoints/p5.ipynb", "b/notes.txt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x = 1\n")
    subs = submissions([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out")
    assert sorted(s.name for s in subs) == ["a__p5.py", "b__p5.ipynb", "b__p5.py"]
    with pytest.raises(ValueError, match="not a folder, .ipynb or .py file"):
        submissions([str(tmp_path / "b" / "notes.txt")], tmp_path / "out")


def test_the_grader_accepts_from_a_sandbox_only_what_a_submission_can_give_itself(tmp_path):
    forged = Result("A1.1", "forward", "matches the reference", "PSNR inf dB")
    transfer.write(tmp_path, [forged])
    with pytest.raises(transfer.Unreadable, match="verdict 'matches the reference'"):
        transfer.read(tmp_path, lambda check: [])
    transfer.write(tmp_path, [Result("A1.1", "forward", "error", "raised")])
    (got,), error, _ = transfer.read(tmp_path, lambda check: [])
    assert (got.verdict, got.figures, error) == ("error", "raised", "")
    (tmp_path / transfer.OUTCOME).write_text("{not json")
    with pytest.raises(transfer.Unreadable):
        transfer.read(tmp_path, lambda check: [])


def test_the_rubric_scores_each_section_by_its_verdict(tmp_path):
    points = gradebook.rubric()
    assert sum(points["points"].values()) == 100 and points["verdicts"]["works"] == 1.0
    rows = [{"section": "A1.1", "key": "A1.1", "verdict": "matches the reference", "figures": ""},
            {"section": "A1.8", "key": "A1.8", "verdict": "wrong", "figures": ""},
            {"section": "A1.8", "key": "A1.8-make_rot90_illusion", "verdict": "matches the reference", "figures": ""}]
    entry = {"rows": rows, "params": {"sections": ["A1.1", "A1.8", "A1.9"]}}
    assert gradebook.verdicts(entry, points) == {"A1.1": "matches the reference", "A1.8": "wrong", "A1.9": "skipped"}
    assert gradebook.score(entry, points) == (10.0, 40.0)
    setup = {"rows": [{"section": "setup", "key": "setup", "verdict": "error", "figures": ""}], "params": {"sections": []}}
    assert set(gradebook.verdicts(setup, points).values()) == {"error"}
    (tmp_path / "r.toml").write_text("[points]\nA1.1 = 'ten'\n")
    with pytest.raises(ValueError, match=r"--rubric .*r.toml: .* \[points\] table"):
        gradebook.rubric(tmp_path / "r.toml")


def test_a_small_class_is_graded_with_faults_as_rows_and_rerun_skips_it(tmp_path):
    klass, out = tmp_path / "class", tmp_path / "out"
    klass.mkdir()
    shutil.copy(IMPLS / "course.py", klass / "alice.py")
    for name in ("exit_quietly.py", "corrupt.ipynb", "absent_module.ipynb"):
        shutil.copy(HOSTILE / name, klass / name)
    before = snapshot(klass)
    options = Options("tiny-if", ("A1.1",), stride=330, time_limit=60, limits=Limits(memory=6 * GIB, wall_s=300))
    lines = []
    grades = grade([str(klass)], out, options, workers=2, gradescope=True, echo=lines.append)
    got = rows_of(grades)
    assert got["alice"]["A1.1"][0] == "matches the reference", got["alice"]
    assert got["exit_quietly"]["setup"] == ("error", "exit_quietly.py: the sandbox exited with status 0 before "
                                                     "writing its results")
    assert got["corrupt"]["setup"][0] == "error" and "corrupt.ipynb: not a Jupyter notebook" in got["corrupt"]["setup"][1]
    assert "no module named 'no_such_module_for_harness' here" in got["absent_module"]["setup"][1]
    assert snapshot(klass) == before
    assert sorted(ln.split(":")[0] for ln in lines) == ["absent_module", "alice", "corrupt", "exit_quietly"], lines
    assert any(ln.startswith("alice: 10/10 points, ") for ln in lines) and any(
        ln.startswith("corrupt: 0/10 points, ") and "; error: corrupt.ipynb: not a Jupyter" in ln for ln in lines)
    with open(out / "grades.csv") as f:
        table = {r["submission"]: r for r in csv.DictReader(f)}
    assert table["alice"]["A1.1"] == "matches the reference" and table["alice"]["points"] == "10.0"
    assert table["corrupt"]["A1.1"] == "error" and table["corrupt"]["points"] == "0.0"
    page = (out / "index.html").read_text()
    assert all(f'href="{n}/tiny-if/index.html"' in page for n in table) and "not a Jupyter notebook" in page
    assert (out / "alice" / "tiny-if" / "index.html").is_file()
    scope = json.loads((out / "alice" / "gradescope" / "results.json").read_text())
    assert scope["score"] == 10 and scope["tests"][0]["status"] == "passed"
    again = []
    assert rows_of(grade([str(klass)], out, options, workers=2, echo=again.append)) == got
    assert len(again) == 4 and all("unchanged, not run again" in ln for ln in again), again

