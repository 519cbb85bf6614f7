"""A pytest plugin (registered by the root conftest; ``-p harness.cuda_faults`` in another repository): a CUDA
error that loses the process's CUDA context (a device-side assert, an illegal memory access:
`harness.devices.context_lost`) fails the case that hit it, and every later case of the same process (one
pytest-xdist worker) that asks for the ``device`` fixture fails at set-up without running, with one line
naming the case and the error. Other workers have contexts of their own and go on; the run ends with a
summary of which worker lost its context where. CUDA cannot recover such a context inside its process (its
errors are sticky), so those cases are rerun in a new one (``pytest --lf``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness.devices import context_lost

LOST = pytest.StashKey["Lost"]()
LOST_AT, NOT_RUN = "cuda_context_lost_at", "cuda_context_lost_not_run"  # report properties the controller reads


@dataclass(frozen=True)
class Lost:
    """Where this process lost its CUDA context: the worker, the case, the error's first line."""

    worker: str
    nodeid: str
    error: str

    def line(self) -> str:
        return f"{self.worker} lost its CUDA context at {self.nodeid} ({self.error})"


def _worker(config: pytest.Config) -> str:
    """This pytest-xdist worker's id (gw0, ...), or "this process" without xdist."""
    return config.workerinput["workerid"] if hasattr(config, "workerinput") else "this process"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    lost = item.config.stash.get(LOST, None)
    if lost is not None and "device" in getattr(item, "fixturenames", ()):
        item.user_properties.append((NOT_RUN, lost.line()))
        pytest.fail(f"not run: {lost.line()}; a lost context cannot be used again in its process: rerun this "
                    f"case in a new one (pytest --lf)", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """The first context-losing error of this process is remembered, and named on its case's report."""
    outcome = yield
    if call.excinfo is not None and LOST not in item.config.stash and context_lost(call.excinfo.value):
        first = (str(call.excinfo.value).strip().splitlines() or ["(no message)"])[0]
        lost = item.config.stash[LOST] = Lost(_worker(item.config), item.nodeid, f"{call.excinfo.typename}: {first}")
        outcome.get_result().user_properties.append((LOST_AT, lost.line()))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """On the controller (or the one process): per lost context, where, and how many of its cases did not run."""
    refused: dict[str, int] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, line in getattr(report, "user_properties", ()):
                if name == LOST_AT:
                    refused.setdefault(line, 0)
                elif name == NOT_RUN and report.when == "setup":
                    refused[line] = refused.get(line, 0) + 1
    if refused:
        terminalreporter.section("CUDA context lost")
        for line, n in refused.items():
            terminalreporter.write_line(f"{line}: {n} later case(s) of that process not run; the other processes "
                                        f"went on. Rerun them with pytest --lf")
