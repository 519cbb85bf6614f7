"""``pytest --impl FILE [paths]``: check-impl's sections as pytest cases, one per (section, backend), instead of
the tests collected from the paths (those are deselected). ``--impl FOLDER`` grades a class (`batch`: each
file in its sandbox, the gradebook in ``--impl-out``): one case per submission, which fails with its wrong
or raising sections' lines. A wrong or raising section fails with its one
line per function (A1.8: the flip and each rotation) and the user's traceback; a missing function skips; the
table of verdicts ends the run (with the "setup" row of stand-in imports, once per backend). FILE may be a
notebook (.ipynb): its definitions run (`harness.impl.source`). Registered
through the ``pytest11`` entry point, so any repository with this package installed can run it.

    pytest --impl my_proj5.py reproductions --impl-backend mnist --impl-section A1.8
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.seeding import DEFAULT_SEED

RESULTS_KEY = pytest.StashKey[list]()
GRADES_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("check-impl", "check an implementation of the course's Part A functions")
    group.addoption("--impl", metavar="FILE", help="your notebook (.ipynb), .py file or module: its sections become the run's cases")
    group.addoption("--impl-backend", action="append", metavar="BACKEND", help="tiny-if (default) or mnist; repeatable")
    group.addoption("--impl-section", action="append", metavar="SECTION", help="only these sections (repeatable)")
    group.addoption("--impl-stride", type=int, default=30, help="stride of the strided timesteps (the course's 30)")
    group.addoption("--impl-time-limit", type=float, default=600.0, help="seconds one call of your function may take")
    group.addoption("--impl-out", default="out/check-impl", help="with --impl FOLDER: the gradebook's folder")


class ImplFailure(Exception):
    """A section that is wrong or raised: its one line, and the traceback of the user's code if any."""


class ImplItem(pytest.Item):
    def __init__(self, *, section: str, backend: str, **kwargs):
        super().__init__(**kwargs)
        self.section, self.backend = section, backend

    def runtest(self) -> None:
        from harness.errors import HarnessError
        from harness.impl.run import check_file

        option = self.config.getoption
        try:
            results = check_file(option("--impl"), self.backend, [self.section], DEFAULT_SEED, option("--impl-stride"),
                                 option("--impl-time-limit"))
        except HarnessError as e:  # the file does not load (a syntax error, its top level raised), a bad name
            raise ImplFailure(f"{self.section} on {self.backend}: {e}", getattr(e, "trace", "")) from None
        stash = self.config.stash[RESULTS_KEY]
        shown = {(b, r.section) for b, r in stash}  # the "setup" row once per backend
        stash.extend((self.backend, r) for r in results if (self.backend, r.section) not in shown)
        mine = [r for r in results if r.section == self.section]  # A1.8: the flip and each rotation
        self.user_properties.append(("verdict", "; ".join(r.verdict for r in mine)))
        failed = [r for r in mine if r.verdict in ("wrong", "error")]
        if failed:
            raise ImplFailure("\n".join(f"{self.section} on {self.backend}: {r.function}: {r.verdict}: {r.figures}"
                                        + (f"; looks like: {r.looks_like}" if r.looks_like else "") for r in failed),
                              "\n".join(r.trace for r in failed if r.trace))
        if all(r.verdict == "skipped" for r in mine):
            pytest.skip("; ".join(r.figures for r in mine))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ImplFailure):
            line, trace = excinfo.value.args
            return f"{line}\n{trace}".rstrip()
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.config.getoption("--impl"), None, f"{self.section} on {self.backend}"


class SubmissionItem(ImplItem):
    """One submission of a class: the whole class is graded once, by its first case to run."""

    def __init__(self, *, submission: str, backend: str, **kwargs):
        pytest.Item.__init__(self, **kwargs)
        self.submission, self.backend = submission, backend

    def runtest(self) -> None:
        from harness.impl.batch import Options, grade

        option = self.config.getoption
        if GRADES_KEY not in self.config.stash:
            options = Options(self.backend, tuple(option("--impl-section") or ()), DEFAULT_SEED, option("--impl-stride"),
                              option("--impl-time-limit"))
            grades = grade([option("--impl")], Path(option("--impl-out")), options, echo=lambda line: None)
            self.config.stash[GRADES_KEY] = {g["name"]: g for g in grades}
        rows = self.config.stash[GRADES_KEY][self.submission]["rows"]
        self.user_properties.append(("verdict", "; ".join(r["verdict"] for r in rows)))
        failed = [r for r in rows if r["verdict"] in ("wrong", "error")]
        if failed:
            raise ImplFailure("\n".join(f"{self.submission}: {r['section']} {r['function']}: {r['verdict']}: "
                                        f"{r['figures']}" for r in failed), "")

    def reportinfo(self):
        return self.config.getoption("--impl"), None, self.submission


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = []


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """With --impl, the collected tests give way to one case per (section, backend), or per submission of a
    folder."""
    if not config.getoption("--impl"):
        return
    from harness.errors import HarnessError
    from harness.impl.run import select

    try:
        checks = select(config.getoption("--impl-section"))
    except HarnessError as e:
        raise pytest.UsageError(str(e)) from None
    config.hook.pytest_deselected(items=list(items))
    impl, backends = Path(config.getoption("--impl")), config.getoption("--impl-backend") or ["tiny-if"]
    if impl.is_dir():
        from harness.impl.batch import submissions

        items[:] = [SubmissionItem.from_parent(session, name=s.name, nodeid=f"{impl.name}::{s.name}",
                                               submission=s.name, backend=backends[0])
                    for s in submissions([str(impl)], Path(config.getoption("--impl-out")))]
        return
    items[:] = [ImplItem.from_parent(session, name=f"{c.section}-{b}", nodeid=f"{impl.name}::{c.section}-{b}",
                                     section=c.section, backend=b)
                for b in backends for c in checks]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS_KEY, [])
    if results:
        from harness.impl.run import table

        for backend in dict.fromkeys(b for b, _ in results):
            terminalreporter.write_sep("=", f"check-impl on {backend}: {config.getoption('--impl')}")
            terminalreporter.write_line(table([r for b, r in results if b == backend]))
