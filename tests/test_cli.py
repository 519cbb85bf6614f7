"""The command line: list, run, golden update, and its errors (exit 2 with the valid names)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.devices import fix_threads
from harness.seeding import DEFAULT_SEED


def test_list_shows_every_section_with_backends(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for sid in ("A0", "A1.1", "A1.4", "A1.7.2", "A1.9"):
        assert f"{sid} " in text
    assert "tiny-if" in text and "deepfloyd" in text


def test_unknown_section_exits_2_with_the_valid_list(capsys):
    assert main(["run", "A9.9"]) == 2
    err = capsys.readouterr().err
    assert "unknown section 'A9.9'" in err and "A1.4" in err


def test_unknown_backend_exits_2_with_the_valid_list(capsys):
    assert main(["run", "A1.1", "--backend", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'nope'" in err and "tiny-if" in err


def test_input_a_section_does_not_take_is_refused(capsys, tmp_path):
    assert main(["run", "A1.8", "--prompt", "a dog"]) == 2
    assert "takes no --prompt" in capsys.readouterr().err


def test_run_writes_pngs_and_metrics(tmp_path, capsys):
    assert main(["run", "A1.1", "--out", str(tmp_path), "--no-progress"]) == 0
    folder = tmp_path / "A1.1" / "tiny-if"
    assert {"clean.png", "noisy_t250.png", "metrics.json"} <= {p.name for p in folder.iterdir()}
    record = json.loads((folder / "metrics.json").read_text())
    assert record["meta"]["seed"] == 180 and "noisy_t750_psnr" in record["metrics"]


def test_user_image_and_bad_user_image(tmp_path, capsys):
    from harness.image_io import save_png
    from harness.images import test_image

    good = tmp_path / "mine.png"
    save_png(good, test_image("coffee")[0])
    assert main(["run", "A1.1", "--image", str(good), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "o" / "A1.1" / "tiny-if" / "metrics.json").read_text())["meta"]
    assert meta["images"] == [{"source": str(good), "loaded_as": "RGB 64x64, tiny-if's image shape"}]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    capsys.readouterr()  # the good run's output (pipeline loading, where this worker had not loaded it yet)
    assert main(["run", "A1.1", "--image", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.png" in err and len(err.splitlines()) == 1


def test_own_inputs_are_never_judged_against_the_default_golden():
    """An empty --prompt is the user's own too (it was judged, and failed); the default seed is not.
    End to end: tests/test_cli_bad_values.py's negative seed."""
    from argparse import Namespace

    from harness.cli import own_inputs

    default = dict(image=None, mask=None, prompt=None, seed=DEFAULT_SEED)
    assert own_inputs(Namespace(**default)) == []
    assert own_inputs(Namespace(**{**default, "prompt": ""})) == ["--prompt"]
    assert own_inputs(Namespace(**{**default, "image": "a.png", "seed": 0})) == ["--image", "--seed"]


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "harness", "list"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "A1.9" in res.stdout


def test_golden_update_writes_where_compare_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_GOLDEN_ROOT", str(tmp_path))
    assert main(["golden", "update", "A1.1", "--backend", "tiny-if"]) == 0
    assert (tmp_path / "cpu" / "tiny-if" / "A1.1" / "images.npz").exists()


def test_inpainting_with_a_user_image_and_mask(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from harness.image_io import save_png
    from harness.images import test_image

    save_png(tmp_path / "me.png", test_image("coffee")[0])
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 20:40] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    assert main(["run", "A1.7.2", "--image", str(tmp_path / "me.png"), "--mask", str(tmp_path / "mask.png"),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "o" / "A1.7.2" / "tiny-if" / "metrics.json").read_text())
    assert record["meta"]["masks"] == ["user"] and record["metrics"]["known_region_max_abs_err"] < 1e-6
    Image.fromarray(m[:32]).save(tmp_path / "small.png")  # another size: resized to the image's, and said so
    assert main(["run", "A1.7.2", "--image", str(tmp_path / "me.png"), "--mask", str(tmp_path / "small.png"),
                 "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "s" / "A1.7.2" / "tiny-if" / "metrics.json").read_text())
    assert "resized from 64x32 to the image's 64x64 (nearest-neighbour)" in record["meta"]["images"][0]["mask"]
    assert record["metrics"]["known_region_max_abs_err"] < 1e-6


def test_train_passes_the_speed_flags(monkeypatch, tmp_path):
    from harness.partb import train as train_module

    seen = {}

    def fake_train(kind, preset, out, seed, device, resume, max_steps, progress, speed, world, **overrides):
        seen.update(kind=kind, preset=preset, speed=speed, overrides=overrides)
        return type("T", (), {"epoch": 0, "recipe": None})()

    monkeypatch.setattr(train_module, "train", fake_train)
    assert main(["train", "time", "--preset", "course", "--out", str(tmp_path), "--bf16", "--compile",
                 "--set", "epochs=2", "--set", "save_epochs=[1,2]"]) == 0
    assert seen == {"kind": "time", "preset": "course", "overrides": {"epochs": 2, "save_epochs": (1, 2)},
                    "speed": train_module.Speed(bf16=True, channels_last=False, compile=True)}


@pytest.mark.parametrize("pair, says", [("epoch=2", "FIELD one of"), ("epochs", "FIELD=VALUE"),
                                        ("lr=fast", "not JSON"), ("kind=class", "FIELD one of")])
def test_train_set_names_a_bad_recipe_field(pair, says, capsys):
    assert main(["train", "time", "--set", pair]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_golden_update_refuses_a_backend_without_goldens(capsys):
    assert main(["golden", "update", "A1.1", "--backend", "deepfloyd-random"]) == 1
    err = capsys.readouterr().err
    assert "deepfloyd-random keeps no goldens" in err and "tiny-if" in err


def test_a_user_photo_on_mnist_is_loaded_grey_at_28_px(tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(photo)
    assert main(["run", "A1.7", "--image", str(photo), "--backend", "mnist", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "o" / "A1.7" / "mnist" / "metrics.json").read_text())["meta"]
    assert meta["images"] == [{"source": str(photo), "loaded_as": "grey 28x28, mnist's image shape"}]


@pytest.mark.parametrize("device, build, says", [("cuda", None, "--device cuda: this torch is a CPU build"),
                                                  ("cuda", "13.0", "--device cuda: no CUDA GPU is visible"),
                                                  ("gpu", None, "--device 'gpu' is not a torch device")])
def test_an_unusable_device_is_one_line(device, build, says, capsys, monkeypatch):
    """On any machine: a CPU build of torch, or a CUDA build that sees no GPU."""
    monkeypatch.setattr(torch.version, "cuda", build)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "A1.4", "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "pass" in err and len(err.splitlines()) == 1


def test_run_uses_the_thread_count_the_goldens_use(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_NUM_THREADS", "1")
    try:
        assert main(["run", "A1.1", "--out", str(tmp_path), "--no-progress"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        monkeypatch.undo()
        fix_threads()  # the suite's own count again


def test_threads_are_shared_out_among_xdist_workers():
    from harness.devices import thread_count

    assert thread_count({}, cores=2) == 2  # serial: the goldens' count
    assert thread_count({"PYTEST_XDIST_WORKER_COUNT": "2"}, cores=2) == 1
    assert thread_count({"PYTEST_XDIST_WORKER_COUNT": "4"}, cores=16) == 4
    assert thread_count({"PYTEST_XDIST_WORKER_COUNT": "8"}, cores=2) == 1
    assert thread_count({"PYTEST_XDIST_WORKER_COUNT": "2", "HARNESS_NUM_THREADS": "3"}, cores=2) == 3
    assert thread_count({"LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"}, cores=16) == 8  # torchrun ranks on this machine


@pytest.mark.parametrize("fast, expected", [(None, "True True False False :4096:8"), ("1", "False False False True unset")])
def test_cuda_kernels_are_deterministic_unless_opted_out(fast, expected):
    """fix_threads (every CLI command, the tests, the GPU check's processes) asks for deterministic CUDA
    kernels; HARNESS_FAST_CUDA=1 leaves torch's fast defaults. In a fresh process (the settings are
    global), with a GPU made visible to the check."""
    script = ("import os, torch; torch.cuda.is_available = lambda: True\n"
              "from harness.devices import fix_threads; fix_threads()\n"
              "print(torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,\n"
              "      torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,\n"
              "      os.environ.get('CUBLAS_WORKSPACE_CONFIG', 'unset'))")
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_FAST_CUDA", "CUBLAS_WORKSPACE_CONFIG")}
    if fast:
        env["HARNESS_FAST_CUDA"] = fast
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert res.stdout.split() == expected.split(), res.stderr[-2000:]


def test_each_cuda_run_records_its_kernels(monkeypatch):
    from harness.runner import _run_info

    assert "cuda_kernels" not in _run_info("cpu")
    assert _run_info("cuda")["cuda_kernels"] == "deterministic"
    monkeypatch.setenv("HARNESS_FAST_CUDA", "1")
    assert _run_info("cuda:0")["cuda_kernels"] == "fast"


def test_xdist_workers_take_gpus_in_turn():
    from harness.devices import worker_device

    assert [worker_device("cuda", f"gw{k}", 3) for k in range(5)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert worker_device("cuda", "gw3", 1) == "cuda"  # one GPU: all workers share it
    assert worker_device("cuda:1", "gw0", 4) == "cuda:1" and worker_device("cpu", "gw1", 4) == "cpu"
    assert worker_device("cuda", None, 4) == "cuda"  # not under xdist
