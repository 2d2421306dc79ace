"""A worker-pool process for the subprocess tests: `python run_pool_proc.py '<json spec>'`.

The spec names the database URL, a directory for marker files, config overrides, and
scripted behaviours:
- "hang_job": a job id whose handler writes `<dir>/running-<job>-<pid>` and then blocks
  until cancelled ("stubborn": true ignores the cancel);
- "record": every handler run appends "<job id> <pid>" to `<dir>/ran-<pid>.txt`.
Everything else succeeds at once. It exits with `run_pool`'s exit code.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from loguru import logger  # noqa: E402

from actors.pool import run_pool  # noqa: E402
from actors.testing import test_config  # noqa: E402
from dataprep.context import JobContext, JobOutcome  # noqa: E402
from dataprep.errors import JobCancelled  # noqa: E402
from storage.rows import JobRow  # noqa: E402


def main() -> int:
    spec = json.loads(sys.argv[1])
    workdir = Path(spec["dir"])
    hang_job = spec.get("hang_job")
    stubborn = spec.get("stubborn", False)
    record = spec.get("record", False)
    pid = os.getpid()
    logger.remove()
    logger.add(sys.stderr, level=spec.get("log_level", "INFO"))

    def handler(job: JobRow, ctx: JobContext) -> JobOutcome:
        if record:
            with open(workdir / f"ran-{pid}.txt", "a") as out:
                out.write(f"{job.id} {pid}\n")
        if job.id == hang_job:
            (workdir / f"running-{job.id}-{pid}").write_text(str(job.attempts))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if ctx.cancel.wait(0.05) and not stubborn:
                    raise JobCancelled(f"job {job.id} cancelled")
            raise RuntimeError("hung job was never cancelled")
        return JobOutcome()

    config = test_config(spec["url"], **spec.get("config", {}))
    handlers = {t: handler for t in ("scan", "pack", "daggen")}
    return run_pool(config, handlers=handlers)


if __name__ == "__main__":
    sys.exit(main())
