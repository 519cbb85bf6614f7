"""The GPU runner check, kept from rotting between GPU draws: its dry run on CPU runs every step and comes
home; its time box interrupts and keeps what a step finished; resume, budget and failures are recorded;
the comparisons it makes fail when outputs change."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load, load_file

from harness import golden
from harness.errors import HarnessError
from harness.gpu import check, home
from harness.gpu.cases import image_hashes
from harness.gpu.compare import agreement, determinism
from harness.gpu.home import junit_counts, unpack
from harness.outputs import Outputs
from harness.partb import checkpoints
from harness.partb.mnist import read_idx, write_idx

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """`bash scripts/gpu_check.sh --dry-run` as a user runs it (every step, CPU, tiny sizes)."""
    tmp = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(tmp / "out"), "--work", str(tmp / "work")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)  # a hang guard only
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return tmp, res.stdout


def test_dry_run_runs_every_step_and_packs_its_results(dry_run):
    tmp, stdout = dry_run
    summary = json.loads((tmp / "work" / "summary.json").read_text())
    assert set(summary) == set(check.STEPS)
    assert {k: v["status"] for k, v in summary.items() if v["status"] != "ok"} == {}, summary
    printed = [line.split()[1].rstrip(":") for line in stdout.splitlines() if line.startswith("gpu-check ")]
    assert sorted(printed) == sorted(check.STEPS)
    phases = [check.STEPS[name].phase for name in printed]
    assert phases == sorted(phases)  # a phase starts when the one before has finished
    with tarfile.open(tmp / "out" / "results.tar.gz") as tar:
        names = set(tar.getnames())
    for name in ("env.json", "run.json", "determinism.json", "agreement.json", "bench/bench.json", "partb/time/result.json",
                 "golden/cases.json", "deepfloyd-random-suite/cases.json", "bench/reproductions.xml"):
        assert f"gpu-check/{name}" in names, name
    assert not any(n.endswith(("_state.pt", ".safetensors")) for n in names)  # checkpoints travel in parts
    assert sorted(p.name for p in (tmp / "out").glob("checkpoints.tar.part*")) == ["checkpoints.tar.part00"]
    det = json.loads((tmp / "work" / "determinism.json").read_text())
    assert det["bitwise"] and all(v["bitwise_equal"] for v in det["bitwise"].values())  # CPU: same bits
    suite = json.loads((tmp / "work" / "deepfloyd-random-suite" / "cases.json").read_text())
    assert all("needs --device cuda" in v["skipped"] for v in suite.values())
    assert "HARNESS_GOLDEN_ROOT" not in os.environ  # golden-check judged this run's goldens through its own env
    assert (tmp / "work" / "golden" / "cpu" / "mnist" / "B1.2").is_dir()


def test_dry_run_comes_home(dry_run, tmp_path):
    tmp, _ = dry_run
    dest = unpack(tmp / "out", repo=tmp_path, ship_checkpoints=False)
    run = json.loads((tmp / "work" / "run.json").read_text())
    assert dest == tmp_path / "benchmarks" / "results" / "cpu" / home.run_name(run)
    text = (dest / "SUMMARY.md").read_text()
    for heading in ("## Steps", "## Determinism", "## Part B, the course recipes", "## Benchmarks (bench.json)",
                    "## Pytest runs"):
        assert heading in text
    assert f"Commit {run['commit']}" in text
    assert "| tests | 1 | 0 | 0 |" in text  # the dry run's one loop-guard test, from its JUnit XML
    assert not (tmp_path / "golden").exists()  # CPU goldens never come home from a check
    assert sorted(p.name for p in (tmp_path / "out" / "gpu" / "cpu" / dest.name / "checkpoints").iterdir()) == \
        ["class", "denoiser", "time"]


def test_each_run_comes_home_to_its_own_folder(tmp_path):
    assert home.run_name({"started": "2026-11-28 21:05:09 UTC", "date": "2026-11-28 21:30:00 UTC"}) == "2026-11-28_21-05"
    assert home.run_name({"date": "2026-11-27 10:04:07 UTC"}) == "2026-11-27_10-04"  # runs from before `started`
    with pytest.raises(HarnessError, match="no start time"):
        home.run_name({"date": "yesterday"})
    work = tmp_path / "work"
    work.mkdir()
    check._start_run(work, resume=False)
    first = (work / "run.json").read_text()
    check._start_run(work, resume=True)
    assert (work / "run.json").read_text() == first  # a --resume call is the same run


def _check(tmp_path, budget_s: float = 60) -> check.Check:
    (tmp_path / "out").mkdir(exist_ok=True)
    return check.Check(tmp_path / "out", tmp_path / "work", "cpu", True, time.monotonic() + budget_s)


def _running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in "ZX"


def test_time_box_interrupts_the_step_and_keeps_what_it_wrote(tmp_path):
    """The step (and a grandchild it started, as torchrun starts ranks) gets SIGINT at the box; what it
    writes then is kept, and nothing of it outlives the step."""
    c = _check(tmp_path, budget_s=10)  # the step's box: its deadline
    partial, grandchild = tmp_path / "partial.txt", tmp_path / "grandchild.pid"
    deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(120)"
    script = ("import subprocess, sys, time\n"
              f"g = subprocess.Popen([sys.executable, '-c', {deaf!r}])\n"
              f"open({str(grandchild)!r}, 'w').write(str(g.pid))\n"
              "try:\n    time.sleep(120)\nexcept KeyboardInterrupt:\n"
              f"    open({str(partial)!r}, 'w').write('written on SIGINT')\n    raise")
    start = time.monotonic()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell without job control starts a background job
    try:
        with pytest.raises(check.StepFailed, match="time box of 10 s passed; interrupted"):
            c.python(["-c", script], "sleepy")  # SIGINT at 8 s, then 2 s to write
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 60
    assert partial.read_text() == "written on SIGINT"
    pid, deadline = int(grandchild.read_text()), time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:  # SIGKILL lands within milliseconds
        time.sleep(0.05)
    assert not _running(pid)  # it ignored SIGINT, and was killed with the group


def _steps(**steps) -> dict[str, check.Step]:
    """name=(function, phase, lane) -> STEPS entries with a 10 s box."""
    return {name: check.Step(fn, 10, phase, lane) for name, (fn, phase, lane) in steps.items()}


def test_steps_record_failures_skip_out_of_budget_and_resume(tmp_path, monkeypatch):
    calls = []

    def ok(c):
        calls.append("ok")

    def boom(c):
        calls.append("boom")
        raise RuntimeError("broken step")

    monkeypatch.setattr(check, "STEPS", _steps(env=(ok, 1, "env"), a=(boom, 2, "x"), b=(ok, 2, "x")))
    summary = check.run(_check(tmp_path), ["env", "a", "b"])
    assert {k: v["status"] for k, v in summary.items()} == {"env": "ok", "a": "failed", "b": "ok"}
    assert "RuntimeError: broken step" in summary["a"]["why"]
    calls.clear()
    summary = check.run(_check(tmp_path), ["env", "a", "b"], resume=True)
    assert calls == ["ok", "boom"]  # b finished before: only env (always) and the failed step run again
    summary = check.run(_check(tmp_path, budget_s=0), ["env", "a"])
    assert summary["env"]["status"] == "skipped" and summary["a"]["status"] == "skipped"


def test_lanes_of_a_phase_run_at_once_and_phases_in_order(tmp_path, monkeypatch):
    both = threading.Barrier(2, timeout=60)  # passes only when the two lanes' steps wait at the same time
    seen = []

    def meet(c):
        both.wait()
        seen.append("met")

    def after(c):
        seen.append("after")

    monkeypatch.setattr(check, "STEPS", _steps(env=(after, 1, "env"), a=(meet, 2, "x"), b=(meet, 2, "y"),
                                               c=(after, 3, "timed")))
    summary = check.run(_check(tmp_path, budget_s=120), list(check.STEPS))
    assert {k: v["status"] for k, v in summary.items()} == dict.fromkeys("env a b c".split(), "ok")
    assert seen == ["after", "met", "met", "after"]


def test_env_failure_stops_the_run(tmp_path, monkeypatch):
    def no_gpu(c):
        raise check.StepFailed("torch sees no CUDA device")

    monkeypatch.setattr(check, "STEPS", _steps(env=(no_gpu, 1, "env"), a=(lambda c: None, 2, "x")))
    summary = check.run(_check(tmp_path), ["env", "a"])
    assert list(summary) == ["env"] and summary["env"]["status"] == "failed"


def test_unknown_step_is_named(capsys, tmp_path):
    with pytest.raises(SystemExit):
        check.main(["--out", str(tmp_path), "--steps", "env,benchh"])
    assert "unknown steps ['benchh']" in capsys.readouterr().err


def _record(images: dict[str, torch.Tensor], metrics: dict[str, float]) -> dict:
    return {"hashes": image_hashes(images), "metrics": metrics}


def test_determinism_fails_on_a_one_ulp_change():
    x = torch.linspace(-1, 1, 48).reshape(1, 3, 4, 4)
    nudged = x.clone()
    nudged[0, 0, 0, 1] = torch.nextafter(nudged[0, 0, 0, 1], torch.tensor(2.0))
    a = {"tiny-if/A1.1": _record({"x": x}, {"psnr": 20.0}), "mnist/B1.2": _record({"x": x}, {"psnr": 1.0})}
    b = {"tiny-if/A1.1": _record({"x": x.clone()}, {"psnr": 20.0}), "mnist/B1.2": _record({"x": nudged}, {"psnr": 1.0})}
    b["skipped/A0"] = {"skipped": "needs --device cuda"}
    result = determinism(a, b)
    assert result["tiny-if/A1.1"]["bitwise_equal"] and not result["mnist/B1.2"]["bitwise_equal"]
    assert result["mnist/B1.2"]["images_differ"] == ["x"] and result["skipped/A0"]["compared"] is False


def test_agreement_measures_cuda_goldens_against_cpu_goldens(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 8, 8, generator=gen) * 2 - 1
    out = Outputs(images={"x": x}, metrics={"psnr": 30.0}, meta={"section": "A1.1"})
    golden.write(out, "tiny-if", "cpu", root=tmp_path / "cpu-root")
    golden.write(out, "tiny-if", "cuda", root=tmp_path / "cuda-root")
    assert golden.read("tiny-if", "A1.1", "cuda", root=tmp_path / "cuda-root")[1]["cuda_kernels"] == "deterministic"
    assert "cuda_kernels" not in golden.read("tiny-if", "A1.1", "cpu", root=tmp_path / "cpu-root")[1]
    same = agreement(tmp_path / "cuda-root", "cuda", tmp_path / "cpu-root")["tiny-if/A1.1"]
    assert same["cpu_tolerance_passes"] and same["min_psnr"] == float("inf")
    moved = Outputs(images={"x": x + 0.015}, metrics={"psnr": 30.5}, meta={"section": "A1.1"})
    golden.write(moved, "tiny-if", "cuda", root=tmp_path / "cuda-root")
    far = agreement(tmp_path / "cuda-root", "cuda", tmp_path / "cpu-root")["tiny-if/A1.1"]
    assert not far["cpu_tolerance_passes"] and far["cuda_tolerance_passes"]  # 0.015 off: 42.5 dB, metric +0.5
    assert 41 < far["min_psnr"] < 44 and far["metrics"]["psnr"]["difference"] == pytest.approx(0.5)
    golden.write(Outputs(images={"x": x + 0.05}, metrics={"psnr": 30.5}, meta={"section": "A1.1"}), "tiny-if", "cuda",
                 root=tmp_path / "cuda-root")
    assert not agreement(tmp_path / "cuda-root", "cuda", tmp_path / "cpu-root")["tiny-if/A1.1"]["cuda_tolerance_passes"]


def test_idx_files_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x.gz", images)
    write_idx(tmp_path / "y.gz", np.arange(5))
    assert np.array_equal(read_idx(tmp_path / "x.gz"), images) and read_idx(tmp_path / "y.gz").tolist() == [0, 1, 2, 3, 4]


def test_junit_counts_name_the_failures(tmp_path):
    xml = tmp_path / "junit-tests.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="m" name="ok"/>'
                   '<testcase classname="m" name="bad"><failure message="x"/></testcase>'
                   '<testcase classname="m" name="broken"><error message="y"/></testcase>'
                   '<testcase classname="m" name="later"><skipped message="z"/></testcase></testsuite></testsuites>')
    assert junit_counts(xml) == [1, 2, 1, "m::bad, m::broken"]


def _packed(out: Path) -> list[str]:
    """The export folders in a call's checkpoint parts (joined as gpu-home joins them)."""
    data = b"".join(p.read_bytes() for p in sorted(out.glob("checkpoints.tar.part*")))
    if not data:
        return []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted({n.split("/")[1] for n in tar.getnames() if n.count("/") >= 1})


def test_exports_that_do_not_fit_one_call_come_home_on_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(check, "PART_BYTES", 30_000)
    monkeypatch.setattr(check, "FILES_BACK_BYTES", 100_000)
    rng = np.random.default_rng(0)
    summary = {}
    for name, kib in (("time-fast", 40), ("class-fast", 40), ("denoiser-fast", 60)):
        export = tmp_path / "work" / "partb" / name / "export"
        export.mkdir(parents=True)
        (export / f"{name}.safetensors").write_bytes(rng.bytes(kib * 1000))
        summary[f"partb-{name}"] = {"status": "ok"}
    c = _check(tmp_path)
    check.pack(c, summary, check._exports_home(c.work, resume=False))
    assert _packed(c.out) == ["class-fast", "time-fast"]  # all three would be 143 kB, beyond the 100 kB a call brings
    assert max(p.stat().st_size for p in c.out.glob("checkpoints.tar.part*")) <= 30_000
    with tarfile.open(c.out / "results.tar.gz") as tar:
        assert not [n for n in tar.getnames() if n.endswith((".safetensors", ".tar"))]
    check.pack(c, summary, check._exports_home(c.work, resume=True))  # the next call, --resume
    assert _packed(c.out) == ["denoiser-fast"]
    check.pack(c, summary, check._exports_home(c.work, resume=True))
    assert _packed(c.out) == [] and not list(c.out.glob("checkpoints.tar.part*"))


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout (a device call's copy of the tree has no .git)")
def test_the_tree_still_fits_a_device_call():
    """Every GPU check depends on it: the tree and the carried .whl/ within what one device call sends."""
    assert home.check_travel(ROOT) <= home.DEVICE_CALL_BYTES


@pytest.mark.parametrize("weights", ["fp16", "int8"])
def test_shipping_checkpoints_the_tree_cannot_carry_is_refused(dry_run, tmp_path, monkeypatch, weights):
    tmp, _ = dry_run
    repo = _repo(tmp_path)
    shipped = repo / "harness" / "data" / "partb"
    (shipped / "time_epoch1.safetensors").write_bytes(b"old")
    monkeypatch.setattr(home, "DEVICE_CALL_BYTES", home.CARRIED_BYTES + 2000)  # room for 2 kB of tree
    with pytest.raises(HarnessError, match="over the .* limit: no GPU check could run again"):
        unpack(tmp / "out", repo=repo, ship_checkpoints=True, weights=weights)
    assert (shipped / "time_epoch1.safetensors").read_bytes() == b"old"  # nothing shipped
    monkeypatch.setattr(home, "DEVICE_CALL_BYTES", check.DEVICE_CALL_BYTES)
    unpack(tmp / "out", repo=repo, ship_checkpoints=True, weights=weights)
    assert checkpoints.load("time", 1, shipped)[1]["weights"] == weights
    assert {p.name for p in shipped.glob("*_epoch*.safetensors")} >= {"time_epoch2.safetensors", "class_epoch2.safetensors"}


def _repo(tmp_path: Path) -> Path:
    """An empty git repository with the shipped set's folder, to ship into (out/ ignored, as here)."""
    repo = tmp_path / "repo"
    (repo / "harness" / "data" / "partb").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("out/\n")
    return repo


def _run_folder(path: Path, exports: dict[str, list[Path]]) -> Path:
    """What a GPU check's call brings back: results.tar.gz (its env.json only) and checkpoints.tar.part00
    holding each export folder's files."""
    path.mkdir()
    env = json.dumps({"device": "cuda", "gpu": "Test GPU", "started": "2026-11-29 10:00:00 UTC"}).encode()
    with tarfile.open(path / "results.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("gpu-check/env.json")
        info.size = len(env)
        tar.addfile(info, io.BytesIO(env))
    with tarfile.open(path / "checkpoints.tar.part00", "w") as tar:
        for name, files in exports.items():
            for f in files:
                tar.add(f, arcname=f"checkpoints/{name}/{f.name}")
    return path


def test_gpu_home_ships_the_quick_checkpoints_as_int8_where_fp16_would_not_travel(tmp_path, monkeypatch):
    """End to end with the shipped quick set, stored as fp16 the way a run exports it, as a run's exports: a
    limit between the int8 and fp16 sizes refuses fp16 and ships int8, the int8 that `checkpoints.stored`
    makes of the exported file."""
    src, exported = checkpoints.shipped_dir(), tmp_path / "exported"
    exported.mkdir()
    for kind in ("time", "class"):
        (exported / f"{kind}_epoch20.safetensors").write_bytes(checkpoints.read(kind, 20, weights="fp16"))
    exports = {f"{kind}-fast": [exported / f"{kind}_epoch20.safetensors", src / f"{kind}_train_loss.csv",
                                src / f"{kind}_test_loss.csv"] for kind in ("time", "class")}
    files = _run_folder(tmp_path / "files", exports)
    repo = _repo(tmp_path)
    shipped = repo / "harness" / "data" / "partb"
    fp16 = sum(p.stat().st_size for f in exports.values() for p in f)
    monkeypatch.setattr(home, "DEVICE_CALL_BYTES", home.CARRIED_BYTES + fp16 - 200_000)  # int8 saves 2 x 280 kB
    with pytest.raises(HarnessError, match="over the .* limit"):
        unpack(files, repo=repo, ship_checkpoints=True)
    assert not list(shipped.iterdir())
    dest = unpack(files, repo=repo, ship_checkpoints=True, weights="int8")
    assert dest == repo / "benchmarks" / "results" / "Test-GPU" / "2026-11-29_10-00"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for f in exports.values() for p in f)
    assert (shipped / "time_test_loss.csv").read_bytes() == (src / "time_test_loss.csv").read_bytes()
    for kind in ("time", "class"):
        meta = checkpoints.load(kind, 20, shipped)[1]
        assert meta["weights"] == "int8" and meta["fid_lite"] == checkpoints.load(kind, 20)[1]["fid_lite"]
        ours = load_file(shipped / f"{kind}_epoch20.safetensors")
        theirs = load(checkpoints.stored((exported / f"{kind}_epoch20.safetensors").read_bytes(), "int8"))
        assert ours.keys() == theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in ours.items())


def test_a_pack_that_keeps_failing_leaves_the_earlier_results_whole(tmp_path, monkeypatch, capsys):
    """A file that keeps vanishing under tar (another lane's step writing) three times: the results.tar.gz
    of the step before stays as it was, and no partial archive replaces it."""
    c = check.Check(out=tmp_path / "out", work=tmp_path / "work", device="cpu", dry=True, deadline=float("inf"))
    c.out.mkdir()
    (c.work / "logs").mkdir(parents=True)
    (c.work / "logs" / "a.log").write_text("a\n")
    check.pack(c, {}, set())
    before = (c.out / "results.tar.gz").read_bytes()
    (c.work / "logs" / "b.log").write_text("b\n")

    def vanishing(self, *args, **kwargs):
        raise FileNotFoundError("a file went between listing and reading")

    monkeypatch.setattr(tarfile.TarFile, "add", vanishing)
    check.pack(c, {}, set())
    assert (c.out / "results.tar.gz").read_bytes() == before
    assert sorted(p.name for p in c.out.iterdir()) == ["results.tar.gz"]
    assert "not updated after 3 tries" in capsys.readouterr().out
