"""Inside a submission's sandbox: ``python -m harness.impl.worker JOB.json`` runs the user side of check-impl
(`run.outcomes`: the file loaded, each course function on its calls with the tapes' draws) and writes what
happened as data (`transfer.write`) into the job's folder. It judges nothing: the grader does, outside."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(job_file: str) -> int:
    from harness.devices import fix_threads
    from harness.errors import HarnessError
    from harness.impl import transfer
    from harness.impl.loader import load
    from harness.impl.references import TapeFiles
    from harness.impl.run import context, outcomes, select
    from harness.impl.source import compile_file

    pid = os.getpid()
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    folder = Path(job["out"])
    folder.mkdir(parents=True, exist_ok=True)
    fix_threads()
    error = None
    try:
        source = compile_file(Path(job["file"]))
        ctx = context(job["backend"], job["device"], job["seed"], job["stride"])
        module, stand_ins = load(source, ctx.notebook, ctx.den.device, ctx.den.dtype, job["seed"], job["time_limit"])
        results = outcomes(module, stand_ins, select(job["sections"]), ctx, source, job["time_limit"],
                           TapeFiles(ctx, Path(job["tapes"]), job["tape_files"]))
    except HarnessError as e:  # the file does not compile, its top level raised, an import is missing
        results, error = [], e
    if os.getpid() != pid:  # a process the user's code forked came back here: only the worker writes
        os._exit(0)
    transfer.write(folder, results, str(error or ""), getattr(error, "trace", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
