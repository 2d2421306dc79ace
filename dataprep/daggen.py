"""The DagGen job (SPEC §8.4): export the directory DAG of an attachment as a `dag` piece.

The CAR's header root is the root directory's CID. Then, for every unexported directory
in id order, its node blocks (the basic node, or every HAMT shard) and then its
*additional* blocks (split-file parents), each group sorted by CID bytes, so the CAR and
its piece CID are reproducible. Blocks are not deduplicated across directories
(Singularity's layout). The Car row, its car_blocks and the `exported` marks are written
by the outcome's `apply`, with the job's completion.
"""
from __future__ import annotations

from loguru import logger

from dataprep.car import car_header
from dataprep.cid import cid_to_str, encode_uvarint
from dataprep.context import JobContext, JobOutcome
from dataprep.dirstate import DirectoryState
from dataprep.errors import DagNotReady, DataprepError, JobCancelled
from dataprep.output import CarOutput, choose_output
from dataprep.piece import CarSink, seal_piece
from storage import dag, packing
from storage.models import PieceType
from storage.rows import JobRow

HEADER_LEN = 59


def daggen_handler(job: JobRow, ctx: JobContext) -> JobOutcome:
    """Run a DagGen job; see the module docstring."""
    att = job.attachment
    if att is None:
        raise DataprepError(f"job {job.id} has no attachment (orphaned by prep deletion)")
    prep = att.preparation
    if prep.no_dag:
        raise DataprepError(f"dag generation is disabled for preparation {prep.name}")
    root = dag.root_directory(ctx.db, att.id)
    if root is None:
        raise DataprepError(f"attachment {att.id} has no root directory")
    if root.cid is None:
        raise DagNotReady(f"dag is not ready: no file of preparation {prep.name} "
                          "has been packed yet")
    out_storage = choose_output(att.outputs)
    output = CarOutput(out_storage.path, job.id) if out_storage is not None else None
    sink = CarSink(output)
    visited: list[tuple[int, bytes | None]] = []
    blocks: list[packing.BlockRow] = []
    storage_path = ""
    piece = None
    try:
        sink.write(car_header(root.cid))
        for row in dag.iter_unexported(ctx.db, att.id):
            if ctx.cancel.is_set():
                raise JobCancelled(f"daggen job {job.id} cancelled")
            visited.append((row.id, row.cid))
            if not row.data:
                continue
            for cid, data in DirectoryState.from_bytes(row.data).export_blocks():
                prefix = encode_uvarint(len(cid) + len(data))
                offset = sink.offset
                sink.write(prefix + cid + data)
                if not prep.no_inline:
                    blocks.append(packing.BlockRow(cid, offset, len(prefix) + len(cid)
                                                   + len(data), prefix, data, 0, None))
            ctx.progress(sink.offset, 0)
        if sink.offset <= HEADER_LEN:
            logger.info("daggen job {}: nothing to export", job.id)
            sink.close()
            if output is not None:
                output.abort()
        else:
            piece, storage_path = seal_piece(sink, prep.min_piece_size, may_pad=True)
    except BaseException:
        sink.close()
        if output is not None:
            output.abort()
        raise
    if piece is not None:
        logger.info("daggen job {}: {} directories, CAR {} bytes, piece {}, root {}", job.id,
                    len(visited), sink.offset, piece.name, cid_to_str(root.cid))
    record = None if piece is None else packing.PackRecord(
        job_id=job.id, attachment_id=att.id, preparation_id=prep.id,
        storage_id=out_storage.id if out_storage is not None else None,
        storage_path=storage_path, root_cid=root.cid, piece=piece, ranges=[],
        blocks=blocks, piece_type=PieceType.DAG)

    def apply() -> None:
        if record is not None:
            packing.insert_car(ctx.db, record, num_of_files=0, replace_job=False)
        for dir_id in dag.mark_exported(ctx.db, visited):
            logger.warning("daggen job {}: directory {} changed since we started; it stays "
                           "unexported for the next run", job.id, dir_id)
        if record is not None and output is not None:
            output.commit()  # last: a failure above leaves only our temp file to discard

    def discard() -> None:
        if output is not None:
            output.abort()  # our temp file only, never a <pieceCID>.car

    summary = f"piece {piece.name}" if piece is not None else "nothing to export"
    return JobOutcome(apply=apply, discard=discard, summary=summary)
