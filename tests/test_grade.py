"""check-impl on a class (`harness.impl.batch`): each file in its own sandbox, the grader's verdicts on what
comes back as data, the gradebook (grades.csv, index.html, Gradescope's results.json), re-runs that skip
unchanged files, and the hostile notebooks of tests/impls/hostile/ each an "error" row saying which, with
the class's files, the grader's home and the output folder untouched. Every run is A1.1 (and a few sections
in the slow one) at stride 330."""

import csv
import hashlib
import json
import shutil
import subprocess
import sys
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
    options = Options("tiny-if", ("A1.1",), stride=330, time_limit=600, limits=Limits(memory=6 * GIB))
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



HOSTILE_ROWS = {  # submission -> (row key, what its one line says)
    "infinite_loop": ("A1.1", "ran past the time limit of 10 s"),
    "deaf_loop": ("setup", "ran past the "),  # the CPU-time cap, or on a crowded machine the wall clock first
    "memory_hog": ("A1.1", "can't allocate memory"),
    "fork_bomb": ("A1.1", "raised BlockingIOError"),
    "exit_quietly": ("setup", "the sandbox exited with status 0 before writing its results"),
    "kill_parent": ("setup", "was killed (SIGKILL"),
    "print_gigabyte": ("A1.1", "File too large"),
    "write_outside": ("A1.1", "no write outside its folder succeeded"),
    "read_sibling": ("A1.1", "no sibling submission visible"),
    "open_socket": ("A1.1", "Network is unreachable"),
    "absent_module": ("setup", "no module named 'no_such_module_for_harness' here"),
    "corrupt": ("setup", "not a Jupyter notebook"),
}


@pytest.mark.slow
@pytest.mark.skipif(sandbox.tool() != "bwrap" or not sandbox.enforced(),
                    reason=f"the hostile notebooks need bubblewrap and every cap in force: {sandbox.warning()}")
def test_every_hostile_notebook_is_an_error_row_and_is_contained(tmp_path, monkeypatch):
    klass, out, home = tmp_path / "class", tmp_path / "out", tmp_path / "home"
    shutil.copytree(HOSTILE, klass)
    shutil.copy(IMPLS / "course.py", klass / "course.py")
    (klass / "sibling_canary.txt").write_text("the class's folder")
    home.mkdir()
    (home / ".bashrc").write_text("# the grader's\n")
    monkeypatch.setenv("HARNESS_CACHE", str(cache_dir()))
    monkeypatch.setenv("HOME", str(home))
    before = snapshot(klass, home)
    limits = Limits(memory=6 * GIB, cpu_s=40, wall_s=900, file_size=64 * MIB, processes=64)
    options = Options("tiny-if", ("A1.1",), stride=330, time_limit=10, limits=limits)
    got = rows_of(grade([str(klass)], out, options, workers=2, echo=lambda line: None))
    assert got["course"]["A1.1"][0] == "matches the reference", got["course"]
    for name, (key, says) in HOSTILE_ROWS.items():
        verdict, line = got[name].get(key, ("none", str(got[name])))
        assert verdict == "error" and says in line and "escaped" not in line, (name, line)
    assert snapshot(klass, home) == before
    assert not list(tmp_path.rglob(ESCAPED)) and not any(Path(p, ESCAPED).exists() for p in ("/", "/root", "/work"))
    assert sorted(p.name for p in out.iterdir()) == sorted(["grades.csv", "index.html", "course", *HOSTILE_ROWS])
    try:
        chromium = ensure_chromium(timeout=900)
    except BrowserUnavailable as e:
        pytest.skip(f"no headless browser for the index page: {e}")
    page = check_page((out / "index.html").as_uri(), chromium=chromium)
    assert page.console_errors == [] and {"sections", "raised", "submissions"} <= set(page.ids)


@pytest.mark.slow
def test_the_proof_files_get_their_verdicts_in_a_batch(tmp_path):
    """tests/impls/ (each made self-contained) on mnist: the course matches, each mistake is wrong with its
    diagnosis, as check-impl of one file says (tests/test_check_impl.py)."""
    klass = tmp_path / "class"
    klass.mkdir()
    for path in IMPLS.iterdir():
        if path.suffix in (".py", ".ipynb"):
            (klass / path.name).write_text(self_contained(path.name))
    sections = ("A1.1", "A1.4", "A1.7.2", "A1.7.3", "A1.8", "A1.9")
    options = Options("mnist", sections, stride=330, time_limit=300, limits=Limits(memory=6 * GIB, wall_s=900))
    got = rows_of(grade([str(klass)], tmp_path / "out", options, workers=2, echo=lambda line: None))
    for name in ("course", "variants", "variants_args", "rotations"):
        assert {v for v, _ in got[name].values()} <= {"matches the reference", "skipped", "stand-in"}, got[name]
    for name, section, says in [("mistake_sqrt", "A1.1", "sqrt missing"), ("mistake_cfg", "A1.7.3", "CFG around"),
                                ("mistake_view", "A1.8", "view not inverted"), ("mistake_bands", "A1.9", "bands swapped"),
                                ("mistake_renoise", "A1.7.2", "not re-noised"),
                                ("mistake_last_variance", "A1.4", "at the last step")]:
        assert got[name][section][0] == "wrong", (name, got[name][section])
    page = json.loads((tmp_path / "out" / "mistake_bands" / "mnist" / "results.json").read_text())
    assert any("bands swapped" in r["looks_like"] for r in page["results"])


@pytest.mark.slow
def test_pytest_impl_on_a_folder_makes_a_case_per_submission(tmp_path):
    klass = tmp_path / "class"
    klass.mkdir()
    shutil.copy(IMPLS / "course.py", klass / "alice.py")
    shutil.copy(HOSTILE / "exit_quietly.py", klass / "bob.py")
    res = subprocess.run([sys.executable, "-m", "pytest", "--impl", str(klass), "--impl-section", "A1.1", "--impl-stride",
                          "330", "--impl-out", str(tmp_path / "out"), "-p", "no:cacheprovider", "tests/test_imports.py"],
                         capture_output=True, text=True, timeout=1800, cwd=Path(__file__).parents[1])
    assert res.returncode == 1 and "1 failed, 1 passed" in res.stdout, res.stdout[-3000:]
    assert "bob: setup -: error: bob.py: the sandbox exited with status 0" in res.stdout
    assert (tmp_path / "out" / "grades.csv").is_file()
