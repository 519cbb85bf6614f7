"""Check a page in headless Chromium, as a reader would see it: every <img> loaded (naturalWidth > 0),
no console errors or uncaught exceptions, the element ids present; optionally save a screenshot.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (JSON messages ended by
NUL on fds 3 and 4), so the page is checked unmodified and no websocket client is needed. Console
errors come from the protocol's own events (``Runtime.consoleAPICalled``, ``Runtime.exceptionThrown``,
``Log.entryAdded``, which also reports resources that failed to load), not from scraping logs.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE = """(() => ({
  images: Array.from(document.images, i => ({src: i.getAttribute('src'), naturalWidth: i.naturalWidth, complete: i.complete})),
  ids: Array.from(document.querySelectorAll('[id]'), e => e.id),
}))()"""


class BrowserUnavailable(HarnessError):
    """No Chromium here and it could not be installed; the message says why."""


@dataclass
class PageCheck:
    images: list[dict]
    ids: list[str]
    console_errors: list[str] = field(default_factory=list)

    @property
    def broken_images(self) -> list[str]:
        return [i["src"] for i in self.images if not i["naturalWidth"]]


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, NAMES) if path), None)


def ensure_chromium(timeout: float = 900) -> str:
    """The Chromium executable, installing Debian's ``chromium`` with apt-get when missing."""
    found = find_chromium()
    if found:
        return found
    if not shutil.which("apt-get"):
        raise BrowserUnavailable("chromium is not installed and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + timeout
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise BrowserUnavailable(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from None
        if res.returncode:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BrowserUnavailable(f"`{' '.join(cmd)}` failed (exit {res.returncode}): {tail[0]}")
    found = find_chromium()
    if not found:
        raise BrowserUnavailable("apt-get installed chromium but no chromium executable is on PATH")
    return found


def check_page(url: str, screenshot: str | Path | None = None, width: int = 1280, height: int = 900,
               timeout: float = 60, chromium: str | None = None) -> PageCheck:
    """Load ``url`` headless, wait for its load event, and report its images, ids and console errors."""
    with tempfile.TemporaryDirectory(prefix="harness-chromium-") as profile, _Chromium(chromium or ensure_chromium(), profile) as cdp:
        session = cdp.call("Target.attachToTarget", targetId=cdp.call("Target.createTarget", url="about:blank")["targetId"],
                           flatten=True)["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            cdp.call(method, session=session)
        cdp.call("Emulation.setDeviceMetricsOverride", session=session, width=width, height=height,
                 deviceScaleFactor=1, mobile=False)
        cdp.call("Page.navigate", session=session, url=url)
        cdp.wait_for("Page.loadEventFired", session, time.monotonic() + timeout)
        probe = cdp.call("Runtime.evaluate", session=session, expression=PROBE, returnByValue=True)["result"]["value"]
        if screenshot is not None:
            data = cdp.call("Page.captureScreenshot", session=session, format="png")["data"]
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            Path(screenshot).write_bytes(base64.b64decode(data))
        return PageCheck(probe["images"], probe["ids"], cdp.errors)


def _group_alive(proc: subprocess.Popen) -> bool:
    """Whether a process of ``proc``'s group (its pid) still runs; reaps ``proc`` itself when it has exited.
    Zombies of the group (exited, not yet reaped by their new parent) count as gone: they write nothing."""
    proc.poll()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == proc.pid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


class _Chromium:
    """A headless Chromium process and its DevTools pipe; ``errors`` collects console errors as they arrive."""

    def __init__(self, exe: str, profile: str):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        hi_in, hi_out = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
        for fd in (to_child, from_child):
            os.close(fd)
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False,
            preexec_fn=lambda: (os.dup2(hi_in, 3), os.dup2(hi_out, 4)), start_new_session=True)
        for fd in (hi_in, hi_out):
            os.close(fd)
        self._buf, self._id, self.errors, self._events = b"", 0, [], []

    def __enter__(self) -> "_Chromium":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            os.close(self._write)
            os.close(self._read)

    def stop(self, wait_s: float = 10) -> None:
        """End Chromium's whole process group (its own session) and wait until none of it is left: its
        helper processes go on writing into the profile folder after the browser exits, and a folder
        removed under them fails with "Directory not empty" (seen on a loaded 2-core machine).
        SIGTERM, then SIGKILL after ``wait_s``."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_alive(self.proc):
                time.sleep(0.05)
            if not _group_alive(self.proc):
                break
        self.proc.wait()

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            reply = self._next(deadline, method)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise HarnessError(f"chromium: {method} failed: {reply['error'].get('message')}")
                return reply["result"]

    def wait_for(self, event: str, session: str, deadline: float) -> None:
        while not any(e.get("method") == event and e.get("sessionId") == session for e in self._events):
            self._next(deadline, event)

    def _next(self, deadline: float, waiting_for: str) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise HarnessError(f"chromium: no answer to {waiting_for} in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise HarnessError(f"chromium exited (code {self.proc.poll()}) while waiting for {waiting_for}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self._events.append(message)
            self._collect(message)
        return message

    def _collect(self, event: dict) -> None:
        method, p = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            self.errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
