"""From CAR bytes to a piece: the commP sink, piece size, and the padding rule (SPEC §7.5).

Shared by pack and daggen. `CarSink` receives every CAR byte once: it feeds commP and,
when there is an output storage, the temp file, and it counts the CAR length.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from dataprep import commp
from dataprep.commp import next_pow2
from dataprep.cid import cid_to_str
from dataprep.errors import NoContent
from dataprep.output import CarOutput

MiB = 1 << 20
MIN_COMMP_INPUT = 65



class CarSink:
    """Where CAR bytes go: commP always, the output file when there is one.

    commP (the slowest stage) runs on its own thread: the kernel releases the GIL, so on
    two cores reading, hashing and writing overlap with it. Data handed to `write` may be
    a view of a buffer the caller reuses, so it is copied (a memcpy, cheap next to commP)
    before it is queued; the queue is bounded, so memory stays a few MiB.
    Call `digest()` once at the end, or `close()` to stop early.
    """

    QUEUE_DEPTH = 3
    BATCH = 1 << 20

    def __init__(self, output: CarOutput | None) -> None:
        self.output = output
        self.offset = 0
        self._commp = commp.CommP()
        self._queue: queue.Queue[bytes | bytearray | None] = queue.Queue(self.QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._small = bytearray()
        self._thread = threading.Thread(target=self._feed, name="commp", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is None:
                try:
                    self._commp.update(data)
                except BaseException as exc:  # noqa: BLE001 - re-raised by digest()
                    self._error = exc

    def write(self, data: bytes | memoryview) -> None:
        if self.output is not None:
            self.output.write(data)
        n = len(data)
        self.offset += n
        if n >= self.BATCH:
            self._flush_small()
            self._queue.put(bytes(data))
            return
        # Prefixes and blocks of small files are gathered into about BATCH bytes per
        # queue item: one hand-off to the commP thread per file cost more (GIL
        # round trips) than hashing the file.
        self._small += data
        if len(self._small) >= self.BATCH:
            self._flush_small()

    def _flush_small(self) -> None:
        if self._small:
            self._queue.put(self._small)  # handed over whole; a fresh one takes its place
            self._small = bytearray()

    def close(self) -> None:
        """Stop the commP thread (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def digest(self) -> tuple[bytes, int]:
        """(commitment, natural padded piece size) of everything written."""
        self._flush_small()
        self.close()
        if self._error is not None:
            raise self._error
        return self._commp.digest()


@dataclass(frozen=True)
class Piece:
    """The piece of one CAR.

    Attributes:
        piece_cid: binary piece CID.
        piece_size: padded piece size (a power of two, >= min_piece_size).
        file_size: the CAR's size as stored or served, padding included.
        padding: zero bytes served virtually (inline-only); 0 when written or not needed.
        zeros_to_write: zero bytes to append to the output file (temp-file path).
    """

    piece_cid: bytes
    piece_size: int
    file_size: int
    padding: int
    zeros_to_write: int

    @property
    def name(self) -> str:
        return cid_to_str(self.piece_cid)


def finish_piece(sink: CarSink, min_piece_size: int, *, may_pad: bool) -> Piece:
    """Compute the piece of everything written to `sink`.

    Args:
        min_piece_size: the preparation's value (0 means 1 MiB).
        may_pad: whether the padding rule applies: always inline-only; with an output
            storage only on the temp-file path (SPEC §7.5).

    Raises:
        NoContent: the CAR is too short to hold any block ("no content to pack").
    """
    car_len = sink.offset
    if car_len <= MIN_COMMP_INPUT:
        raise NoContent("no content to pack")
    min_size = min_piece_size or MiB
    commitment, natural = sink.digest()
    piece_size = max(natural, min_size)
    if natural < piece_size:
        commitment = commp.pad_commp(commitment, natural, piece_size)
    piece_cid = commp.piece_cid(commitment)
    file_size, padding, zeros = car_len, 0, 0
    if may_pad and piece_size > next_pow2(car_len):
        target = piece_size * 127 // 128
        file_size = target
        if sink.output is not None:
            zeros = target - car_len
        else:
            padding = target - car_len
    return Piece(piece_cid, piece_size, file_size, padding, zeros)


def seal_piece(sink: CarSink, min_piece_size: int, *, may_pad: bool) -> tuple[Piece, str]:
    """`finish_piece`, then the output file padded with its zeros and closed under the
    piece's name; returns the piece and that name ("" when the CAR is inline only)."""
    piece = finish_piece(sink, min_piece_size, may_pad=may_pad)
    if sink.output is None:
        return piece, ""
    if piece.zeros_to_write:
        sink.output.write_zeros(piece.zeros_to_write)
    return piece, sink.output.finish(piece.name)
