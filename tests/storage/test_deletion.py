"""Preparation deletion and the ON DELETE actions of SPEC §1.2, on both backends."""
from __future__ import annotations

import time

import pytest

from storage.deletion import delete_preparation
from storage.errors import Conflict, NotFound
from storage.models import (Car, CarBlock, Directory, File, FileRange, Job,
                            OutputAttachment, Preparation, SourceAttachment, Storage, Worker)
from storage.reaping import reap_orphans
from tests.factories import (make_car, make_car_block, make_directory, make_file, make_job,
                             make_range, make_source, make_worker)


def _full_preparation(db):
    """A preparation with one row of every kind hanging off it; returns the ids."""
    src = make_source(db, outputs=("/nonexistent/pieceworks/out",))
    sub = make_directory(db, src.attachment_id, src.root_directory_id, name="sub")
    file_id = make_file(db, src.attachment_id, sub)
    job_id = make_job(db, src.attachment_id, "pack", state="complete")
    range_id = make_range(db, file_id, job_id)
    car_id = make_car(db, preparation_id=src.preparation_id, attachment_id=src.attachment_id,
                      storage_id=src.output_storage_ids[0], job_id=job_id)
    block_id = make_car_block(db, car_id, file_id)
    return src, dict(sub=sub, file=file_id, job=job_id, range=range_id, car=car_id,
                     block=block_id)


def test_deleting_a_preparation_orphans_its_rows_and_cascades_its_attachments(db):
    src, ids = _full_preparation(db)
    delete_preparation(db, src.preparation_id)
    assert not Preparation.select().where(Preparation.id == src.preparation_id).exists()
    assert SourceAttachment.select().count() == 0 and OutputAttachment.select().count() == 0
    assert Storage.select().count() == 2  # storages are kept
    assert Job.get_by_id(ids["job"]).attachment_id is None
    assert File.get_by_id(ids["file"]).attachment_id is None
    assert {d.attachment_id for d in Directory.select()} == {None}
    car = Car.get_by_id(ids["car"])
    assert (car.preparation_id, car.attachment_id) == (None, None)
    assert car.job_id == ids["job"] and car.storage_id == src.output_storage_ids[0]
    rng = FileRange.get_by_id(ids["range"])
    assert (rng.job_id, rng.file_id) == (ids["job"], ids["file"])
    assert CarBlock.get_by_id(ids["block"]).car_id == ids["car"]
    reap_orphans(db, time_budget=30)
    for model in (Job, File, Directory, FileRange, Car, CarBlock):
        assert model.select().count() == 0, model.__name__


def test_the_remaining_on_delete_actions_match_spec(db):
    src, ids = _full_preparation(db)
    worker = make_worker(db)
    Job.update(worker=worker).where(Job.id == ids["job"]).execute()
    Worker.delete().where(Worker.id == worker).execute()            # jobs.worker_id: SET NULL
    assert Job.get_by_id(ids["job"]).worker_id is None
    Job.delete().where(Job.id == ids["job"]).execute()               # SET NULL on ranges, cars
    assert FileRange.get_by_id(ids["range"]).job_id is None
    assert Car.get_by_id(ids["car"]).job_id is None
    Car.delete().where(Car.id == ids["car"]).execute()               # car_blocks.car_id: SET NULL
    assert CarBlock.get_by_id(ids["block"]).car_id is None
    File.delete().where(File.id == ids["file"]).execute()            # ranges CASCADE, blocks SET NULL
    assert not FileRange.select().where(FileRange.id == ids["range"]).exists()
    assert CarBlock.get_by_id(ids["block"]).file_id is None
    other = make_file(db, src.attachment_id, ids["sub"])
    Directory.delete().where(Directory.id == src.root_directory_id).execute()  # subtree CASCADE
    assert Directory.select().count() == 0
    assert not File.select().where(File.id == other).exists()
    car2 = make_car(db, preparation_id=src.preparation_id, storage_id=src.storage_id)
    Storage.delete().where(Storage.id == src.storage_id).execute()   # attachments CASCADE
    assert SourceAttachment.select().count() == 0
    assert Car.get_by_id(car2).storage_id is None                    # cars.storage_id: SET NULL


def test_deletion_is_refused_while_a_job_is_processing_even_without_a_worker(db):
    src = make_source(db)
    make_job(db, src.attachment_id, "pack", state="processing", worker_id=make_worker(db))
    make_job(db, src.attachment_id, "scan", state="processing", worker_id=None)
    with pytest.raises(Conflict, match=r"has 2 active jobs"):
        delete_preparation(db, src.preparation_id)
    assert Preparation.select().count() == 1


def test_deleting_a_missing_preparation_says_so(db):
    with pytest.raises(NotFound):
        delete_preparation(db, 424242)


def _bulk(db, model, rows, chunk=2000):
    with db.atomic():
        for start in range(0, len(rows), chunk):
            model.insert_many(rows[start:start + chunk]).execute()


@pytest.mark.slow
def test_deleting_a_preparation_of_100000_files_is_fast_and_the_reaper_removes_everything(db):
    src = make_source(db)
    dirs = [make_directory(db, src.attachment_id, src.root_directory_id, name=f"d{i}")
            for i in range(100)]
    job_id = make_job(db, src.attachment_id, "pack", state="complete")
    _bulk(db, File, [{"path": f"d{i % 100}/f{i}", "size": i, "attachment": src.attachment_id,
                      "directory": dirs[i % 100]} for i in range(100_000)])
    first = File.select(File.id).order_by(File.id).first().id
    _bulk(db, FileRange, [{"file": first + i, "job": job_id, "offset": 0, "length": i}
                          for i in range(100_000)])
    assert File.select().count() == 100_000 and FileRange.select().count() == 100_000

    start = time.perf_counter()
    delete_preparation(db, src.preparation_id)
    assert time.perf_counter() - start < 2.0

    result = reap_orphans(db, time_budget=120)
    assert not result.budget_exhausted
    assert result["files"] + result["directories"] >= 101
    for model in (File, FileRange, Directory, Job):
        assert model.select().count() == 0, model.__name__


def test_rows_of_other_preparations_survive_a_deletion(db):
    keep, _ = _full_preparation(db)
    gone, _ = _full_preparation(db)
    before = {m: m.select().where(m.attachment == keep.attachment_id).count()
              for m in (Job, File, Directory, Car)}
    delete_preparation(db, gone.preparation_id)
    reap_orphans(db, time_budget=30)
    assert {m: m.select().count() for m in (Job, File, Directory, Car)} == before
    assert Preparation.select().count() == 1
