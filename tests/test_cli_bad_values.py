"""Every command with a bad value for each of its flags: one line on stderr that names the value and the
fix, exit status 2, no traceback, nothing written (issue: a new user's first mistakes); and sensible
values accepted, saying what they did."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.partb import checkpoints

FILE, DIR, MISSING = "{file}", "{dir}", "{missing}"
COURSE = str(Path(__file__).parent / "impls" / "course.py")  # a course-style implementation (tests/impls/)

BAD = [
    # run
    (["run", "A9.9"], "unknown section 'A9.9'; valid sections:"),
    (["run", "A1.1", "--backend", "nope"], "unknown backend 'nope'; valid backends:"),
    (["run", "A1.1", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["run", "A1.1", "--device", "tpu"], "--device 'tpu' is not a torch device"),
    (["run", "A1.1", "--out", FILE], "is a file: pass a folder"),
    (["run", "A1.7", "--image", MISSING], "does not exist: check the path"),
    (["run", "A1.7.2", "--mask", MISSING], "does not exist: check the path"),
    (["run", "A1.1", "--prompt", "a dog"], "section A1.1 takes no --prompt"),
    # check-impl
    (["check-impl", MISSING], "no file or module"),
    (["check-impl", COURSE, "--backend", "nope"], "unknown backend 'nope'"),
    (["check-impl", COURSE, "--section", "A9.9"], "no check for section 'A9.9'"),
    (["check-impl", COURSE, "--stride", "0"], "0 is not a positive count"),
    (["check-impl", COURSE, "--seed", "x"], "invalid int value: 'x'"),
    (["check-impl", COURSE, "--device", "tpu"], "--device 'tpu' is not a torch device"),
    (["check-impl", COURSE, "--time-limit", "0"], "0 s is no time"),
    (["check-impl", COURSE, "--out", FILE], "is a file: pass a folder"),
    # golden
    (["golden", "update", "A9.9"], "unknown section 'A9.9'"),
    (["golden", "update", "--backend", "nope"], "unknown backend 'nope'"),
    (["golden", "update", "A1.1", "--device", "tpu"], "--device 'tpu' is not a torch device"),
    (["golden", "frob"], "invalid choice: 'frob'"),
    # data
    (["data", "cifar"], "invalid choice: 'cifar'"),
    # train
    (["train", "vae"], "invalid choice: 'vae'"),
    (["train", "time", "--preset", "huge"], "invalid choice: 'huge'"),
    (["train", "time", "--set", "epochs"], "expected FIELD=VALUE"),
    (["train", "time", "--set", "epochs=two"], "the value is not JSON"),
    (["train", "time", "--max-steps", "0"], "0 is not a positive count"),
    (["train", "time", "--seed", "x"], "invalid int value: 'x'"),
    (["train", "time", "--device", "tpu"], "--device 'tpu' is not a torch device"),
    (["train", "time", "--out", FILE], "is a file: pass a folder"),
    (["train", "fm-tme"], "invalid choice: 'fm-tme'"),
    # measure
    (["measure", "time", "--samples", "0"], "0 is not a positive count"),
    (["measure", "time", "--samples", "many"], "'many' is not a whole number"),
    (["measure", "time", "--samples", "20000"], "at most the 10000 test digits"),
    (["measure", "class", "--samples", "15"], "ask for a multiple of 10"),
    (["measure", "time", "--stride", "-3"], "-3 is not a positive count"),
    (["measure", "time", "--stride", "301"], "at most T = 300"),
    (["measure", "time", "--epoch", "7"], "--epoch 7: no time checkpoint of that epoch"),
    (["measure", "time", "--checkpoints", MISSING], "is no folder"),
    (["measure", "time", "--out", DIR], "is a folder: pass a file name"),
    (["measure", "time", "--device", "tpu"], "--device 'tpu' is not a torch device"),
    (["measure", "fm-time", "--num-ts", "0"], "0 is not a positive count"),
    (["measure", "fm-class", "--guidance-scale", "five"], "'five' is not a number: pass one such as 5"),
    (["measure", "fm-class", "--guidance-scale", "nan"], "'nan' is not a finite number"),
    (["measure", "time", "--num-ts", "50"], "Euler steps are for fm-time and fm-class; time takes none"),
    (["measure", "fm-time", "--checkpoints", DIR], "--epoch 10: no fm-time checkpoint of that epoch"),
    # report
    (["report", "--outputs", MISSING], "no outputs under"),
    (["report", "--outputs", DIR, "--out", FILE], "is a file: pass a folder"),
    (["report", "--backend", "nope"], "unknown backend 'nope'"),
    # the GPU check and bringing its results home
    (["gpu-check", "--out", FILE], "--out {file} is a file: pass a folder"),
    (["gpu-check", "--out", DIR, "--work", FILE], "--work {file} is a file"),
    (["gpu-check", "--out", DIR, "--budget-s", "-5"], "-5 s is no time"),
    (["gpu-check", "--out", DIR, "--budget-s", "soon"], "'soon' is not a number of seconds"),
    (["gpu-check", "--out", DIR, "--steps", "envv"], "unknown steps ['envv']"),
    (["gpu-home", MISSING], "holds no results.tar.gz"),
    (["gpu-home", DIR], "holds no results.tar.gz"),
]
# --device cuda where no GPU is visible: tests/test_cli.py (`test_an_unusable_device_is_one_line`), on any machine


def _fill(words: list[str], paths: dict[str, str]) -> list[str]:
    return [w.format(**paths) for w in words]


@pytest.mark.parametrize("argv, says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_value_is_one_line_and_exit_2(argv, says, tmp_path, capsys):
    paths = {"file": str(tmp_path / "taken.txt"), "dir": str(tmp_path / "folder"), "missing": str(tmp_path / "nope")}
    (tmp_path / "taken.txt").write_text("mine")
    (tmp_path / "folder").mkdir()
    try:
        status = main(_fill(argv, paths))
    except SystemExit as stop:  # argparse
        status = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert says.format(**paths) in lines[0] and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "taken.txt"]  # nothing written
    assert (tmp_path / "taken.txt").read_text() == "mine" and not any((tmp_path / "folder").iterdir())


def test_a_ddpm_checkpoint_under_a_flow_name_is_one_line(tmp_path, capsys):
    """A DDPM checkpoint (the shipped time model) saved as fm-time_epoch1: measure names the file, the kind it
    holds and the fix, exit status 2."""
    shutil.copyfile(checkpoints.shipped_dir() / "time_epoch1.safetensors", tmp_path / "fm-time_epoch1.safetensors")
    assert main(["measure", "fm-time", "--checkpoints", str(tmp_path), "--epoch", "1"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "holds a 'time' UNet, not a 'fm-time' one: pass the checkpoints of" in line


def test_a_negative_seed_is_a_seed_and_its_run_is_not_judged(tmp_path, capsys):
    assert main(["run", "A1.1", "--seed", "-5", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "golden: not judged (own --seed)" in capsys.readouterr().out
