"""The golden checks can fail: perturbed, missing and corrupt goldens are all caught."""

import json

import numpy as np
import pytest
import torch

from harness import golden
from harness.errors import GoldenError
from harness.golden import GoldenMismatch
from harness.outputs import Outputs
from harness.runner import run_case


def outputs(seed: int = 0) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    out = Outputs(meta={"section": "X1", "backend": "fake"})
    out.add_image("grid", torch.rand(4, 3, 8, 8, generator=g) * 2 - 1)
    out.add_image("one", torch.rand(3, 8, 8, generator=g) * 2 - 1)
    out.metrics = {"psnr": 21.5, "ssim": 0.61}
    return out


@pytest.fixture
def stored(tmp_path):
    out = outputs()
    golden.write(out, "fake", "cpu", root=tmp_path)
    return out, tmp_path


def test_round_trip_passes_and_leaves_no_temp_files(stored):
    out, root = stored
    golden.compare(outputs(), "fake", "cpu", root=root)
    files = sorted(p.name for p in (root / "cpu" / "fake" / "X1").iterdir())
    assert files == ["images.npz", "metrics.json"]
    record = json.loads((root / "cpu" / "fake" / "X1" / "metrics.json").read_text())
    assert {"torch", "diffusers"} <= set(record["versions"]) and record["dtype"] == "float32"


def test_tiny_changes_within_tolerance_pass(stored):
    out, root = stored
    near = outputs()
    near.images["one"] += 1e-4
    near.metrics["psnr"] *= 1 + 1e-4
    golden.compare(near, "fake", "cpu", root=root)


def test_perturbed_image_fails_and_saves_obtained_golden_and_diff(stored, tmp_path):
    out, root = stored
    bad = outputs()
    bad.images["grid"][1, 0, 2, 2] += 0.05
    fails = tmp_path / "failures"
    with pytest.raises(GoldenMismatch, match=r"grid: max\|diff\| 0.05") as err:
        golden.compare(bad, "fake", "cpu", root=root, failures_root=fails)
    folder = fails / "cpu" / "fake" / "X1"
    assert {p.name for p in folder.iterdir()} == {"grid_obtained.png", "grid_golden.png", "grid_diff.png"}
    assert str(folder) in str(err.value) and "golden update X1" in str(err.value)


def test_perturbed_metric_and_renamed_outputs_fail(stored):
    out, root = stored
    bad = outputs()
    bad.metrics["ssim"] += 0.01
    with pytest.raises(GoldenMismatch, match="metric ssim"):
        golden.compare(bad, "fake", "cpu", root=root)
    bad = outputs()
    bad.images["extra"] = bad.images.pop("one")
    with pytest.raises(GoldenMismatch, match="image names differ"):
        golden.compare(bad, "fake", "cpu", root=root)


def test_rounding_metrics_are_left_to_the_relations(stored):
    out, root = stored
    new = outputs()
    new.add_rounding("gap", 0.1)  # a golden recorded before the metric existed (golden/cuda's A1.9)
    assert golden.verdict(new, "fake", "cpu", root=root).passed
    golden.write(new, "fake", "cpu", root=root)
    moved = outputs()
    moved.add_rounding("gap", 0.5)  # changes between processes on CUDA
    assert golden.verdict(moved, "fake", "cpu", root=root).passed
    moved.metrics["new"] = 1.0
    assert "metric names differ" in golden.verdict(moved, "fake", "cpu", root=root).problems[0]


def test_nan_output_fails(stored):
    out, root = stored
    bad = outputs()
    bad.images["one"][0, 0, 0] = float("nan")
    with pytest.raises(GoldenMismatch):
        golden.compare(bad, "fake", "cpu", root=root, failures_root=root / "f")


def test_missing_golden_names_the_command(tmp_path):
    with pytest.raises(GoldenError, match="python -m harness golden update X1 --backend fake --device cpu"):
        golden.compare(outputs(), "fake", "cpu", root=tmp_path)


@pytest.mark.parametrize("damage", ["truncate_npz", "garbage_json", "swap_npz"])
def test_corrupt_golden_is_reported(stored, damage):
    out, root = stored
    folder = root / "cpu" / "fake" / "X1"
    if damage == "truncate_npz":
        data = (folder / "images.npz").read_bytes()
        (folder / "images.npz").write_bytes(data[: len(data) // 2])
    elif damage == "garbage_json":
        (folder / "metrics.json").write_text("{not json")
    else:  # an npz from another run: the recorded sha256 no longer matches
        other = outputs(seed=1)
        golden.write(other, "fake", "cpu", root=root / "other")
        (folder / "images.npz").write_bytes((root / "other" / "cpu" / "fake" / "X1" / "images.npz").read_bytes())
    with pytest.raises(GoldenError, match="corrupt golden for X1") as err:
        golden.compare(outputs(), "fake", "cpu", root=root)
    assert "\n" not in str(err.value)


def test_cuda_tolerance_is_psnr_based():
    tol = golden.TOLERANCES["cuda"]
    assert tol.max_abs is None and tol.min_psnr == 40.0
    a = np.zeros((3, 4, 4), np.float32)
    assert golden.image_psnr(a, a + 0.02) == pytest.approx(10 * np.log10(4 / 0.0004))


def test_a_real_case_fails_its_golden_when_its_output_is_perturbed(tmp_path):
    """The shipped golden of A1.1 on tiny-if: passes as computed, fails once one image moves by 0.02."""
    out = run_case("A1.1", "tiny-if")
    golden.compare(out, "tiny-if", "cpu")
    out.images["noisy_t500"][0, 1, 10, 10] += 0.02
    with pytest.raises(GoldenMismatch, match="noisy_t500"):
        golden.compare(out, "tiny-if", "cpu", failures_root=tmp_path)


@pytest.mark.parametrize("device_class", sorted(golden.TOLERANCES))
def test_every_shipped_golden_is_complete_and_readable(device_class):
    """The committed goldens (CPU ones made here, CUDA ones brought home from a GPU check) cover every case
    of the embedded backends and match their recorded sha256."""
    from harness.runner import cases

    stored = sorted(p.parent for p in (golden.GOLDEN_ROOT / device_class).glob("*/*/metrics.json"))
    assert stored, f"no {device_class} goldens"
    assert sorted((p.parent.name, p.name) for p in stored) == sorted((b, s) for s, b in cases())
    for folder in stored:
        images, record = golden.read(folder.parent.name, folder.name, device_class)
        assert images and record["dtype"] == ("float32" if device_class == "cpu" else "float16")
