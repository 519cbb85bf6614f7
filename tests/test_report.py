"""The report: built from small synthetic case folders (written with the real save_outputs and
record_verdict, so the golden data flow is the real one), laid out per section and backend, a failing
golden shown as golden / obtained / diff, benchmarks, clear errors; and checked in headless Chromium."""

import json
import re
from pathlib import Path

import pytest
import torch

from harness import golden
from harness.cli import _cases, main
from harness.errors import HarnessError
from harness.outputs import Outputs
from harness.report import build_report
from tests.browser import BrowserUnavailable, check_page, ensure_chromium
from harness.runner import record_verdict, save_outputs
from harness.sections import SECTIONS


def _images(n: int, size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


def _forward(backend: str, size: int, channels: int) -> Outputs:
    out = Outputs(meta={"section": "A1.1", "backend": backend, "seed": 180, "params": {"image": "rocket", "t": [250, 500, 750]}})
    out.add_image("clean", _images(1, size, channels)[0])
    for k, t in enumerate((250, 500, 750)):
        out.add_image(f"noisy_t{t}", _images(1, size, channels, seed=k + 1)[0])
        out.metrics[f"noisy_t{t}_psnr"] = 20.0 - 5 * k
    out.add_rounding("noise_gap", 1e-6)
    return out


def _inpaint() -> Outputs:
    out = Outputs(meta={"section": "A1.7.2", "backend": "tiny-if", "seed": 180, "masks": ["center_top", "ellipse", "rectangle"],
                        "params": {"images": ["rocket", "astronaut", "chelsea"], "stride": 30}})
    mask = torch.zeros(3, 1, 64, 64)
    mask[:, :, 16:48, 16:48] = 1
    out.add_image("clean", _images(3, 64))
    out.add_image("mask", mask.expand(3, 3, 64, 64) * 2 - 1)
    out.add_image("inpainted", _images(3, 64, seed=5))
    out.metrics["known_region_max_abs_err"] = 0.0
    return out


def _class_samples() -> Outputs:
    out = Outputs(meta={"section": "B2.5", "backend": "mnist", "seed": 180,
                        "params": {"epochs": [1, 5], "cfg_scale": 5.0, "sweep_cfg_scales": [0.0, 5.0]}})
    for e in (1, 5):
        out.add_image(f"samples_epoch{e}", _images(40, 28, 1, seed=e))
    for g in (0, 5):
        out.add_image(f"sweep_cfg{g}", _images(10, 28, 1, seed=10 + g))
        out.metrics[f"accuracy_cfg{g}"], out.metrics[f"fid_lite_cfg{g}"] = 0.5 + g / 10, 200.0 - g
    out.add_animation("sampling", _images(30, 28, 1).reshape(3, 10, 1, 28, 28))
    return out


BENCH = {"datetime": "2026-01-02T03:04:05", "machine_info": {"cpu": {"brand_raw": "Test CPU"}}, "commit_info": {"id": "abc123"},
         "benchmarks": [{"name": f"test_sampler[{s}-{g}-1]", "group": f"sampler tiny-if {g} batch 1",
                         "params": {"stride": s, "guide": g, "batch": 1, "backend": "tiny-if"}, "stats": {"median": 30 / s},
                         "extra_info": {"images_per_s": s / 30, "unet_calls_per_s": 9.0, "efficiency": 0.9,
                                        **({"batched_speedup": 1.6, "vs_diffusers": 1.2} if g == "cfg" else {})}}
                        for s in (30, 15) for g in ("plain", "cfg")]}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Case folders for A1.1 on two backends (passing goldens), A1.7.2 with a deliberately failing golden
    (one image and one metric moved), B2.5 without a golden; and a saved benchmark run."""
    root = tmp_path_factory.mktemp("outputs")
    goldens = root / "golden"
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_GOLDEN_ROOT", str(goldens))
    mp.setattr(golden, "_versions", lambda: {})  # no diffusers import for a synthetic golden
    try:
        for out in (_forward("tiny-if", 64, 3), _forward("mnist", 28, 1), _inpaint()):
            golden.write(out, out.meta["backend"], "cpu")
        moved = _inpaint()
        moved.images["inpainted"][1, :, 20:30, 20:30] += 0.5
        moved.metrics["known_region_max_abs_err"] = 0.25
        for out in (_forward("tiny-if", 64, 3), _forward("mnist", 28, 1), moved, _class_samples()):
            folder = save_outputs(out, root / "out" / out.meta["section"] / out.meta["backend"])
            if out.meta["section"] != "B2.5":
                record_verdict(out, folder, "cpu", failures_root=root / "out" / "golden-failures")
    finally:
        mp.undo()
    (root / "bench" / "cpu" / "Linux-CPython-3.11-64bit").mkdir(parents=True)  # make bench's layout
    (root / "bench" / "cpu" / "Linux-CPython-3.11-64bit" / "0001_abc.json").write_text(json.dumps(BENCH))
    return root


@pytest.fixture(scope="module")
def report(outputs):
    index = build_report(outputs / "out", outputs / "report", benchmarks_root=outputs / "bench")
    return index, index.read_text()


def _article(html: str, anchor: str) -> str:
    return re.search(rf'<article class="case" id="{re.escape(anchor)}">(.*?)</article>', html, re.S).group(1)


def test_every_section_in_writeup_order_once_per_backend(report):
    index, html = report
    ids = re.findall(r'<section class="section" id="([^"]+)"', html)
    assert ids == [s.id.replace(".", "-") for s in SECTIONS.values()] + ["benchmarks", "environment"]
    assert 'id="A1-1--tiny-if"' in html and 'id="A1-1--mnist"' in html
    assert "Not in these outputs: run <code>python -m harness run A1.4" in html


def test_layout_captions_and_self_contained_pixelated_images(report):
    index, html = report
    forward = _article(html, "A1-1--mnist")
    assert [c for c in re.findall(r"<figcaption>(.*?)</figcaption>", forward)] == ["original", "t = 250", "t = 500", "t = 750"]
    assert 'width="168" height="168"' in forward  # 28x28 shown 6x (nearest neighbour, CSS pixelated)
    inpaint = _article(html, "A1-7-2--tiny-if")
    assert re.findall(r"<figcaption>(original|mask|hole to fill|inpainted)</figcaption>", inpaint)[:4] == \
        ["original", "mask", "hole to fill", "inpainted"]
    sweep = _article(html, "B2-5--mnist")
    assert "cfg_scale 5, accuracy 1.000, FID-lite 195.0" in sweep and "sampling.gif" in sweep
    assert "image-rendering: pixelated" in html
    srcs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert srcs and all(not s.startswith(("http:", "https:", "/", "file:")) for s in srcs)
    assert all((index.parent / s).is_file() for s in srcs)


def test_failing_golden_shows_golden_obtained_and_diff(report):
    index, html = report
    case = _article(html, "A1-7-2--tiny-if")
    assert 'class="badge fail">fail' in case and "Images that differ from the golden" in case
    failing = re.search(r'<div class="label">inpainted<br>(.*?)</div>\s*</div>', case, re.S).group(0)
    assert re.findall(r"<figcaption>(.*?)</figcaption>", failing) == ["golden", "obtained", "|diff| x 5"]
    row = re.search(r'<tr class="fail">(.*?)</tr>', case, re.S).group(1)
    cells = [c.strip() for c in re.findall(r"<td>(.*?)</td>", row)]
    assert cells == ["known_region_max_abs_err", "0.25", "0", "0.25", "FAIL"]
    assert "python -m harness golden update A1.7.2 --backend tiny-if --device cpu" in case
    assert 'class="badge pass">pass' in _article(html, "A1-1--tiny-if")
    rounding = re.search(r"<td>noise_gap</td>(.*?)</tr>", _article(html, "A1-1--tiny-if"), re.S).group(1)
    assert re.findall(r"<td>(.*?)</td>", rounding)[-1] == "by the relations"  # Outputs.add_rounding
    assert "no golden" in _article(html, "B2-5--mnist")


def test_benchmark_chart_and_ratios(report, outputs, tmp_path):
    index, html = report
    bench = re.search(r'<section class="section" id="benchmarks">(.*?)</section>', html, re.S).group(1)
    assert bench.count("<polyline") == 2 and "0001_abc.json" in bench and "Test CPU" in bench
    assert "<th>batched_speedup</th>" in bench and "<th>vs_diffusers</th>" in bench
    empty = build_report(outputs / "out", tmp_path / "r", benchmarks_root=tmp_path / "none").read_text()
    assert "make bench" in empty


def test_no_outputs_and_a_foreign_folder_are_clear_errors(outputs, tmp_path, capsys):
    with pytest.raises(HarnessError, match=r"no outputs under .*: run `python -m harness run all"):
        build_report(tmp_path, tmp_path / "report")
    assert main(["report", "--outputs", str(tmp_path), "--out", str(tmp_path / "r")]) == 2  # a bad --outputs value
    assert "run `python -m harness run all" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(HarnessError, match="is not a report"):
        build_report(outputs / "out", tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"


def test_cli_report_prints_the_index(outputs, capsys):
    assert main(["report", "--outputs", str(outputs / "out"), "--out", str(outputs / "cli-report"),
                 "--backend", "mnist", "--benchmarks", str(outputs / "none")]) == 0
    index = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert index.name == "index.html" and index.is_file()
    assert 'id="B2-5--mnist"' in index.read_text() and 'id="A1-1--tiny-if"' not in index.read_text()


def test_run_all_covers_every_section_on_every_embedded_backend():
    pairs = _cases(["all"], None)
    assert pairs == [(s.id, b) for s in SECTIONS.values() for b in s.backends if b in ("tiny-if", "mnist")]
    assert ("A1.1", "tiny-if") in pairs and ("B2.5", "mnist") in pairs and not any(b == "deepfloyd" for _, b in pairs)
    assert _cases(["A1.1"], None) == [("A1.1", None)]


@pytest.fixture(scope="module")
def chromium():
    try:
        return ensure_chromium(timeout=900)
    except BrowserUnavailable as e:
        pytest.skip(f"no headless browser: {e}")


def test_report_loads_in_chromium(report, chromium, tmp_path):
    """Every image decodes, no console errors, every section and case id present; a screenshot is saved."""
    index, html = report
    shot = tmp_path / "report.png"
    page = check_page(index.as_uri(), screenshot=shot, chromium=chromium)
    assert len(page.images) == html.count("<img ") > 20
    assert page.broken_images == [] and page.console_errors == []
    wanted = [s.id.replace(".", "-") for s in SECTIONS.values()] + ["benchmarks", "environment",
                                                                       "A1-1--tiny-if", "A1-1--mnist", "A1-7-2--tiny-if", "B2-5--mnist"]
    assert set(wanted) <= set(page.ids)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chromium_check_catches_a_missing_image(report, chromium, tmp_path):
    """The browser check can fail: a report with one image removed shows it broken, with a console error."""
    import shutil

    index, _ = report
    copy = tmp_path / "report"
    shutil.copytree(index.parent, copy)
    (copy / "img" / "A1-1--tiny-if" / "clean.png").unlink()
    page = check_page((copy / "index.html").as_uri(), chromium=chromium)
    assert page.broken_images == ["img/A1-1--tiny-if/clean.png"]
    assert any("ERR_FILE_NOT_FOUND" in e or "clean.png" in e for e in page.console_errors)


def test_an_image_its_layout_does_not_name_is_caught(tmp_path):
    """What the reproductions assert for every case: an image renamed in a run function but not in its
    layout would fall silently into "other outputs"; `unplaced_images` names it."""
    from harness.report.cases import load_case
    from harness.report.layouts import unplaced_images
    from harness.runner import run_case
    from harness.sections import get_section

    folder = save_outputs(run_case("A1.1", "mnist"), tmp_path / "A1.1" / "mnist")
    case = lambda: load_case(get_section("A1.1"), "mnist", folder)  # noqa: E731
    assert unplaced_images(case()) == []
    (folder / "noisy_t250.png").rename(folder / "noisy_250.png")
    assert unplaced_images(case()) == ["noisy_250.png"]
