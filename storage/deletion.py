"""Deleting a preparation (SPEC §9): fast, and leaving the bulk of the work to the reaper.

One short transaction deletes the preparation's source and output attachments and the
preparation row. The database then sets `attachment_id` (jobs, files, directories, cars)
and `cars.preparation_id` to NULL, which marks those rows as orphans; `storage.reaping`
deletes them later in batches. So deleting a preparation of any size takes about as long
as deleting three kinds of small rows.

It is refused while any job of the preparation is `processing` (with or without a worker):
its worker would otherwise finish against rows that no longer exist.
"""
from __future__ import annotations

from loguru import logger

from storage.db import Database
from storage.errors import Conflict, NotFound
from storage.models import Job, JobState, OutputAttachment, Preparation, SourceAttachment
from storage.retry import retrying


@retrying
def delete_preparation(db: Database, prep_id: int) -> None:
    """Delete preparation `prep_id` and its attachments; everything else becomes orphaned.

    Raises:
        NotFound: there is no such preparation.
        Conflict: some of its jobs are processing ("preparation X has N active jobs").
    """
    with db.atomic():
        prep = Preparation.get_or_none(Preparation.id == prep_id)
        if prep is None:
            raise NotFound(f"preparation {prep_id} does not exist")
        attachments = SourceAttachment.select(SourceAttachment.id).where(
            SourceAttachment.preparation == prep_id)
        claimable = Job.select(Job.id).where(
            Job.attachment.in_(attachments)
            & Job.state.in_([JobState.READY, JobState.PROCESSING]))
        if db.is_postgres:
            # Lock the jobs a claim could take (a claim skips locked rows) or is taking (we
            # wait for it to commit, then see it processing). Without this a job could be
            # claimed between the count below and the delete, and run orphaned.
            list(claimable.for_update("FOR UPDATE").tuples())
        # SQLite: the IMMEDIATE transaction already keeps every claim out until we commit.
        active = (Job.select().where(Job.attachment.in_(attachments)
                                     & (Job.state == JobState.PROCESSING)).count())
        if active:
            raise Conflict(f"preparation {prep.name} has {active} active jobs")
        SourceAttachment.delete().where(SourceAttachment.preparation == prep_id).execute()
        OutputAttachment.delete().where(OutputAttachment.preparation == prep_id).execute()
        Preparation.delete().where(Preparation.id == prep_id).execute()
    logger.bind(action="delete_preparation").info(
        "deleted preparation {} ({}); its rows are left to the reaper", prep.name, prep_id)
