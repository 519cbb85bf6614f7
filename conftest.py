"""Project-wide pytest set-up: offline, fixed thread count, the golden/backend options, and --report."""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from harness.devices import fix_threads  # noqa: E402

fix_threads()

pytest_plugins = ["benchmarks.keep_finished", "harness.cuda_faults"]


def pytest_addoption(parser):
    group = parser.getgroup("diffusion-harness")
    group.addoption("--update-golden", action="store_true",
                    help="(over)write the golden files of the cases that run instead of comparing")
    group.addoption("--backend", action="append", default=None,
                    help="backend(s) to reproduce on (repeatable); default: the embedded CPU backends")
    group.addoption("--device", default="cpu", help="torch device for the reproduction cases (cpu, cuda)")
    group.addoption("--report", metavar="DIR", default=None,
                    help="at the end, build the HTML report of the reproductions' outputs (out/pytest/<device>) in DIR")


def pytest_configure(config):
    """A --device this torch cannot use stops the run with one line, before any test."""
    from harness.errors import HarnessError
    from harness.devices import check_device

    try:
        check_device(config.getoption("--device"))
    except HarnessError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_sessionfinish(session):
    """With --report DIR: build the report from what the reproduction cases saved (controller only under xdist)."""
    config = session.config
    dest = config.getoption("--report")
    if not dest or hasattr(config, "workerinput"):
        return
    from harness.errors import HarnessError
    from harness.report import build_report

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    try:
        index = build_report(Path("out") / "pytest" / config.getoption("--device"), dest)
    except HarnessError as e:
        message = f"report not built: {e}"
    else:
        message = f"report: {index}"
    if reporter is not None:
        reporter.write_line(message)


@pytest.fixture(scope="session")
def device(request) -> str:
    """--device; under pytest-xdist with several GPUs, this worker's GPU (`harness.devices.worker_device`)."""
    import torch

    from harness.devices import worker_device

    chosen = request.config.getoption("--device")
    return worker_device(chosen, os.environ.get("PYTEST_XDIST_WORKER"), torch.cuda.device_count() if chosen == "cuda" else 0)
