"""The shipped checkpoints' two formats: int8 rounds every weight to within half its channel's scale, an
int8 checkpoint loads as the fp16 one's model to within a stated bound, and both export and measure."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file

from harness.cli import main
from harness.errors import HarnessError
from harness.partb import checkpoints
from harness.partb.evaluate import measure
from harness.partb.int8 import dequantize, quantize, transposed
from harness.partb.train import PRESETS, build_model


@pytest.mark.parametrize("axis", [0, 1])
def test_int8_round_trip_is_within_half_a_step_of_each_channel(axis):
    """Four channels along ``axis`` of a known tensor, at gains 1, 1e-3, 0 and 40."""
    shape = [3, 3, 5, 5]
    shape[axis] = 4
    gains = torch.tensor([1.0, 1e-3, 0.0, 40.0]).reshape([4 if d == axis else 1 for d in range(4)])
    w = torch.linspace(-1, 1, gains.new_zeros(shape).numel()).reshape(shape) ** 3 * gains
    others = [d for d in range(4) if d != axis]
    q, s = quantize(w, axis)
    assert q.dtype == torch.int8 and s.shape == gains.shape
    assert torch.equal(s.flatten()[[0, 1, 3]], (w.abs().amax(others) / 127)[[0, 1, 3]])  # s_c = max|w_c| / 127
    assert q.abs().amax(others).tolist() == [127, 127, 0, 127]
    assert (dequantize(q, s) - w).abs().le(s / 2 * (1 + 1e-6)).all()  # |w - s q| <= s/2, float rounding aside


def test_transposed_convs_quantise_along_their_output_channels():
    model = build_model("time", 8)
    names = transposed(model)
    assert names == {"unflatten.0.weight", "up1.0.0.weight", "up2.0.0.weight"}
    tensors = checkpoints.encode(model.state_dict(), "int8", names)
    assert tensors["up1.0.0.weight.scale"].shape == (1, 8, 1, 1)  # (in 32, out 8, 4, 4)
    assert tensors["conv_in.0.0.weight.scale"].shape == (8, 1, 1, 1)
    assert tensors["fc1_t.0.weight.scale"].shape == (16, 1) and tensors["conv_in.0.1.weight"].dtype == torch.float16


def _inputs(kind: str) -> tuple[torch.Tensor, ...]:
    x = torch.randn((10, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 1, 10)
    return {"denoiser": (x,), "time": (x, t), "class": (x, t, torch.eye(10))}[kind]


def _shipped(weights: str) -> list[tuple[str, int]]:
    """(kind, epoch) of the shipped checkpoints stored as ``weights``."""
    return [(kind, epoch) for kind in ("denoiser", "time", "class") for epoch in checkpoints.saved_epochs(kind)
            if checkpoints.load(kind, epoch)[1]["weights"] == weights]


@pytest.mark.parametrize(("kind", "epoch"), _shipped("fp16"))
def test_an_int8_checkpoint_loads_as_the_fp16_model_within_two_percent(kind, epoch):
    """On a fixed input, the int8 model's outputs are within 2% of the fp16 model's largest output
    (the D=24 quick set: 0.3-1.0%; the D=64 time and class models, shipped as int8, were measured against
    their float32 checkpoints when exported: docs/partb.md)."""
    data = checkpoints.read(kind, epoch, weights="int8")
    tensors = load_tensors(data)
    assert sum(v.dtype == torch.int8 for v in tensors.values()) == sum(k.endswith(".scale") for k in tensors) > 10
    assert len(data) < 0.55 * len(checkpoints.read(kind, epoch))
    fp16, meta16 = checkpoints.load(kind, epoch)
    int8, meta8 = checkpoints.model_of(data)
    assert (meta16["weights"], meta8["weights"]) == ("fp16", "int8")
    assert {k: v for k, v in meta8.items() if k != "weights"} == {k: v for k, v in meta16.items() if k != "weights"}
    with torch.no_grad():
        a, b = fp16(*_inputs(kind)), int8(*_inputs(kind))
    assert (a - b).abs().max() <= 0.02 * a.abs().max()
    again = checkpoints.load(kind, epoch, weights="fp16")[0].state_dict()  # re-stored as fp16: the same model
    assert all(torch.equal(v, again[k]) for k, v in fp16.state_dict().items())


@pytest.mark.parametrize(("kind", "epoch"), _shipped("int8"))
def test_an_int8_checkpoint_stored_again_is_the_same_file(kind, epoch):
    """Re-storing a shipped int8 checkpoint as int8 (what `gpu-home --ship-checkpoints --weights int8` and
    `measure --weights int8` do) keeps every int8 weight and fp16 tensor, and each scale to float32
    rounding (s' = 127 s / 127): shipping never drifts."""
    shipped = load_tensors((checkpoints.shipped_dir() / f"{kind}_epoch{epoch}.safetensors").read_bytes())
    again = load_tensors(checkpoints.read(kind, epoch, weights="int8"))
    assert again.keys() == shipped.keys()
    for name, v in shipped.items():
        if name.endswith(checkpoints.SCALE):
            torch.testing.assert_close(again[name], v, rtol=2**-22, atol=0)
        else:
            assert again[name].dtype == v.dtype and torch.equal(again[name], v), name


def _training_dir(path, kind: str = "time") -> None:
    """A run's folder as training writes it: float32 checkpoints with the recipe in their metadata, loss CSVs."""
    recipe = PRESETS["quick"][kind]
    for epoch in (1, 5):
        state = build_model(kind, recipe.num_hiddens, torch.Generator().manual_seed(epoch)).state_dict()
        save_file(state, str(path / f"{kind}_epoch{epoch}.safetensors"),
                  metadata={"recipe": recipe.to_json(), "epoch": str(epoch)})
    (path / f"{kind}_train_loss.csv").write_text("step,epoch,train_loss\n1,1,0.5\n")
    (path / f"{kind}_test_loss.csv").write_text("epoch,test_loss\n1,0.4\n")


def test_export_writes_either_format_with_its_metrics(tmp_path):
    _training_dir(tmp_path)
    sizes = {}
    for weights in checkpoints.WEIGHTS:
        root = tmp_path / weights
        root.mkdir()
        written = checkpoints.export(tmp_path, "time", {"5": {"fid_lite": 99.5}}, root, weights)
        assert [p.name for p in written] == ["time_epoch1.safetensors", "time_epoch5.safetensors"]
        model, meta = checkpoints.load("time", 5, root)
        assert (meta["weights"], meta["fid_lite"]) == (weights, "99.5") and not model.training
        assert checkpoints.loss_log("time", root) == ([(1, 1, 0.5)], [(1, 0.4)])
        sizes[weights] = sum(p.stat().st_size for p in written)
    assert sizes["int8"] < 0.55 * sizes["fp16"]
    with pytest.raises(HarnessError, match="unknown weights format 'int4': use one of fp16, int8"):
        checkpoints.export(tmp_path, "time", root=tmp_path / "int8", weights="int4")


def test_measure_gives_the_format_and_its_bytes(tmp_path):
    out = tmp_path / "m.json"
    assert main(["measure", "denoiser", "--epoch", "1", "--samples", "20", "--weights", "int8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["weights"], result["bytes"]) == ("int8", len(checkpoints.read("denoiser", 1, weights="int8")))
    assert result["psnr_sigma0.5"] > 15


def test_train_exports_and_measures_in_the_chosen_format(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "shipped_dir", lambda: tmp_path / "shipped")
    (tmp_path / "shipped").mkdir()
    args = ["train", "denoiser", "--out", str(tmp_path / "run"), "--max-steps", "2", "--no-progress", "--export",
            "--weights", "int8"]
    for pair in ("num_hiddens=8", "subset=64", "test_subset=32", "epochs=1", "save_epochs=[1]"):
        args += ["--set", pair]
    assert main(args) == 0
    meta = checkpoints.load("denoiser", 1, tmp_path / "shipped")[1]
    measured = checkpoints.load("denoiser", 1, tmp_path / "run", weights="int8")[0]
    assert meta["weights"] == "int8"
    assert float(meta["psnr_sigma0.5"]) == measure("denoiser", measured)["psnr_sigma0.5"]
