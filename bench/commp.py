"""commP throughput of each kernel, against hashlib's bulk SHA-256 measured in the same run.

    python bench/commp.py [--size-mib 256] [--fallback-mib 4] [--runs 3] [--json]

Figures (MB/s, median of --runs): hashlib's bulk SHA-256, the native kernel (SHA-NI if the CPU has it) fed in 1 MiB
update() calls as pack feeds it, the same with the portable C SHA-256, two native objects in
two threads (aggregate), and the pure-Python fallback on a smaller input. Each comes with its
ratio to bulk SHA-256. Each native run is paired with a bulk SHA-256 run just before it, and
`native_ratio` is the median of those per-run ratios, so that load from other processes
moves both sides of the ratio alike. `native_ratio_vs_cached_sha256` divides by SHA-256 of a
cache-resident block instead, which on this VM is much faster than hashing main memory; the
target is checked against the stricter of the two. Target (issue 6): native ≥ 0.2× bulk; commP's single-core limit is
about 0.25× (two compressions per 32 bytes of Fr32 data) unless two hashes overlap in the
SHA unit, which the native kernel does.
"""
from __future__ import annotations

import statistics
import sys
import threading

from _common import (
    base_parser, emit, median_of, payload, peak_rss_mb, rate_mbps, ratio, sha256_bulk_mbps,
    sha256_cached_rate, sha256_rate, timed,
)

from dataprep import commp

CHUNK = 1 << 20
TARGET = 0.2


def _feed(factory, data: memoryview) -> None:  # type: ignore[no-untyped-def]
    cp = factory()
    for off in range(0, len(data), CHUNK):
        cp.update(data[off : off + CHUNK])
    cp.digest()


def _rate(factory, data: memoryview) -> float:  # type: ignore[no-untyped-def]
    return rate_mbps(len(data), timed(lambda: _feed(factory, data)))


def _rate_two_threads(factory, data: memoryview) -> float:  # type: ignore[no-untyped-def]
    threads = [threading.Thread(target=_feed, args=(factory, data)) for _ in range(2)]

    def both() -> None:
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return rate_mbps(2 * len(data), timed(both))


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--size-mib", type=int, default=256, help="native input size")
    parser.add_argument("--fallback-mib", type=int, default=4, help="pure-Python input size")
    args = parser.parse_args()

    result: dict[str, object] = {"kernel": commp.KERNEL, "runs": args.runs}
    bulk = sha256_bulk_mbps(runs=args.runs)
    result["bulk_sha256_mbps"] = bulk
    native = commp.NativeCommP
    if native is not None:
        data = memoryview(payload(args.size_mib << 20))
        _feed(native, data[: 8 * CHUNK])  # warm up
        runs = [(sha256_rate(data), sha256_cached_rate(), _rate(native, data)) for _ in range(args.runs)]
        paired = statistics.median(n / b for b, _, n in runs)
        paired_cached = statistics.median(n / c for _, c, n in runs)
        result |= {
            "sha_ni": native().kernel == "sha-ni",
            "native_mbps": statistics.median(n for _, _, n in runs),
            "native_samples_mbps": [n for _, _, n in runs],
            "paired_bulk_samples_mbps": [b for b, _, _ in runs],
            "paired_cached_sha256_samples_mbps": [c for _, c, _ in runs],
            "native_ratio": round(paired, 3),
            "native_ratio_vs_cached_sha256": round(paired_cached, 3),
            # Held to the stricter yardstick: SHA-256 of a block that stays in cache.
            "native_target_met": min(paired, paired_cached) >= TARGET,
        }
        rate, _ = median_of(lambda: _rate(lambda: native(portable=True), data[: 64 << 20]), args.runs)
        result |= {"portable_c_mbps": rate, "portable_c_ratio": ratio(rate, bulk)}
        rate, _ = median_of(lambda: _rate_two_threads(native, data[: 128 << 20]), args.runs)
        result |= {"native_2_threads_mbps": rate, "native_2_threads_ratio": ratio(rate, bulk)}
    else:
        result["native_mbps"] = None
    small = memoryview(payload(args.fallback_mib << 20))
    rate, samples = median_of(lambda: _rate(commp.PythonCommP, small), args.runs)
    result |= {"fallback_mbps": rate, "fallback_samples_mbps": samples, "fallback_ratio": ratio(rate, bulk)}
    result["peak_rss_mib"] = peak_rss_mb()
    emit(result, args.json)
    return 0 if native is None or result["native_target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
