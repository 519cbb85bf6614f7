"""`torchrun ... tests/scripts/threads_left.py train ...`: `python -m harness train ...`, then each rank prints the
threads still running (Linux names them in /proc) as one line, ``threads left: [...]``, before it exits."""

import os
import sys

from harness.cli import main

status = main()
tasks = f"/proc/{os.getpid()}/task"
print("threads left:", sorted(open(f"{tasks}/{t}/comm").read().strip() for t in os.listdir(tasks)), flush=True)
sys.exit(status)
