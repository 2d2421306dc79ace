"""commP throughput of each kernel, against hashlib's bulk SHA-256 measured in the same run.

    python bench/commp.py [--size-mib 256] [--fallback-mib 4] [--runs 3] [--json]

Figures (MB/s, median of --runs): the native kernel (SHA-NI if the CPU has it) fed in 1 MiB
update() calls as pack feeds it, the same with the portable C SHA-256, two native objects in
two threads (aggregate), and the pure-Python fallback on a smaller input. Each comes with its
ratio to bulk SHA-256. Target (issue 6): native ≥ 0.2× bulk; commP's single-core limit is
about 0.25× (two compressions per 32 bytes of Fr32 data) unless two hashes overlap in the
SHA unit, which the native kernel does.
"""
from __future__ import annotations

import os
import sys
import threading

from _common import base_parser, emit, median_of, peak_rss_mb, rate_mbps, ratio, sha256_bulk_mbps, timed

from dataprep import commp

CHUNK = 1 << 20
TARGET = 0.2


def _payload(size: int) -> memoryview:
    # Content does not change SHA-256 speed; one random MiB repeated avoids a slow generator.
    block = os.urandom(CHUNK)
    return memoryview(block * (size // CHUNK) + block[: size % CHUNK])


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
        data = _payload(args.size_mib << 20)
        _feed(native, data[: 8 * CHUNK])  # warm up
        rate, samples = median_of(lambda: _rate(native, data), args.runs)
        result |= {
            "sha_ni": native().kernel == "sha-ni",
            "native_mbps": rate,
            "native_samples_mbps": samples,
            "native_ratio": ratio(rate, bulk),
            "native_target_met": rate / bulk >= TARGET,
        }
        rate, _ = median_of(lambda: _rate(lambda: native(portable=True), data[: 64 << 20]), args.runs)
        result |= {"portable_c_mbps": rate, "portable_c_ratio": ratio(rate, bulk)}
        rate, _ = median_of(lambda: _rate_two_threads(native, data[: 128 << 20]), args.runs)
        result |= {"native_2_threads_mbps": rate, "native_2_threads_ratio": ratio(rate, bulk)}
    else:
        result["native_mbps"] = None
    small = _payload(args.fallback_mib << 20)
    rate, samples = median_of(lambda: _rate(commp.PythonCommP, small), args.runs)
    result |= {"fallback_mbps": rate, "fallback_samples_mbps": samples, "fallback_ratio": ratio(rate, bulk)}
    result["peak_rss_mib"] = peak_rss_mb()
    emit(result, args.json)
    return 0 if native is None or result["native_target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
