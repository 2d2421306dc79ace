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
import os
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


def payload(size: int) -> bytes:
    """`size` bytes of real memory: one random MiB repeated.

    Never use bytes(size) as benchmark input: it is calloc'ed, every page maps the one zero
    page, and reading it stays in cache; hashlib's rate on it is about 40% too high here.
    """
    block = os.urandom(1 << 20)
    return block * (size >> 20) + block[: size & ((1 << 20) - 1)]


def sha256_bulk_mbps(size: int = 256 << 20, runs: int = 3) -> float:
    """Median MB/s of hashlib SHA-256 over one in-memory buffer of `size` bytes.

    hashlib hashes one big buffer with OpenSSL (SHA-NI where the CPU has it): the hardware
    limit any SHA-256 bound code is measured against.
    """
    data = payload(size)
    hashlib.sha256(data[: 1 << 20]).digest()  # warm up: load OpenSSL's code
    rate, _ = median_of(lambda: sha256_rate(data), runs)
    return rate


def sha256_rate(data: bytes | memoryview) -> float:
    """MB/s of one hashlib SHA-256 over `data`: one sample of the yardstick, to pair with a
    sample of the code under test when other processes make the machine's speed vary."""
    return rate_mbps(len(data), timed(lambda: hashlib.sha256(data).digest()))


def sha256_cached_rate(block_size: int = 1 << 20, repeat: int = 256) -> float:
    """MB/s of hashlib SHA-256 fed one cache-resident block `repeat` times.

    The in-cache figure is the SHA-NI limit itself. On this VM it is markedly higher than
    hashing a buffer in main memory (`sha256_rate`), the figure issue 6 calls "bulk"; a
    benchmark may report its ratio to both.
    """
    block = os.urandom(block_size)

    def run() -> None:
        h = hashlib.sha256()
        for _ in range(repeat):
            h.update(block)
        h.digest()

    run()  # bring the block into cache
    return rate_mbps(block_size * repeat, timed(run))


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
