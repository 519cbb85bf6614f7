"""Part B on several processes (torchrun; gloo on the CPU, nccl with --device cuda): DDP training takes the
single-process step, a crashed rank is reported and the run resumes, FID-lite splits its samples over ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness import golden
from harness.cli import main
from harness.devices import cuda_kernels
from harness.partb.distributed import World

SCRIPTS = Path(__file__).parent / "scripts"
# A few steps of the time-conditioned recipe at a small width: 2 epochs of 3 steps of a global batch of 64.
# --fp32: the tolerances below are float32's (on a CPU with bf16 units `train` defaults to bf16)
SMALL = ["--fp32", "--set", "epochs=2", "--set", "save_epochs=[2]", "--set", "subset=512", "--set", "num_hiddens=8",
         "--set", "batch_size=64", "--set", "test_subset=64", "--max-steps", "3", "--no-progress"]
# Measured (6 steps, this recipe): DDP on 2 gloo ranks against one process, weights apart by at most 1.4e-4;
# one process on 1 against 2 threads, 1.1e-5; 2 ranks whose BatchNorm sees only its own half (no
# GlobalBatchNorm2d), 1.1e-2. Adam moves a weight by up to lr = 1e-3 a step.
WEIGHT_TOLERANCE = 1e-3


def torchrun(*args: str, nproc: int = 2, timeout: float = 900) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node nproc ARGS``; a hang fails the test at ``timeout``."""
    # the repository on the path: a rank that runs a script (not -m harness) imports harness where it is not installed
    path = os.pathsep.join(filter(None, [str(SCRIPTS.parents[1]), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HARNESS_DIST_TIMEOUT_S": "60", "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           *args], capture_output=True, text=True, timeout=timeout, env=env)


def trained_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The final checkpoint's tensors, without the conv biases that feed a BatchNorm and the BatchNorms'
    running means: their gradient is zero in exact arithmetic (BatchNorm subtracts the mean), so Adam
    turns rounding noise into lr-sized steps, between 1 and 2 threads as between 1 and 2 ranks."""
    state = load_file(folder / "time_epoch2.safetensors")
    means = [k.removesuffix("1.running_mean") for k in state if k.endswith(".1.running_mean")]
    return {k: v for k, v in state.items() if not any(k in (m + "1.running_mean", m + "0.bias") for m in means)}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def losses(folder: Path) -> list[float]:
    return [float(line.split(",")[2]) for line in (folder / "time_train_loss.csv").read_text().splitlines()[1:]]


def test_world_deals_every_item_once_and_weights_the_losses():
    for n, size in ((64, 2), (5, 2), (7, 3), (2, 4)):
        worlds = [World(r, size, r, True) for r in range(size)]
        dealt = sorted(i for w in worlds for i in range(n)[w.share(n)])
        assert dealt == list(range(n))
        assert sum(w.loss_weight(n) for w in worlds) == pytest.approx(size)  # DDP's mean of them is 1
    assert World().share(5) == slice(0, 5, 1) and World().loss_weight(5) == 1
    assert World(1, 2, 1, True).device("cuda") == "cuda:1" and World().device("cuda") == "cuda"


@pytest.fixture
def ranks(request) -> tuple[str, int]:
    """(device, processes) for the torchrun runs: on the CPU 2 gloo ranks; with --device cuda one nccl rank per
    GPU, at most 2 (on one GPU a single rank still goes through nccl and DDP)."""
    device = request.config.getoption("--device")
    return ("cpu", 2) if device == "cpu" else ("cuda", min(2, torch.cuda.device_count()))


def test_ddp_training_takes_the_single_process_step(ranks, tmp_path):
    device, nproc = ranks
    if device == "cuda" and cuda_kernels() == "fast":
        pytest.skip("HARNESS_FAST_CUDA=1: TF32 and autotuned kernels round beyond the fp32 tolerances measured here")
    assert main(["train", "time", "--out", str(tmp_path / "one"), "--device", device, *SMALL]) == 0
    run = torchrun(str(SCRIPTS / "threads_left.py"), "train", "time", "--out", str(tmp_path / "ddp"), "--device", device,
                   *SMALL, nproc=nproc)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count(f"epochs on {nproc} process(es)") == 1  # rank 0 alone reports and writes
    # the process group ended in shutdown: none of its threads (gloo's, nccl's) lives on past it
    left = [line for line in run.stdout.splitlines() if line.startswith("threads left:")]
    assert len(left) == nproc and not any(name in line for line in left for name in ("gloo", "nccl")), left
    assert max_difference(trained_weights(tmp_path / "one"), trained_weights(tmp_path / "ddp")) < WEIGHT_TOLERANCE
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)


def test_a_crashed_rank_is_reported_and_the_run_resumes_bitwise(tmp_path):
    straight = torchrun("-m", "harness", "train", "time", "--out", str(tmp_path / "straight"), *SMALL)
    assert straight.returncode == 0, straight.stderr[-3000:]

    crashed = torchrun(str(SCRIPTS / "crash_rank1.py"), "train", "time", "--out", str(tmp_path / "crash"), *SMALL)
    report = crashed.stdout + crashed.stderr
    assert crashed.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in report and "rank      : 1 (local_rank: 1)" in report
    assert (tmp_path / "crash" / "time_state.pt").exists() and not (tmp_path / "crash" / "time_epoch2.safetensors").exists()

    resumed = torchrun("-m", "harness", "train", "time", "--out", str(tmp_path / "crash"), *SMALL)
    assert resumed.returncode == 0 and "resuming time from epoch 1" in resumed.stdout, resumed.stderr[-3000:]
    assert max_difference(load_file(tmp_path / "straight" / "time_epoch2.safetensors"),
                          load_file(tmp_path / "crash" / "time_epoch2.safetensors")) == 0


def test_fid_lite_over_ranks_equals_one_process(ranks, capsys):
    device, nproc = ranks
    args = ["measure", "class", "--samples", "40", "--stride", "50", "--device", device]
    assert main(args) == 0
    one = json.loads(capsys.readouterr().out)
    two = torchrun("-m", "harness", *args, nproc=nproc)
    assert two.returncode == 0, two.stderr[-3000:]
    two = json.loads(two.stdout)
    assert (one["ranks"], two["ranks"]) == (1, nproc)
    if device == "cpu":
        assert two["fid_lite"] == pytest.approx(one["fid_lite"], rel=1e-9)  # measured 1e-13: sums in another order
        assert two["accuracy_cfg5"] == one["accuracy_cfg5"]
    else:  # one process takes FID-lite's statistics on the CPU, nccl ranks on their GPUs, and each rank samples a
        # smaller batch, which cuBLAS and cuDNN may round otherwise: the CUDA goldens' metric tolerance
        cuda = golden.TOLERANCES["cuda"]
        assert golden.metric_close(two["fid_lite"], one["fid_lite"], cuda)
        assert golden.metric_close(two["accuracy_cfg5"], one["accuracy_cfg5"], cuda)


def test_errors_name_the_rank_and_the_fix(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "time", "--set", "epoch=2"]) == 2
    assert capsys.readouterr().err.startswith("error: rank 1 of 2: --set 'epoch=2'")
    monkeypatch.delenv("WORLD_SIZE")
    assert main(["measure", "class", "--samples", "45"]) == 2
    assert "ask for a multiple of 10" in capsys.readouterr().err
    assert main(["measure", "time", "--samples", "10001"]) == 2
    assert "at most the 10000 test digits" in capsys.readouterr().err
