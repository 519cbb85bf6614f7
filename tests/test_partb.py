"""Part B: data safety, the course UNets, training, DDPM sampling and FID-lite."""

import dataclasses
import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.partb import mnist
from harness.partb.checkpoints import load_model
from harness.partb.fid import fid_lite, load_classifier
from harness.partb.sampling import ddpm_sample, partb_timesteps
from harness.devices import cpu_bf16_units, device_name
from harness.errors import BadValue, UnknownName
from harness.partb.checkpoints import model_of
from harness.partb.speed import CPU_DEFAULT, Speed, for_training
from harness.partb.train import PRESETS, Trainer, build_model, train
from harness.partb.unet import ClassConditionalUNet, TimeConditionalUNet, UnconditionalUNet
from harness.schedules import linear_alphas_cumprod
from harness.seeding import generators


def conv(ci, co, k=3):  # conv + BatchNorm parameters
    return k * k * ci * co + co + 2 * co


def block(ci, co):  # ConvBlock
    return conv(ci, co) + conv(co, co)


def fc(ci, co):
    return ci * co + co + co * co + co


def unconditional(D):
    return (block(1, D) + conv(D, D) + block(D, D) + conv(D, 2 * D) + block(2 * D, 2 * D)
            + conv(2 * D, 2 * D, 7) + conv(4 * D, D, 4) + block(D, D) + conv(2 * D, D, 4) + block(D, D)
            + block(2 * D, D) + 9 * D + 1)


@pytest.mark.parametrize("D", [16, 64])
def test_unet_shapes_and_parameter_counts(D):
    x = torch.rand(3, 1, 28, 28)
    t, c = torch.rand(3), torch.eye(10)[:3]
    models = {UnconditionalUNet(num_hiddens=D): ((x,), unconditional(D)),
              TimeConditionalUNet(num_hiddens=D): ((x, t), unconditional(D) + fc(1, 2 * D) + fc(1, D)),
              ClassConditionalUNet(num_hiddens=D): ((x, t, c), unconditional(D) + fc(1, 2 * D) + fc(1, D)
                                                    + fc(10, 2 * D) + fc(10, D))}
    for model, (args, count) in models.items():
        assert model(*args).shape == (3, 1, 28, 28)
        assert sum(p.numel() for p in model.parameters()) == count, type(model).__name__


def test_each_sample_is_conditioned_on_its_own_class_and_zeros_is_a_class_of_its_own():
    """The class-conditioned UNet reads c per sample (a batch of classes 3, 7 and the null class, zeros, gives
    what each gives alone) and each of the three changes the output (a class ignored or broadcast fails). The
    shipped model: at its initialisation the class changes the output by ~1e-6 only."""
    model = load_model("class", 20)
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1)).expand(3, -1, -1, -1)
    t, c = torch.full((3,), 0.5), torch.cat([torch.eye(10)[[3, 7]], torch.zeros(1, 10)])
    with torch.no_grad():
        out = model(x, t, c)
        alone = torch.cat([model(x[:1], t[:1], c[k:k + 1]) for k in range(3)])
    torch.testing.assert_close(out, alone)
    apart = min(float((out[i] - out[j]).abs().max()) for i, j in ((0, 1), (0, 2), (1, 2)))
    assert apart > 1e-3 * float(out.abs().max())


def test_restricted_unpickler_refuses_anything_but_arrays(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    with pytest.raises(pickle.UnpicklingError, match="refusing global"):
        mnist.unpickle_arrays(gzip.compress(pickle.dumps(Evil(), protocol=2)))
    assert not (tmp_path / "pwned").exists()
    arrays = (np.zeros((2, 784), np.float32), np.arange(2))
    out = mnist.unpickle_arrays(pickle.dumps(arrays, protocol=4))  # protocol 2 in py3 would need _codecs
    assert np.array_equal(out[1], np.arange(2))


def test_idx_reader_round_trip_and_truncation(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    raw = struct.pack(">HBB3I", 0, 8, 3, 2, 28, 28) + images.tobytes()
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(mnist.read_idx(tmp_path / "a.gz"), images)
    (tmp_path / "b").write_bytes(raw[:-10])
    with pytest.raises(mnist.MnistUnavailable, match="truncated"):
        mnist.read_idx(tmp_path / "b")


def test_idx_root_is_used_when_given(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.full((3, 28, 28), 7, np.uint8)
    (raw / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">HBB3I", 0, 8, 3, 3, 28, 28) + imgs.tobytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, 3) + bytes([1, 2, 3]))
    x, y = mnist.load_mnist("test", root=tmp_path)
    assert x.shape == (3, 28, 28) and y.tolist() == [1, 2, 3]
    assert mnist.to_float(x).max() == pytest.approx(7 / 255)


def test_corrupt_cache_is_detected_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.delenv("MNIST_ROOT", raising=False)  # the GPU check sets it; the cache is read only without it
    path = mnist.cache_path()
    buf = io.BytesIO()
    np.savez(buf, test_images=np.zeros((1, 28, 28), np.uint8), test_labels=np.zeros(1, np.int64))
    path.write_bytes(buf.getvalue()[:-20])  # truncated, and no matching checksum
    with pytest.raises(mnist.MnistUnavailable, match="corrupt"):
        mnist.load_mnist("test")


def test_real_mnist_cache():
    x, y = mnist.load_mnist("train")
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and np.bincount(y).sum() == 60000
    assert mnist.load_mnist("test")[0].shape == (10000, 28, 28)


@pytest.mark.parametrize("kind", ["denoiser", "time", "class"])
def test_training_smoke_loss_falls_and_is_reproducible(kind, tmp_path):
    kw = dict(out_dir=tmp_path / "a", progress=False, max_steps=60, epochs=2, save_epochs=(2,), subset=512,
              num_hiddens=8, batch_size=32, test_subset=256, resume=False)
    trainer = train(kind, "quick", **kw)
    first, last = trainer.test_log[0][1], trainer.test_log[-1][1]
    early = np.mean([v for _, _, v in trainer.train_log[:10]])
    late = np.mean([v for _, _, v in trainer.train_log[-10:]])
    assert late < early and last < first
    again = train(kind, "quick", **{**kw, "out_dir": tmp_path / "b"})
    assert trainer.train_log == again.train_log
    assert (tmp_path / "a" / f"{kind}_epoch2.safetensors").exists() and (tmp_path / "a" / f"{kind}_loss.png").exists()


@pytest.mark.parametrize("speed", [Speed(), CPU_DEFAULT], ids=Speed.label)
def test_resume_continues_bitwise(tmp_path, speed):
    """Also in bf16 with channels_last, the CPU default (emulated where the CPU has no bf16 units: still
    deterministic); a resume with other speed flags is refused, and the checkpoint names its speed."""
    recipe = dataclasses.replace(PRESETS["quick"]["time"], epochs=2, subset=256, num_hiddens=8, batch_size=32,
                                 test_subset=128)
    straight = Trainer(recipe, tmp_path / "a", speed=speed)
    for _ in range(2):
        straight.train_epoch(progress=False, max_steps=5)
    first = Trainer(recipe, tmp_path / "b", speed=speed)
    first.train_epoch(progress=False, max_steps=5)
    first.save_state()
    with pytest.raises(BadValue, match="resume with the same speed flags"):
        Trainer(recipe, tmp_path / "b", speed=Speed(channels_last=True)).load_state()
    resumed = Trainer(recipe, tmp_path / "b", speed=speed)  # a new process would start here
    assert resumed.load_state() and resumed.epoch == 1
    resumed.train_epoch(progress=False, max_steps=5)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.train_log == resumed.train_log
    _, meta = model_of(Path(resumed.save_checkpoint()).read_bytes())
    assert meta["speed"] == speed.label() and meta["trained_on"] == device_name("cpu")


@pytest.mark.parametrize("units", ["amx_bf16 avx512_bf16", None])
def test_training_speed_is_decided_once(units):
    """No flag on a CPU: bf16 + channels_last, or fp32 with one line where the CPU has no bf16 units; --fp32
    the reference loop; on a GPU no flag is fp32 eager and flags are kept."""
    bf16_units = lambda: units  # noqa: E731
    assert for_training(Speed(), True, "cpu", bf16_units) == (Speed(), None)
    assert for_training(Speed(), False, "cuda", bf16_units) == (Speed(), None)
    assert for_training(Speed(bf16=True, graphs=True), False, "cuda", bf16_units) == (Speed(bf16=True, graphs=True), None)
    assert for_training(Speed(channels_last=True), False, "cpu", bf16_units) == (Speed(channels_last=True), None)
    speed, notice = for_training(Speed(), False, "cpu", bf16_units)
    if units:
        assert (speed, notice) == (CPU_DEFAULT, None)
    else:
        assert speed == Speed(channels_last=True) and "no bf16 units" in notice and "\n" not in notice
        assert for_training(Speed(bf16=True), False, "cpu", bf16_units)[0] == Speed()


def test_bf16_units_are_oneDNN_s():
    units = cpu_bf16_units()
    assert (units is not None) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert device_name("cpu") == f"cpu ({units or 'no bf16 units'})"


def _graphs_run(tmp_path, device: str, graphs: bool) -> Trainer:
    """2 epochs of 3 steps of a narrow class model, the last batch of each epoch partial (eager even under
    --graphs), the lr decaying between epochs."""
    recipe = dataclasses.replace(PRESETS["quick"]["class"], epochs=2, subset=80, num_hiddens=8, batch_size=32,
                                 test_subset=64)
    trainer = Trainer(recipe, tmp_path / str(graphs), device=device, speed=Speed(graphs=graphs))
    for _ in range(recipe.epochs):
        trainer.train_epoch(progress=False)
    return trainer


def test_graphs_on_the_cpu_are_the_eager_step_bitwise(tmp_path):
    eager, graphed = _graphs_run(tmp_path, "cpu", False), _graphs_run(tmp_path, "cpu", True)
    assert graphed.graphed is None and eager.train_log == graphed.train_log
    for a, b in zip(eager.model.state_dict().values(), graphed.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_the_graphed_step_equals_eager_on_cuda(tmp_path):
    """The same draws through the captured step: weights and losses as eager's to float rounding (capturable
    Adam computes the same update on the device; the warm-up before capture is undone)."""
    eager, graphed = _graphs_run(tmp_path, "cuda", False), _graphs_run(tmp_path, "cuda", True)
    assert graphed.graphed is not None
    np.testing.assert_allclose([v for *_, v in graphed.train_log], [v for *_, v in eager.train_log], rtol=1e-4)
    for name, a in eager.model.state_dict().items():
        b = graphed.model.state_dict()[name]
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-5), name


def test_graphs_refuse_compile(tmp_path):
    recipe = dataclasses.replace(PRESETS["quick"]["time"], subset=64, num_hiddens=8, test_subset=64)
    with pytest.raises(UnknownName, match="--graphs runs one process without --compile"):
        Trainer(recipe, tmp_path, device="cuda", speed=Speed(graphs=True, compile=True))


def test_presets_match_the_writeups():
    course = PRESETS["course"]
    assert (course["denoiser"].num_hiddens, course["denoiser"].batch_size, course["denoiser"].lr) == (128, 256, 1e-4)
    assert (course["time"].num_hiddens, course["time"].batch_size, course["time"].epochs) == (64, 128, 20)
    assert course["class"].p_uncond == 0.1 and course["time"].T == 300


def test_sampling_is_deterministic_and_batch_independent():
    model = build_model("class", 8, torch.Generator().manual_seed(0)).eval()
    abar = linear_alphas_cumprod(300)
    labels = torch.tensor([1, 2, 3])
    a, _ = ddpm_sample(model, abar, generators(0, "s", 3), labels, stride=30)
    b, _ = ddpm_sample(model, abar, generators(0, "s", 3), labels, stride=30)
    one, frames = ddpm_sample(model, abar, generators(0, "s", 3)[1:2], labels[1:2], stride=30, keep_every=2)
    assert torch.equal(a, b) and torch.allclose(a[1], one[0], atol=1e-5)
    assert partb_timesteps(300, 30)[:2] == [299, 269] and partb_timesteps(300, 30)[-1] == 0
    assert len(frames) == 6 and a.min() >= 0 and a.max() <= 1


def test_fid_lite_of_a_set_against_itself_is_zero_and_the_classifier_is_accurate():
    clf, meta = load_classifier()
    assert meta["test_accuracy"] >= 0.99
    x = mnist.to_float(mnist.load_mnist("test")[0][:300])
    assert abs(fid_lite(x, x, clf)) < 1e-6
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    assert fid_lite(x, noise, clf) > 10 * meta["fid_lite_floor"]
