"""From CAR bytes to a piece: the commP sink, piece size, and the padding rule (SPEC §7.5).

Shared by pack and daggen. `CarSink` receives every CAR byte once: it feeds commP and,
when there is an output storage, the temp file, and it counts the CAR length.
"""
from __future__ import annotations

from dataclasses import dataclass

from dataprep import commp
from dataprep.cid import cid_to_str
from dataprep.errors import NoContent
from dataprep.output import CarOutput

MiB = 1 << 20
MIN_COMMP_INPUT = 65


def next_pow2(x: int) -> int:
    """The smallest power of two >= x (next_pow2(0) = 1)."""
    return 1 if x <= 1 else 1 << (x - 1).bit_length()


class CarSink:
    """Where CAR bytes go: commP always, the output file when there is one."""

    def __init__(self, output: CarOutput | None) -> None:
        self.output = output
        self.commp = commp.CommP()
        self.offset = 0

    def write(self, data: bytes | memoryview) -> None:
        if self.output is not None:
            self.output.write(data)
        self.commp.update(data)
        self.offset += len(data)


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
    commitment, natural = sink.commp.digest()
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
