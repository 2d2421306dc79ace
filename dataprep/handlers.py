"""The registry of job handlers: job type -> `handler(job, ctx) -> JobOutcome`."""
from __future__ import annotations

from dataprep.context import Handler
from dataprep.daggen import daggen_handler
from dataprep.pack import pack_handler
from dataprep.scan import scan_handler

HANDLERS: dict[str, Handler] = {
    "scan": scan_handler,
    "pack": pack_handler,
    "daggen": daggen_handler,
}
