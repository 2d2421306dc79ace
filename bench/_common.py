"""Helpers shared by the benchmarks in bench/: the SHA-256 yardstick, medians, peak RSS, output.

Every benchmark reports its rate next to hashlib's bulk SHA-256 rate measured in the same
run (issue 6: that rate is the unit, since commP and pack are SHA-256 bound), and the ratio.

Typical use::

    from _common import base_parser, emit, median_of, ratio, sha256_bulk_mbps

    args = base_parser(__doc__).parse_args()
    bulk = sha256_bulk_mbps(runs=args.runs)
    rate, samples = median_of(lambda: my_rate_mbps(), args.runs)
    emit({"bulk_sha256_mbps": bulk, "x_mbps": rate, "x_ratio": ratio(rate, bulk)}, args.json)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    # Benchmarks run as scripts from anywhere; the packages live in the repository root.
    sys.path.insert(0, str(REPO))

MB = 1_000_000
"""Rates are in decimal megabytes per second, as hashlib figures are usually quoted."""


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: --runs and --json."""
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0] if doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is kept")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(measure: Callable[[], float], runs: int) -> tuple[float, list[float]]:
    """Call `measure` `runs` times; return (median, all samples in order)."""
    samples = [measure() for _ in range(max(1, runs))]
    return statistics.median(samples), samples


def rate_mbps(nbytes: int, seconds: float) -> float:
    """Bytes over seconds, in MB/s."""
    return nbytes / seconds / MB


def sha256_bulk_mbps(size: int = 256 << 20, runs: int = 3) -> float:
    """Median MB/s of hashlib SHA-256 over one in-memory buffer of `size` bytes.

    hashlib hashes one big buffer with OpenSSL (SHA-NI where the CPU has it): the hardware
    limit any SHA-256 bound code is measured against.
    """
    data = bytes(size)
    hashlib.sha256(data[: 1 << 20]).digest()  # warm up: page in, load OpenSSL's code
    rate, _ = median_of(lambda: rate_mbps(size, timed(lambda: hashlib.sha256(data).digest())), runs)
    return rate


def ratio(rate: float, bulk: float) -> float:
    """rate / bulk, rounded for printing."""
    return round(rate / bulk, 3)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size so far, in MiB, of this process or of its waited-for children."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print the figures: one JSON document, or one `key: value` line each."""
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=False))
        return
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        elif isinstance(value, list):
            value = ", ".join(f"{v:,.1f}" if isinstance(v, float) else str(v) for v in value)
        print(f"{key}: {value}")
