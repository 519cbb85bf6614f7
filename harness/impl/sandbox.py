"""One command in a sandbox of its own, with the OS's own tools (Linux; the grader runs each submission so).

- bubblewrap (``bwrap``) where it runs: new mount, pid, network, ipc and uts namespaces, no capabilities,
  killed with its parent. It sees only the system's and Python's folders and ``read_only`` (the harness, the
  backend's cache, the tapes), all read-only, and its scratch folder, writable, as /scratch (its working
  folder and HOME), /tmp and /dev/shm: neither the other submissions nor the output folder.
- Where bwrap cannot run (not installed: ``apt-get install bubblewrap``): ``unshare`` (network and pid
  namespaces) and ``setpriv`` (no capabilities), with one warning line (`warning`): the code can then read
  whatever the grader's user can read, and write where that user may without privileges.

Both: a scrubbed environment (PATH, HOME, TMPDIR, LANG, and ``env``); `Limits` set as rlimits before exec
(address space, CPU time, file size, process count, no core dumps) and a wall clock, after which the whole
sandbox is killed; stdin empty, stdout and stderr to files in the scratch (capped by the file size).

The process count is a pids cgroup (v1 or v2) where one can be made (as root), holding the sandbox and all it
starts, killed when it ends; else RLIMIT_NPROC, which counts every process of the user (the cap is that
user's count at the start plus ``processes``) and which root is exempt from: then the cap is not in force
(`enforced`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from harness.atomic import hear_sigint

GIB, MIB = 2**30, 2**20


@dataclass(frozen=True)
class Limits:
    """Caps of one sandbox: address space and file size in bytes, CPU and wall-clock seconds, processes (and
    threads) in it."""

    memory: int = 8 * GIB
    cpu_s: int = 3600
    wall_s: float = 1800.0
    file_size: int = 256 * MIB
    processes: int = 256


@dataclass(frozen=True)
class Finished:
    """How a sandboxed command ended: its exit status (negative: killed by that signal), whether the wall
    clock ran out, its seconds."""

    status: int
    timed_out: bool
    seconds: float

    def why(self, limits: Limits) -> str:
        """One line: how it ended, naming the cap it hit."""
        if self.timed_out:
            return f"ran past the wall-clock cap of {limits.wall_s:g} s and was killed"
        sig = -self.status if self.status < 0 else self.status - 128 if self.status > 128 else 0
        caps = {signal.SIGXCPU: f"ran past the CPU-time cap of {limits.cpu_s} s",
                signal.SIGXFSZ: f"wrote past the file-size cap of {limits.file_size // MIB} MiB (printing or writing "
                                f"that much)",
                signal.SIGKILL: "was killed (SIGKILL: by itself, or it killed its parent)"}
        if sig:
            return caps.get(sig, f"was killed by {signal.Signals(sig).name}")
        return f"exited with status {self.status}"


@functools.lru_cache(maxsize=1)
def tool() -> str:
    """"bwrap" where bubblewrap runs here, else "unshare" (the fallback, see the module docstring)."""
    if shutil.which("bwrap"):
        probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--cap-drop", "ALL",
                                "--", "true"], capture_output=True)
        if probe.returncode == 0:
            return "bwrap"
    return "unshare"


def warning() -> str | None:
    """The one warning line of the fallback, None where bwrap runs."""
    if tool() == "bwrap":
        return None
    return ("warning: bubblewrap cannot run here (install it: apt-get install bubblewrap); submissions run with no "
            "network, no capabilities and their caps, but can read what this user can read")


def enforced() -> bool:
    """Whether every cap is in force: the process count needs a pids cgroup, or a user other than root."""
    return sys.platform == "linux" and (_pids_root() is not None or os.getuid() != 0)


@functools.lru_cache(maxsize=1)
def _pids_root() -> Path | None:
    """A pids cgroup folder in which this process can make children, None where there is none."""
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        probe = root / f"harness-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        try:
            if (probe / "pids.max").exists():
                return root
        finally:
            probe.rmdir()
    return None


@contextlib.contextmanager
def _process_cap(processes: int) -> Iterator[Path | None]:
    """A pids cgroup capped at ``processes`` (None where none can be made); afterwards whatever still runs in
    it is killed and it is removed."""
    root = _pids_root()
    if root is None:
        yield None
        return
    group = Path(tempfile.mkdtemp(dir=root, prefix="harness-sandbox-"))
    (group / "pids.max").write_text(str(processes))
    try:
        yield group
    finally:
        for _ in range(100):
            pids = (group / "cgroup.procs").read_text().split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.05)
        with contextlib.suppress(OSError):  # still busy after 5 s: the cgroup stays behind, the batch goes on
            group.rmdir()


def inside(path: Path, at: str) -> Path:
    """Where the sandbox sees ``path``, given read-only at ``at``: there under bwrap, where it is otherwise."""
    return Path(at) if tool() == "bwrap" else path


def run(argv: Sequence[str], scratch: Path, limits: Limits, read_only: dict[Path, Path] | None = None,
        env: dict[str, str] | None = None, devices: Sequence[str] = ()) -> Finished:
    """Run ``argv`` in a sandbox whose scratch folder is ``scratch`` (made here: /scratch under bwrap, see
    `inside`; HOME and /tmp in it), which sees each key of ``read_only`` at its value and the device files
    ``devices`` (a GPU's); stdout and stderr in scratch/stdout.txt and stderr.txt."""
    for sub in ("home", "tmp"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(inside(scratch, "/scratch") / "home"),
                   "LANG": "C.UTF-8", "TMPDIR": str(inside(scratch / "tmp", "/tmp")), **(env or {})}
    command = _bwrap(argv, scratch, read_only or {}, environment, devices) if tool() == "bwrap" else _unshare(argv)
    start = time.monotonic()
    with open(scratch / "stdout.txt", "wb") as out, open(scratch / "stderr.txt", "wb") as err, \
            _process_cap(limits.processes) as group:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=scratch,
                                env=environment if tool() != "bwrap" else {"PATH": environment["PATH"]},
                                preexec_fn=functools.partial(_limit, limits, group, _tasks_of(os.getuid())),
                                start_new_session=True)
        try:
            status, timed_out = proc.wait(timeout=limits.wall_s), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap or unshare: the sandbox dies with it (pid namespace)
            status, timed_out = proc.wait(), True
    return Finished(status, timed_out, time.monotonic() - start)


def _bwrap(argv: Sequence[str], scratch: Path, read_only: dict[Path, Path], env: dict[str, str],
           devices: Sequence[str]) -> list[str]:
    command = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev"]
    for path in _system_paths():
        if path.is_symlink():
            command += ["--symlink", os.readlink(path), str(path)]
        else:
            command += ["--ro-bind", str(path), str(path)]
    # the private /tmp first: Python, the harness or the tapes may live under /tmp (a clone in /tmp) and
    # are bound on top of it
    command += ["--bind", str(scratch), "/scratch", "--bind", str(scratch / "tmp"), "/tmp", "--bind",
                str(scratch / "tmp"), "/dev/shm"]
    for path, at in {**{p: p for p in _python_paths()}, **read_only}.items():
        command += ["--ro-bind", str(path), str(at)]
    for device in devices:
        command += ["--dev-bind", device, device]
    command += ["--remount-ro", "/", "--chdir", "/scratch", "--clearenv"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    return [*command, "--", *argv]


def _unshare(argv: Sequence[str]) -> list[str]:
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"] if shutil.which("setpriv") else []
    return ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", *drop, *argv]


def _system_paths() -> list[Path]:
    """The system's folders (and their symlinks), and the files of /etc that programs read."""
    names = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache", "/etc/ld.so.conf",
             "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"]
    return [Path(n) for n in names if os.path.lexists(n)]


def _python_paths() -> list[Path]:
    """This Python: its environment and its base installation, outside the system's folders."""
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    return sorted(p for p in paths if not str(p).startswith("/usr/"))


def _tasks_of(uid: int) -> int:
    """How many processes and threads ``uid`` runs now (RLIMIT_NPROC counts them)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return count


def _limit(limits: Limits, group: Path | None, tasks: int) -> None:
    """In the child before exec: into the pids cgroup ``group`` (else RLIMIT_NPROC over the user's ``tasks``),
    the rlimits (CPU time: SIGXCPU at the cap, SIGKILL 5 s later), and SIGINT heard (`atomic.hear_sigint`)."""
    hear_sigint()
    if group is not None:
        (group / "cgroup.procs").write_text(str(os.getpid()))
    caps = [(resource.RLIMIT_AS, limits.memory, limits.memory), (resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 5),
            (resource.RLIMIT_FSIZE, limits.file_size, limits.file_size), (resource.RLIMIT_CORE, 0, 0)]
    if group is None:
        caps.append((resource.RLIMIT_NPROC, tasks + limits.processes, tasks + limits.processes))
    for which, soft, hard in caps:
        resource.setrlimit(which, (soft, hard))
