"""A pytest plugin (registered by the root conftest): a benchmark session cut off mid-case (Ctrl-C, the GPU
check's time box) still writes the JSON of the cases it finished. pytest-benchmark would otherwise fail on
the unfinished case, whose statistics hold no round (``ValueError: min() arg is an empty sequence``), and
write nothing at all; that case is left out and named instead."""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # around pytest-benchmark's own, so before it saves
def pytest_sessionfinish(session):
    bench = getattr(session.config, "_benchmarksession", None)
    if bench is not None:
        unfinished = [b for b in bench.benchmarks if not b.has_error and not b]  # Metadata: falsy without rounds
        bench.benchmarks = [b for b in bench.benchmarks if b not in unfinished]
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for b in unfinished:
            if reporter is not None:
                reporter.write_line(f"benchmark {b.fullname}: no timed round finished; left out of the results")
    yield
