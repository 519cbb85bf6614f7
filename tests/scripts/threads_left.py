"""`torchrun ... tests/scripts/threads_left.py train ...`: `python -m harness train ...` whose ranks each print, right
after `distributed.shutdown`, the threads still running (Linux names them in /proc): ``threads left: [...]``."""

import os
import sys

from harness.cli import main
from harness.partb import distributed

shutdown = distributed.shutdown


def shutdown_and_list_threads() -> None:
    shutdown()
    tasks = f"/proc/{os.getpid()}/task"
    names = sorted(open(f"{tasks}/{t}/comm").read().strip() for t in os.listdir(tasks))
    sys.stdout.write(f"threads left: {names}\n")  # one write: torchrun's ranks are unbuffered (-u) and share the pipe


distributed.shutdown = shutdown_and_list_threads
sys.exit(main())
