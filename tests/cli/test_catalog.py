"""storage/catalog.py on SQLite and PostgreSQL: storages, preparations, start/pause/resume."""
from __future__ import annotations

import pytest

from storage import catalog
from storage.errors import Conflict, NotFound
from storage.models import Car, Directory, File, Job, JobState, SourceAttachment


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "f.txt").write_text("hello")
    out = tmp_path / "out"
    out.mkdir()
    return src, out


def test_create_and_list_storages(db, tree):
    src, out = tree
    s = catalog.create_storage(db, "src", str(src))
    assert s.path == str(src) and s.type == "local"
    catalog.create_storage(db, "out", str(out))
    assert [r.name for r in catalog.list_storages(db)] == ["src", "out"]
    assert catalog.get_storage(db, "out").path == str(out)
    assert catalog.find_storage_by_path(db, str(src)).name == "src"


def test_storage_errors_are_one_line_and_name_the_thing(db, tree):
    src, _ = tree
    catalog.create_storage(db, "src", str(src))
    with pytest.raises(Conflict, match="storage 'src' already exists"):
        catalog.create_storage(db, "src", str(src))
    with pytest.raises(catalog.InvalidParameter, match="is not a directory"):
        catalog.create_storage(db, "x", str(src / "missing"))
    with pytest.raises(NotFound, match="storage 'nope' not found"):
        catalog.get_storage(db, "nope")


def test_create_preparation_makes_attachments_and_root_directories(db, tree):
    src, out = tree
    catalog.create_storage(db, "src", str(src))
    catalog.create_storage(db, "out", str(out))
    prep = catalog.create_preparation(db, "p", ["src"], ["out"], max_size=1 << 20,
                                      skip_inaccessible=True)
    assert prep.max_size == 1 << 20 and prep.piece_size == 2 << 20
    att = SourceAttachment.get(SourceAttachment.preparation == prep.id)
    root = Directory.get(Directory.attachment == att.id)
    assert root.name == "" and root.parent_id is None and root.cid is None
    assert catalog.get_storage(db, "src").client_config == {"skipInaccessibleFile": True}
    st = catalog.preparation_status(db, "p")
    assert st.sources == ("src",) and st.outputs == ("out",)
    assert st.root_cids == {"src": None} and st.files == 0 and st.pieces == 0
    assert [p.name for p in catalog.list_preparations(db)] == ["p"]
    assert catalog.get_preparation(db, str(prep.id)).name == "p"


def test_default_piece_size_holds_the_default_max_size(db, tree):
    src, _ = tree
    catalog.create_storage(db, "src", str(src))
    prep = catalog.create_preparation(db, "p", ["src"])
    assert prep.max_size == 31.5 * 2**30 and prep.piece_size == 32 * 2**30


@pytest.mark.parametrize("kwargs, message", [
    ({"max_size": 0}, "max size must be more than 0"),
    ({"max_size": 1 << 20, "piece_size": 3000}, "power of two"),
    ({"max_size": 1 << 20, "piece_size": 1 << 20}, "does not fit a piece"),
    ({"max_size": 1 << 20, "min_piece_size": 1000}, "min piece size must be a power of two"),
    ({"max_size": 1 << 20, "min_piece_size": 1 << 30}, "is more than the piece size"),
    ({"max_size": 1 << 20, "no_inline": True}, "--no-inline needs an output"),
])
def test_bad_preparation_parameters_are_refused(db, tree, kwargs, message):
    src, _ = tree
    catalog.create_storage(db, "src", str(src))
    with pytest.raises(catalog.InvalidParameter, match=message):
        catalog.create_preparation(db, "p", ["src"], **kwargs)
    assert catalog.list_preparations(db) == []


def test_duplicate_preparation_and_unknown_storage_are_refused(db, tree):
    src, _ = tree
    catalog.create_storage(db, "src", str(src))
    catalog.create_preparation(db, "p", ["src"])
    with pytest.raises(Conflict, match="preparation 'p' already exists"):
        catalog.create_preparation(db, "p", ["src"])
    with pytest.raises(NotFound, match="storage 'ghost' not found"):
        catalog.create_preparation(db, "q", ["ghost"])
    with pytest.raises(NotFound, match="preparation 'zz' not found"):
        catalog.preparation_status(db, "zz")


def test_start_scan_creates_one_job_per_source_and_refuses_while_it_runs(db, tree, tmp_path):
    src, out = tree
    other = tmp_path / "other"
    other.mkdir()
    catalog.create_storage(db, "src", str(src))
    catalog.create_storage(db, "other", str(other))
    catalog.create_preparation(db, "p", ["src", "other"])
    ids = catalog.start_scan(db, "p")
    assert len(ids) == 2
    assert {j.state for j in catalog.list_jobs(db, preparation="p")} == {"ready"}
    with pytest.raises(Conflict, match="already running"):
        catalog.start_scan(db, "p")
    # complete and error jobs restart as fresh ready jobs, errors cleared, same ids
    Job.update(state=JobState.ERROR, error_message="boom", attempts=3).where(
        Job.id == ids[0]).execute()
    Job.update(state=JobState.COMPLETE).where(Job.id == ids[1]).execute()
    assert catalog.start_scan(db, "p") == ids
    rows = catalog.list_jobs(db, preparation="p")
    assert [(r.state, r.error_message, r.attempts) for r in rows] == [("ready", "", 0)] * 2


def test_start_daggen_is_refused_when_the_dag_is_disabled(db, tree):
    src, _ = tree
    catalog.create_storage(db, "src", str(src))
    catalog.create_preparation(db, "p", ["src"], no_dag=True)
    with pytest.raises(catalog.InvalidParameter, match="dag generation is disabled"):
        catalog.start_daggen(db, "p")
    catalog.create_preparation(db, "q", ["src"])
    (job_id,) = catalog.start_daggen(db, "q")
    assert catalog.list_jobs(db, type="daggen")[0].id == job_id


def test_pause_keeps_worker_id_and_resume_makes_jobs_ready(db, tree):
    src, _ = tree
    catalog.create_storage(db, "src", str(src))
    catalog.create_preparation(db, "p", ["src"])
    (scan_id,) = catalog.start_scan(db, "p")
    att = SourceAttachment.get()
    done = Job.create(type="pack", state=JobState.COMPLETE, attachment=att)
    assert catalog.pause_preparation(db, "p") == 1
    assert Job.get_by_id(scan_id).state == JobState.PAUSED
    assert Job.get_by_id(done.id).state == JobState.COMPLETE
    assert catalog.resume_preparation(db, "p") == 1
    assert Job.get_by_id(scan_id).state == JobState.READY


def test_status_pieces_and_jobs_report_what_the_rows_say(db, tree):
    src, out = tree
    catalog.create_storage(db, "src", str(src))
    catalog.create_storage(db, "out", str(out))
    prep = catalog.create_preparation(db, "p", ["src"], ["out"], max_size=1 << 20)
    att = SourceAttachment.get()
    root = Directory.get(Directory.attachment == att.id)
    Directory.update(cid=b"\x01\x70\x12\x20" + bytes(32)).where(Directory.id == root.id).execute()
    File.create(path="a/f.txt", size=5, attachment=att, directory=root)
    pack = Job.create(type="pack", state=JobState.COMPLETE, attachment=att, progress_bytes=5,
                      total_bytes=5)
    Job.create(type="pack", state=JobState.ERROR, attachment=att, error_message="bad")
    Car.create(piece_cid=b"\x01\x81\xe2\x03\x92\x20\x20" + bytes(32), piece_size=1 << 20,
               file_size=100, storage=catalog.get_storage(db, "out").id,
               storage_path="x.car", preparation=prep.id, attachment=att, job=pack,
               num_of_files=1)
    # The partial root directory is no dataset root: only a DAG piece gives one.
    assert catalog.preparation_status(db, "p").root_cids["src"] is None
    Car.create(piece_type="dag", piece_size=1 << 20, file_size=96, preparation=prep.id,
               attachment=att, root_cid=b"\x01\x70\x12\x20" + bytes(32))
    st = catalog.preparation_status(db, "p")
    assert st.jobs == {"pack": {"complete": 1, "error": 1}}
    assert (st.files, st.bytes, st.pieces, st.packed_bytes) == (1, 5, 2, 5)
    assert st.root_cids["src"].startswith(b"\x01\x70")
    data, dag = catalog.list_pieces(db, "p")
    assert data.storage_path == str(out / "x.car") and data.job_id == pack.id
    assert dag.storage_path is None and dag.piece_type == "dag"
    assert [j.state for j in catalog.list_jobs(db, state="error")] == ["error"]
    assert [j.preparation for j in catalog.list_jobs(db, type="pack")] == ["p", "p"]
