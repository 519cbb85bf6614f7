"""The GPU-runner workflow: valid for GitHub Actions (check-jsonschema's vendored workflow schema, offline),
sharded the way pytest-split expects, and the lint fails on a broken file."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "gpu.yml"


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_workflow_is_valid():
    res = lint(WORKFLOW)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("damage", [("runs-on: [self-hosted, gpu]", "runs_on: [self-hosted, gpu]"),
                                    ("timeout-minutes: 60", "timeout-minutes: sixty")])
def test_lint_fails_on_a_broken_workflow(tmp_path, damage):
    broken = tmp_path / "gpu.yml"
    broken.write_text(WORKFLOW.read_text().replace(*damage, 1))
    assert lint(broken).returncode != 0


def test_every_group_of_the_split_runs():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    groups = jobs["test"]["strategy"]["matrix"]["group"]
    command = next(s["run"] for s in jobs["test"]["steps"] if "--splits" in s.get("run", ""))
    splits = int(command.split("--splits")[1].split()[0])
    assert groups == list(range(1, splits + 1)) and "--group ${{ matrix.group }}" in command
    assert jobs["report"]["needs"] == "test" and "merged/out/pytest/cuda" in jobs["report"]["steps"][-2]["run"]
