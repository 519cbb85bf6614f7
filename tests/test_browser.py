"""The headless-Chromium driver leaves nothing running: its whole process group is ended and waited for
before the profile folder goes (helpers writing into it made the folder's removal fail under load)."""

import tempfile
import time
from pathlib import Path

from tests.browser import _Chromium

FAKE = """#!/bin/bash
for a in "$@"; do case $a in --user-data-dir=*) profile=${a#*=};; esac; done
(trap '' TERM; sleep 1.5; mkdir -p "$profile/Default"; echo late > "$profile/Default/written-after-exit") &
echo $! > "$profile/../helper.pid"
exec sleep 60
"""


def test_the_whole_process_group_is_gone_before_the_profile_is_removed(tmp_path):
    exe = tmp_path / "fake-chromium"
    exe.write_text(FAKE)
    exe.chmod(0o755)
    outer = tmp_path / "outer"
    outer.mkdir()
    with tempfile.TemporaryDirectory(dir=outer) as profile:
        with _Chromium(str(exe), profile):
            deadline = time.monotonic() + 60  # a hang guard: a loaded machine starts processes slowly
            while not (outer / "helper.pid").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        helper = int((outer / "helper.pid").read_text())
    time.sleep(2)  # past the helper's write, had it survived
    assert not list(outer.rglob("written-after-exit"))
    state = Path(f"/proc/{helper}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"
