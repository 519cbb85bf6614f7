"""The sandbox (`harness.impl.sandbox`) from both sides, with small Python programs (no torch: each takes well
under a second): what the code inside sees and can do (no network, a scrubbed environment, nothing of the
grader's files but what it is given, writes only in its scratch), each cap named in the line of how it ended,
and the grader's files untouched. The hostile notebooks under tests/impls/hostile/ are graded end to end in
tests/test_grade.py."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.impl import sandbox
from harness.impl.sandbox import MIB, Limits

ISOLATED = pytest.mark.skipif(sandbox.tool() != "bwrap", reason=f"bubblewrap does not run here: {sandbox.warning()}")
CAPPED = pytest.mark.skipif(not sandbox.enforced(), reason="the sandbox's caps are not in force here (Linux, with "
                                                          "bubblewrap or setpriv)")


def sandboxed(tmp_path: Path, code: str, limits: Limits = Limits(wall_s=30), read_only=None):
    """(how it ended, its stdout, its stderr) of ``code`` run by Python in a sandbox."""
    scratch = tmp_path / "scratch"
    finished = sandbox.run([sys.executable, "-c", textwrap.dedent(code)], scratch, limits, read_only)
    return finished, (scratch / "stdout.txt").read_text(errors="replace"), (scratch / "stderr.txt").read_text()


def test_no_network_and_a_scrubbed_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_SECRET", "s3cret")
    finished, out, err = sandboxed(tmp_path, """
        import json, os, socket
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=5)
            net = "connected"
        except OSError as e:
            net = str(e)
        print(json.dumps({"env": dict(os.environ), "net": net, "cwd": os.getcwd()}))
        """)
    assert finished.status == 0, err
    seen = json.loads(out)
    assert "HARNESS_TEST_SECRET" not in seen["env"] and "s3cret" not in out
    assert set(seen["env"]) <= {"PATH", "HOME", "LANG", "TMPDIR", "LC_CTYPE", "PWD"}, seen["env"]
    assert seen["net"] != "connected" and "unreachable" in seen["net"].lower(), seen["net"]
    assert seen["env"]["HOME"].startswith(seen["cwd"])


@ISOLATED
def test_it_sees_neither_siblings_nor_out_and_writes_only_its_scratch(tmp_path):
    sibling, out, given = tmp_path / "class" / "other.py", tmp_path / "out" / "grades.csv", tmp_path / "tapes"
    for path in (sibling, out, given / "tape.txt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not yours")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    finished, stdout, err = sandboxed(tmp_path, f"""
        import json, os
        tried = {{}}
        for path in ({str(sibling)!r}, {str(out)!r}, "/root/.bashrc", "/etc/shadow"):
            try:
                open(path).read()
                tried[path] = "read"
            except OSError as e:
                tried[path] = type(e).__name__
        for folder in ({str(sibling.parent)!r}, {str(out.parent)!r}, "/", "/usr", "/work", "/tapes"):
            try:
                open(os.path.join(folder, "escaped.txt"), "w").write("x")
                tried[folder] = "wrote"
            except OSError as e:
                tried[folder] = type(e).__name__
        open("mine.txt", "w").write("ok")
        open("/tmp/mine.txt", "w").write("ok")
        print(json.dumps({{"tried": tried, "given": open("/tapes/tape.txt").read()}}))
        """, read_only={given: Path("/tapes")})
    assert finished.status == 0, err
    seen = json.loads(stdout)
    assert "read" not in seen["tried"].values() and "wrote" not in seen["tried"].values(), seen
    assert seen["given"] == "not yours"
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.rglob("escaped.txt")) == []
    assert (tmp_path / "scratch" / "mine.txt").read_text() == (tmp_path / "scratch" / "tmp" / "mine.txt").read_text()


@CAPPED
def test_each_cap_stops_it_and_its_line_names_the_cap(tmp_path):
    limits = Limits(memory=1024 * MIB, cpu_s=1, wall_s=3, file_size=4 * MIB, processes=16)
    memory, out, _ = sandboxed(tmp_path / "m", """
        try:
            bytearray(2 * 2**30)
        except MemoryError:
            print("refused")
        """, limits)
    assert out.strip() == "refused"
    forks, out, _ = sandboxed(tmp_path / "f", """
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                n += 1
        except BlockingIOError:
            print("capped after", n)
        """, limits)
    assert out.startswith("capped after") and int(out.split()[-1]) <= 16 and not forks.timed_out, out
    cpu_limits = Limits(cpu_s=1, wall_s=600)  # 1 s of CPU may take long on a crowded machine
    cpu = sandboxed(tmp_path / "c", "while True: pass", cpu_limits)[0]
    assert "CPU-time cap of 1 s" in cpu.why(cpu_limits)
    wall = sandboxed(tmp_path / "w", "import signal, time\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\ntime.sleep(60)",
                     limits)[0]
    assert wall.timed_out and "wall-clock cap of 3 s" in wall.why(limits)
    big, _, err = sandboxed(tmp_path / "p", "print('x' * 2**25)", Limits(file_size=4 * MIB, wall_s=30))
    assert big.status == 1 and "File too large" in err  # Python ignores SIGXFSZ: the write fails instead
    assert (tmp_path / "p" / "scratch" / "stdout.txt").stat().st_size <= 4 * MIB


def test_killing_every_process_it_can_ends_only_the_sandbox(tmp_path):
    beside = subprocess.Popen(["sleep", "600"])  # a process of the grader's, as any other on the machine
    try:
        finished, _, _ = sandboxed(tmp_path, """
            import contextlib, os, signal
            os.kill(os.getppid(), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):  # no other process it may signal
                os.kill(-1, signal.SIGKILL)
            os.killpg(0, signal.SIGKILL)
            """)
        assert "was killed (SIGKILL" in finished.why(Limits())
        assert beside.poll() is None
    finally:
        beside.kill()
        beside.wait()
