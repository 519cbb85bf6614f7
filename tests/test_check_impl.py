"""check-impl: the pieces (device map, noise replay, signature variants, loading), the proof files under
tests/impls/ (a course-style implementation matches; each common mistake is wrong with its diagnosis; the
signature variants and GPU-style code run unchanged on the CPU; another noise order works without matching),
the CLI and the pytest plugin end to end, and the report page in Chromium. Every run uses stride 330 (990,
660, 330, 0)."""

import hashlib
import json
import subprocess
import sys
import threading
import time
import tomllib
import types
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.analytic import AnalyticDenoiser, patterns
from harness.guides import VIEWS, Plain
from harness.impl.calling import ImplError, Pair, ViewArg, bind, read_output, role
from harness.impl.checks import CHECKS
from harness.impl.devicemap import on_backend
from harness.impl.loader import UserCodeError, user_code
from harness.impl.source import Source, blank_ipython, compile_file
from harness.impl.replay import Tape, recording, replaying, serving
from harness.impl.run import check_file, save, table
from harness.sampling import sample
from harness.schedules import strided_timesteps
from harness.seeding import generators
from tests.browser import BrowserUnavailable, check_page, ensure_chromium

IMPLS = Path(__file__).parent / "impls"
STRIDE = 330
ROOT = Path(__file__).parents[1]


def verdicts(name: str, backend: str, sections: list[str]) -> dict[str, tuple[str, str, str]]:
    """section -> (verdict, looks like, figures) of tests/impls/NAME (NAME.py unless it has a suffix)."""
    file = IMPLS / (name if "." in name else f"{name}.py")
    results = check_file(str(file), backend, sections, stride=STRIDE, time_limit=300)
    return {r.section: (r.verdict, r.looks_like, r.figures) for r in results}


def _notebook(path: Path, *cells: str) -> Path:
    """A notebook (nbformat 4) of a markdown cell, then these code cells (cell 2, 3, ...); source as lists."""
    def cell(kind, text):
        lines = text.split("\n")
        extra = {"outputs": [], "execution_count": None} if kind == "code" else {}
        return {"cell_type": kind, "metadata": {}, "source": [ln + "\n" for ln in lines[:-1]] + lines[-1:], **extra}

    path.write_text(json.dumps({"cells": [cell("markdown", "# my project"), *(cell("code", c) for c in cells)],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_gpu_calls_land_on_the_backend_and_are_restored():
    originals = torch.Tensor.cuda, torch.Tensor.half, torch.Tensor.to, torch.zeros
    x = torch.ones(2)
    with on_backend("cpu", torch.float32):
        assert x.cuda().device.type == "cpu" and x.half().dtype == torch.float32
        assert x.to("cuda", torch.float16).dtype == torch.float32
        assert x.to(device=torch.device("cuda:0"), dtype=torch.float16).device.type == "cpu"
        made = torch.zeros(3, device="cuda", dtype=torch.float16)
        assert made.device.type == "cpu" and made.dtype == torch.float32
    with pytest.raises(ZeroDivisionError), on_backend("cpu", torch.float32):
        1 / 0
    assert (torch.Tensor.cuda, torch.Tensor.half, torch.Tensor.to, torch.zeros) == originals


def test_replay_serves_the_tape_in_call_order_and_restores():
    a, b = torch.randn(1, 3, 2, 2), torch.randn(12)
    tape = Tape([("x_T", a), ("step", b)], seed=0)
    randn, randn_like = torch.randn, torch.randn_like
    with replaying(tape):
        assert torch.equal(torch.randn_like(torch.zeros(1, 3, 2, 2)), a)
        assert torch.equal(torch.randn(1, 3, 2, 2, device="cpu"), b.reshape(1, 3, 2, 2))  # same size, reshaped
        torch.randn(5)  # past the tape: the extra stream
        torch.randn(5, generator=torch.Generator().manual_seed(0))  # an explicit generator is the user's own
    assert (tape.position, tape.unmatched) == (2, 1)
    with pytest.raises(RuntimeError), replaying(tape.fresh()):
        raise RuntimeError
    assert (torch.randn, torch.randn_like) == (randn, randn_like)


def test_a_recorded_loop_served_again_reproduces_it_and_a_skip_changes_it():
    den = AnalyticDenoiser(patterns())
    ts = strided_timesteps(990, STRIDE)
    run = lambda: sample(den, ts, Plain(den.condition(["a"])), generators(1, "s", 1))  # noqa: E731
    with recording(1) as tape:
        x = run()
    assert [r for r, _ in tape.draws] == ["x_T", "step", "step", "step"]
    with serving(tape.fresh()):
        assert torch.equal(run(), x)
    with serving(tape.fresh(), lambda r, k, n: r == "step" and k == n - 1):
        assert not torch.equal(run(), x)


def test_roles_pairs_and_binding():
    assert [role(n) for n in ("im_noisy", "original_image", "i_start", "prompt_embeds", "uncond_embeds",
                              "prompt_embeds_2", "prompt1_embeds", "timesteps", "scale", "display", "stage_1",
                              "alphas_cumprod", "mask", "t")] == [
        "image", "image", "i_start", "prompt", "uncond", "prompt2", "prompt1", "timesteps", "scale", "display",
        "stage_1", "alphas_cumprod", "mask", "t"]
    p1, p2 = torch.zeros(1), torch.ones(1)
    pair = Pair(p1, p2)
    first, second = pair
    assert first is p1 and pair[1] is p2 and pair["p2"] is p2 and pair["upright"] is p1
    keyed = Pair(p1, p2)
    assert keyed["a"] is p1 and keyed["b"] is p2 and keyed["a"] is p1  # keys without a digit: order of first use

    def no_i_start(im_noisy, prompt_embeds, timesteps, display=True):
        pass

    kwargs = bind(no_i_start, {"image": 0, "prompt": p1, "timesteps": [9, 6, 3, 0], "i_start": 2})
    assert kwargs == {"im_noisy": 0, "prompt_embeds": p1, "timesteps": [3, 0], "display": False}
    with pytest.raises(ImplError, match="cannot tell what parameter 'frobnicate' is"):
        bind(lambda im, frobnicate: None, {"image": 0})


def test_outputs_are_read_in_every_course_form():
    like = torch.zeros(1, 3, 4, 4)
    x = torch.rand(1, 3, 4, 4) * 2 - 1
    for out in (x.numpy(), x[0], (x, [x]), (x[0].permute(1, 2, 0).numpy() + 1) / 2):
        assert torch.allclose(read_output(out, like, "f"), x, atol=1e-6)
    with pytest.raises(ImplError, match=r"returned shape \(4, 4\): expected \(1, 3, 4, 4\)"):
        read_output(np.zeros((4, 4)), like, "f")
    with pytest.raises(ImplError, match="NaN"):
        read_output(x * float("nan"), like, "f")


def _plain(path: Path) -> Source:
    return Source(path, compile("", str(path), "exec"))


def test_user_code_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def forward(im, t)\n    return im\n")
    with pytest.raises(ImplError, match=r"^bad.py line 1: syntax error"):
        compile_file(bad)
    source = _plain(bad)
    with pytest.raises(UserCodeError, match="ran past the time limit of 0.2 s"):
        with user_code(torch.device("cpu"), torch.float32, 0, 0.2, "forward", source):
            while True:
                pass
    with pytest.raises(UserCodeError, match=r"raised KeyError: 'x'") as e:
        with user_code(torch.device("cpu"), torch.float32, 0, 10, "forward", source):
            {}["x"]
    assert "KeyError" in e.value.trace


def _in_a_thread(fn):
    """fn() run in another thread (not the main one): what it returned or raised."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - the test reads what escaped
            box["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    return box


def test_the_time_limit_stops_user_code_in_another_thread(tmp_path):
    def endless():
        with user_code(torch.device("cpu"), torch.float32, 0, 0.5, "forward", _plain(tmp_path / "f.py")):
            while True:
                pass

    got = _in_a_thread(endless)
    assert isinstance(got.get("error"), UserCodeError), got
    assert str(got["error"]).startswith("forward ran past the time limit of 0.5 s")


def test_a_time_limit_never_fires_after_its_block_in_another_thread(tmp_path):
    def in_time():
        for _ in range(20):  # blocks that end at their limit: in time, or just too late (either is right)
            try:
                with user_code(torch.device("cpu"), torch.float32, 0, 0.05, "forward", _plain(tmp_path / "f.py")):
                    time.sleep(0.05)
            except UserCodeError:
                pass
        end = time.monotonic() + 1.0  # 20 limits on: a stray TimeLimit would be raised in this loop
        spins = 0
        while time.monotonic() < end:
            spins += 1
        return spins

    got = _in_a_thread(in_time)
    assert "error" not in got and got["value"] > 0, got


@pytest.mark.parametrize("backend", ["tiny-if", "mnist"])
def test_course_style_implementation_matches_and_is_not_modified(backend):
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in IMPLS.glob("*.py")}
    randn = torch.randn
    got = verdicts("course", backend, ["A1.1", "A1.4", "A1.7.2"])
    assert {v for v, _, _ in got.values()} == {"matches the reference"}, got
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in IMPLS.glob("*.py")}
    assert torch.randn is randn


@pytest.mark.parametrize("backend", ["tiny-if", "mnist"])
def test_a_notebook_runs_its_definitions_only_and_matches(backend):
    notebook = IMPLS / "course.ipynb"
    before = notebook.read_bytes()
    results = check_file(str(notebook), backend, ["A1.1", "A1.4"], stride=STRIDE, time_limit=300)
    assert notebook.read_bytes() == before
    setup, *sections = results
    assert (setup.section, setup.verdict, setup.function) == ("setup", "stand-in", "google.colab, mediapy, IPython.display")
    assert [(r.section, r.verdict) for r in sections] == [("A1.1", "matches the reference"),
                                                          ("A1.4", "matches the reference")], sections


def test_ipython_syntax_is_blanked_keeping_line_numbers():
    cell = ["!pip install a \\", "    b", "%matplotlib inline", "files = !ls", "forward?", "x = 1  # why?",
            "def f():", "    %time g()", "    return 5 % 2"]
    assert blank_ipython(cell) == ["pass", "", "pass", "pass", "pass", "x = 1  # why?", "def f():", "    pass",
                                   "    return 5 % 2"]
    assert blank_ipython(["", "%%bash", "ls"]) == ["", "", ""]


def test_notebook_errors_name_the_cell_and_its_line(tmp_path):
    broken = _notebook(tmp_path / "broken.ipynb", "import torch", "!pip install x\ndef forward(im, t)\n    return im")
    with pytest.raises(ImplError, match=r"^broken.ipynb cell 3 line 2: syntax error: expected ':'"):
        compile_file(broken)
    missing = _notebook(tmp_path / "missing.ipynb", "x = 1\nimport no_such_module_here")
    with pytest.raises(UserCodeError, match=r"^missing.ipynb \(its top level\) raised ModuleNotFoundError: no module "
                                            r"named 'no_such_module_here' here: install it .*\(missing.ipynb cell 2 line 2\)$"):
        check_file(str(missing), "mnist", ["A1.1"], stride=STRIDE)
    raising = _notebook(tmp_path / "raising.ipynb", "import torch\nstage_1 = DiffusionPipeline.from_pretrained('x')",
                        "%matplotlib inline\ndef forward(im, t):\n    noise = torch.randn_like(im)\n    return im[99]")
    result, = check_file(str(raising), "mnist", ["A1.1"], stride=STRIDE)
    assert result.verdict == "error" and result.figures.endswith("raised IndexError: index 99 is out of bounds for "
                                                                 "dimension 0 with size 1 (raising.ipynb cell 3 line 4)")
    assert 'File "raising.ipynb cell 3", line 4, in forward\n    return im[99]' in result.trace, result.trace


@pytest.mark.slow
@pytest.mark.parametrize("name", ["course", "variants", "variants_args"])
@pytest.mark.parametrize("backend", ["tiny-if", "mnist"])
def test_every_section_matches(name, backend):
    got = verdicts(name, backend, [])
    assert {v for v, _, _ in got.values()} == {"matches the reference"}, got


MISTAKES = [("mistake_sqrt", "A1.1", "sqrt missing"), ("mistake_cfg", "A1.7.3", "CFG around the conditional"),
            ("mistake_view", "A1.8", "view not inverted"), ("mistake_bands", "A1.9", "bands swapped"),
            ("mistake_renoise", "A1.7.2", "not re-noised"), ("mistake_last_variance", "A1.4", "at the last step")]


@pytest.mark.parametrize("name, section, says", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_wrong_with_its_diagnosis(name, section, says):
    verdict, looks_like, figures = verdicts(name, "mnist", [section])[section]
    assert verdict == "wrong" and says in looks_like, figures


@pytest.mark.slow
@pytest.mark.parametrize("name, section, says", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_wrong_with_its_diagnosis_on_tiny_if(name, section, says):
    verdict, looks_like, figures = verdicts(name, "tiny-if", [section])[section]
    assert verdict == "wrong" and says in looks_like, figures


def test_gpu_style_signature_variants_run_unchanged_on_the_cpu():
    got = {**verdicts("variants", "tiny-if", ["A1.4", "A1.8"]), **verdicts("variants_args", "mnist", ["A1.8", "A1.9"])}
    assert {v for v, _, _ in got.values()} == {"matches the reference"}, got


def _rows(name: str, backend: str, sections: list[str]) -> dict[str, tuple[str, str, str]]:
    """function -> (verdict, looks like, figures) of tests/impls/NAME.py."""
    results = check_file(str(IMPLS / f"{name}.py"), backend, sections, stride=STRIDE, time_limit=300)
    return {r.function: (r.verdict, r.looks_like, r.figures) for r in results}


@pytest.mark.parametrize("backend", ["tiny-if", "mnist"])
def test_rotation_anagrams_match_in_either_direction(backend):
    got = _rows("rotations", backend, ["A1.8"])
    assert set(got) == {"make_flip_illusion", "make_rot90_illusion", "make_rot180_illusion", "make_rotation_illusion"}
    assert {v for v, _, _ in got.values()} == {"matches the reference"}, got
    assert got["make_rot90_illusion"][2].startswith("view rot90, counter-clockwise as the reference; PSNR")
    assert got["make_rotation_illusion"][2].startswith("view rot90, clockwise (the reference turns counter-clockwise")
    assert got["make_rot180_illusion"][2].startswith("view rot180; PSNR")


@pytest.mark.parametrize("backend", ["tiny-if", "mnist"])
def test_a_rotation_not_turned_back_is_wrong_with_its_diagnosis(backend):
    verdict, looks_like, figures = _rows("mistake_rotation", backend, ["A1.8"])["make_rot90_illusion"]
    assert verdict == "wrong" and "view not inverted" in looks_like, figures


def test_a_general_anagram_function_gets_each_view():
    module = types.ModuleType("user")
    exec("def visual_anagrams(image, prompt_embeds, uncond_embeds, timesteps, view='flip'):\n    pass\n"
         "def rotate_image(x):\n    pass\n", module.__dict__)
    rows = [(f.name, f.key, [c.label.split(",")[0] for c in f.checks]) for c in CHECKS for f in c.find(module)]
    assert rows == [("visual_anagrams", "A1.8", [""]),
                    ("visual_anagrams", "A1.8-visual_anagrams-rot90", ["view rot90", "view rot90"]),
                    ("visual_anagrams", "A1.8-visual_anagrams-rot180", ["view rot180"])]
    view = ViewArg(VIEWS["rot90"])
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert view == "rot90" and torch.equal(view.invert(view(x)), x) and not torch.equal(view(x), x)


def test_another_noise_order_works_without_matching():
    got = verdicts("noise_order", "mnist", ["A1.1", "A1.7.2"])
    assert {v for v, _, _ in got.values()} == {"works"}, got
    assert "unmatched" in got["A1.1"][2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "check-impl", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def test_cli_table_outputs_and_exit_status(tmp_path):
    res = _cli(str(IMPLS / "course.py"), "--backend", "mnist", "--section", "A1.1", "--stride", str(STRIDE),
               "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| A1.1 | forward | matches the reference |" in res.stdout
    assert {p.name for p in (tmp_path / "mnist" / "A1.1").iterdir()} == {"yours.png", "reference.png", "difference.png"}
    assert (tmp_path / "mnist" / "index.html").is_file() and "index.html" in res.stdout
    res = _cli(str(IMPLS / "mistake_renoise.py"), "--backend", "mnist", "--section", "A1.7.2", "--stride",
               str(STRIDE), "--out", str(tmp_path))
    assert res.returncode == 1 and "known region not re-noised" in res.stdout
    bad = tmp_path / "bad.py"
    bad.write_text("x = (\n")
    res = _cli(str(bad), "--out", str(tmp_path))
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "error: bad.py line 1: syntax error: '(' was never closed; fix it (notebook exports: remove the !pip and "
        "%magic lines, or pass the .ipynb itself)"]


def _pytest(impl: str, section: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "harness.impl.pytest_plugin", "--impl",
                           str(IMPLS / impl), "--impl-backend", "mnist", "--impl-section", section, "--impl-stride",
                           str(STRIDE), "reproductions", "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_pytest_plugin_runs_the_checks_as_cases(tmp_path):
    res = _pytest("course.py", "A1.4")
    assert res.returncode == 0 and "1 passed" in res.stdout and "deselected" in res.stdout, res.stdout[-2000:]
    res = _pytest("mistake_bands.py", "A1.9")
    assert res.returncode == 1 and "looks like: bands swapped" in res.stdout, res.stdout[-2000:]
    notebook = tmp_path / "notebook.py"
    notebook.write_text("import torch\nassert torch.cuda.is_available(), 'a GPU runtime'\n")
    res = _pytest(str(notebook), "A1.1")  # its top level fails: one line per case
    assert res.returncode == 1 and ("A1.1 on mnist: notebook.py (its top level) raised AssertionError: a GPU runtime "
                                    "(notebook.py line 2)") in res.stdout, res.stdout[-2000:]


def test_pytest_plugin_runs_a_notebook():
    res = _pytest("course.ipynb", "A1.1")
    assert res.returncode == 0 and "1 passed" in res.stdout and "| setup | google.colab" in res.stdout, res.stdout[-2000:]


def test_pytest_plugin_is_a_pytest11_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (name, target), = project["entry-points"]["pytest11"].items()
    assert name == target and hasattr(import_module(target), "pytest_addoption")


def test_table_has_a_row_per_section():
    text = table(check_file(str(IMPLS / "mistake_bands.py"), "mnist", ["A1.9", "A1.4"], stride=STRIDE))
    assert text.splitlines()[0] == "| section | function | verdict | figures | looks like |"
    assert "| A1.4 | iterative_denoise | matches the reference |" in text and "bands swapped" in text


def test_report_page_shows_yours_beside_the_reference_in_chromium(tmp_path):
    try:
        chromium = ensure_chromium(timeout=900)
    except BrowserUnavailable as e:
        pytest.skip(f"no headless browser: {e}")
    raising = tmp_path / "raising.py"
    raising.write_text((IMPLS / "mistake_bands.py").read_text().replace(
        'Path(__file__).with_name("course.py")', f'Path({str(IMPLS / "course.py")!r})')
        + "\n\ndef forward(im, t):\n    return im[99]\n")
    results = check_file(str(raising), "mnist", ["A1.1", "A1.9", "A1.5"], stride=STRIDE)
    page = save(results, tmp_path / "out", {"file": "raising.py", "backend": "mnist", "seed": 180, "stride": STRIDE})
    html = page.read_text()
    assert "IndexError" in html and "bands swapped" in html and "Traceback" in html
    shot = tmp_path / "page.png"
    check = check_page(page.as_uri(), screenshot=shot, chromium=chromium)
    assert len(check.images) == html.count("<img ") == 6  # yours, reference, difference for A1.9 and A1.5
    assert check.broken_images == [] and check.console_errors == []
    assert {"verdicts", "A1-1", "A1-9", "A1-5"} <= set(check.ids)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
