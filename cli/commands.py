"""The management commands: `db`, `storage`, `prep`, `job` and `worker`.

Each command is a few calls into `storage`; the listing commands print a table or, with
`--json`, a JSON document on stdout.
"""
from __future__ import annotations

import os
import uuid

import click

from cli.app import AppState, fail
from cli.layout import check_layout
from cli.output import cid_str, emit_json, emit_table, human_size
from cli.params import SIZE
from storage import catalog
from storage.models import JobState, JobType

pass_state = click.make_pass_decorator(AppState)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


# ---- db -------------------------------------------------------------------------------------

@click.group("db")
def db_group() -> None:
    """Create or upgrade the database schema."""


@db_group.command("init")
@pass_state
def db_init(state: AppState) -> None:
    """Create every table of a new database (nothing changes in an existing one)."""
    from storage import schema
    from storage.db import connect

    db = connect(state.config().database.url)
    schema.init_schema(db)
    click.echo(f"schema version {schema.schema_version(db)} on {db.url}")


@db_group.command("upgrade")
@pass_state
def db_upgrade(state: AppState) -> None:
    """Apply every schema migration this version knows."""
    from storage import schema
    from storage.db import connect

    db = connect(state.config().database.url)
    schema.upgrade_schema(db)
    click.echo(f"schema version {schema.schema_version(db)} on {db.url}")


# ---- storage --------------------------------------------------------------------------------

@click.group("storage")
def storage_group() -> None:
    """Local storages: source trees and output directories."""


@storage_group.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(file_okay=False))
@pass_state
def storage_add(state: AppState, name: str, path: str) -> None:
    """Add a local storage NAME rooted at directory PATH."""
    row = catalog.create_storage(state.db(), name, path)
    click.echo(f"storage {row.name} ({row.id}): {row.path}")


@storage_group.command("list")
@json_option
@pass_state
def storage_list(state: AppState, as_json: bool) -> None:
    """List the storages."""
    rows = catalog.list_storages(state.db())
    if as_json:
        emit_json([{"id": r.id, "name": r.name, "type": r.type, "path": r.path} for r in rows])
    else:
        emit_table(["id", "name", "type", "path"], [(r.id, r.name, r.type, r.path) for r in rows])


# ---- prep -----------------------------------------------------------------------------------

@click.group("prep")
def prep_group() -> None:
    """Preparations: a dataset made of source storages, packed into pieces."""


def resolve_storage(state: AppState, spec: str, *, output: bool) -> str:
    """The name of the storage `spec` names, or of a local storage made for the path `spec`.

    An output directory that does not exist yet is created.
    """
    db = state.db()
    try:
        return catalog.get_storage(db, spec).name
    except catalog.NotFound:
        pass
    path = os.path.abspath(os.path.expanduser(spec))
    if output and not os.path.exists(path):
        os.makedirs(path, exist_ok=True)
    if not os.path.isdir(path):
        kind = "output" if output else "source"
        fail(f"{kind} {spec!r} is neither a storage name nor a directory")
    found = catalog.find_storage_by_path(db, path)
    if found is not None:
        return found.name
    base = os.path.basename(path.rstrip(os.sep)) or "root"
    name = base
    existing = {s.name for s in catalog.list_storages(db)}
    while name in existing:
        name = f"{base}-{uuid.uuid4().hex[:6]}"
    return catalog.create_storage(db, name, path).name


def spec_path(state: AppState, spec: str) -> str:
    """The directory a `--source`/`--output` value names: a storage's path, or the path."""
    try:
        return catalog.get_storage(state.db(), spec).path
    except catalog.NotFound:
        return os.path.abspath(os.path.expanduser(spec))


@prep_group.command("create")
@click.argument("name")
@click.option("--source", "sources", multiple=True, required=True, metavar="PATH|STORAGE",
              help="A source directory or storage name (repeatable).")
@click.option("--output", "outputs", multiple=True, metavar="PATH|STORAGE",
              help="Where CAR files are written (repeatable); none: inline only.")
@click.option("--max-size", type=SIZE, default="31.5GiB", show_default=True,
              help="Largest CAR of one pack job.")
@click.option("--min-piece-size", type=SIZE, default="0", show_default=True,
              help="Smallest piece; smaller CARs are padded (0 means 1 MiB).")
@click.option("--piece-size", type=SIZE, default=None,
              help="Target piece size (default: the next power of two above max size).")
@click.option("--no-inline", is_flag=True, help="Do not record car_blocks rows (needs --output).")
@click.option("--no-dag", is_flag=True, help="Do not build the directory DAG.")
@click.option("--skip-inaccessible", is_flag=True, help="Skip source files that cannot be opened.")
@pass_state
def prep_create(state: AppState, name: str, sources: tuple[str, ...], outputs: tuple[str, ...],
                max_size: int, min_piece_size: int, piece_size: int | None, no_inline: bool,
                no_dag: bool, skip_inaccessible: bool) -> None:
    """Create preparation NAME over the given sources."""
    db = state.db()
    if any(p.name == name for p in catalog.list_preparations(db)):
        fail(f"preparation {name!r} already exists")
    check_layout(state.config().database.url, [spec_path(state, s) for s in sources],
                 [spec_path(state, s) for s in outputs])
    source_names = [resolve_storage(state, s, output=False) for s in sources]
    output_names = [resolve_storage(state, s, output=True) for s in outputs]
    prep = catalog.create_preparation(db, name, source_names, output_names, max_size=max_size,
                                      min_piece_size=min_piece_size, piece_size=piece_size,
                                      no_inline=no_inline, no_dag=no_dag,
                                      skip_inaccessible=skip_inaccessible)
    click.echo(f"preparation {prep.name} ({prep.id}): sources {', '.join(source_names)}; "
               f"outputs {', '.join(output_names) or '(inline only)'}; "
               f"max size {human_size(prep.max_size)}")


@prep_group.command("list")
@json_option
@pass_state
def prep_list(state: AppState, as_json: bool) -> None:
    """List the preparations."""
    rows = catalog.list_preparations(state.db())
    if as_json:
        emit_json(rows)
    else:
        emit_table(["id", "name", "max_size", "piece_size", "no_inline", "no_dag"],
                   [(p.id, p.name, p.max_size, p.piece_size, p.no_inline, p.no_dag)
                    for p in rows])


def status_document(st: catalog.PreparationStatus) -> dict:
    """The JSON form of `prep status` (also used by ez-prep)."""
    return {"id": st.preparation.id, "name": st.preparation.name,
            "sources": list(st.sources), "outputs": list(st.outputs), "jobs": st.jobs,
            "files": st.files, "bytes": st.bytes, "pieces": st.pieces,
            "root_cids": {k: cid_str(v) for k, v in st.root_cids.items()}}


@prep_group.command("status")
@click.argument("name")
@json_option
@pass_state
def prep_status(state: AppState, name: str, as_json: bool) -> None:
    """Job counts per type and state, files, bytes, pieces and root CID of NAME."""
    st = catalog.preparation_status(state.db(), name)
    if as_json:
        emit_json(status_document(st))
        return
    click.echo(f"preparation {st.preparation.name} ({st.preparation.id})")
    click.echo(f"  sources: {', '.join(st.sources)}")
    click.echo(f"  outputs: {', '.join(st.outputs) or '(inline only)'}")
    click.echo(f"  files:   {st.files} ({human_size(st.bytes)})")
    click.echo(f"  pieces:  {st.pieces}")
    for source, root in st.root_cids.items():
        click.echo(f"  root CID of {source}: {cid_str(root) or '(not built yet)'}")
    for job_type in (JobType.SCAN, JobType.PACK, JobType.DAGGEN):
        counts = st.jobs.get(job_type, {})
        text = ", ".join(f"{s} {n}" for s, n in sorted(counts.items())) or "none"
        click.echo(f"  {job_type} jobs: {text}")


@prep_group.command("scan")
@click.argument("name")
@pass_state
def prep_scan(state: AppState, name: str) -> None:
    """Start (or restart) the scan job of every source of NAME."""
    ids = catalog.start_scan(state.db(), name)
    click.echo(f"scan job(s) ready: {', '.join(map(str, ids)) or 'none (no source)'}")


@prep_group.command("daggen")
@click.argument("name")
@pass_state
def prep_daggen(state: AppState, name: str) -> None:
    """Start (or restart) the DAG generation job of every source of NAME."""
    db = state.db()
    ids = catalog.start_daggen(db, name)
    click.echo(f"daggen job(s) ready: {', '.join(map(str, ids)) or 'none (no source)'}")
    unfinished = [j.id for j in catalog.list_jobs(db, preparation=name, type=JobType.PACK)
                  if j.state != JobState.COMPLETE]
    if unfinished:
        # The DAG links only packed files: built now, the root CID would silently lack these.
        click.echo(f"Warning: {len(unfinished)} pack job(s) of {name} are not complete "
                   f"({', '.join(map(str, unfinished[:10]))}{', ...' if len(unfinished) > 10 else ''}); "
                   "the DAG will not link their files: run `prep daggen` again once they are",
                   err=True)


@prep_group.command("pause")
@click.argument("name")
@pass_state
def prep_pause(state: AppState, name: str) -> None:
    """Pause every ready or running job of NAME."""
    click.echo(f"paused {catalog.pause_preparation(state.db(), name)} job(s)")


@prep_group.command("resume")
@click.argument("name")
@pass_state
def prep_resume(state: AppState, name: str) -> None:
    """Resume every paused job of NAME."""
    click.echo(f"resumed {catalog.resume_preparation(state.db(), name)} job(s)")


PIECE_FIELDS = ("piece_cid", "piece_size", "piece_type", "root_cid", "file_size",
                "storage_path", "num_of_files", "job_id")


def piece_document(p: catalog.PieceRow) -> dict:
    return {"piece_cid": cid_str(p.piece_cid), "piece_size": p.piece_size,
            "piece_type": p.piece_type, "root_cid": cid_str(p.root_cid),
            "file_size": p.file_size, "storage_path": p.storage_path,
            "num_of_files": p.num_of_files, "job_id": p.job_id}


def emit_pieces(pieces: list[catalog.PieceRow]) -> None:
    emit_table(PIECE_FIELDS, [[piece_document(p)[f] for f in PIECE_FIELDS] for p in pieces])


@prep_group.command("pieces")
@click.argument("name")
@json_option
@pass_state
def prep_pieces(state: AppState, name: str, as_json: bool) -> None:
    """One entry per piece (CAR) of NAME."""
    pieces = catalog.list_pieces(state.db(), name)
    if as_json:
        emit_json([piece_document(p) for p in pieces])
    else:
        emit_pieces(pieces)


@prep_group.command("delete")
@click.argument("name")
@click.option("--remove-cars", is_flag=True, help="Also delete the CAR files of its pieces.")
@pass_state
def prep_delete(state: AppState, name: str, remove_cars: bool) -> None:
    """Delete NAME at once; the reaper removes its rows in the background."""
    from storage.deletion import delete_preparation

    db = state.db()
    prep = catalog.get_preparation(db, name)
    cars = [p.storage_path for p in catalog.list_pieces(db, name) if p.storage_path] \
        if remove_cars else []
    delete_preparation(db, prep.id)
    removed, problems = 0, []
    for path in cars:
        try:
            os.remove(path)
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
    click.echo(f"deleted preparation {prep.name} ({prep.id})"
               + (f"; removed {removed} CAR file(s)" if remove_cars else ""))
    if problems:
        fail(f"{len(problems)} CAR file(s) could not be removed: {'; '.join(problems)}")


# ---- job ------------------------------------------------------------------------------------

@click.group("job")
def job_group() -> None:
    """Single jobs."""


@job_group.command("list")
@click.option("--prep", "prep_name", metavar="NAME", help="Only the jobs of this preparation.")
@click.option("--state", "job_state", type=click.Choice([s.value for s in JobState]))
@click.option("--type", "job_type", type=click.Choice([t.value for t in JobType]))
@json_option
@pass_state
def job_list(state: AppState, prep_name: str | None, job_state: str | None,
             job_type: str | None, as_json: bool) -> None:
    """List jobs (orphans of deleted preparations show no preparation)."""
    rows = catalog.list_jobs(state.db(), preparation=prep_name, state=job_state, type=job_type)
    fields = ("id", "type", "state", "attempts", "error_message", "worker_id", "preparation")
    if as_json:
        emit_json([{f: getattr(r, f) for f in fields} for r in rows])
    else:
        emit_table(fields, [[getattr(r, f) for f in fields] for r in rows])


def _job_action(state: AppState, job_id: int, verb: str, fn_name: str) -> None:
    from storage import jobs

    db = state.db()
    if getattr(jobs, fn_name)(db, job_id):
        click.echo(f"job {job_id} {verb}")
        return
    job = jobs.get_job(db, job_id)
    if job is None:
        fail(f"job {job_id} not found")
    fail(f"job {job_id} cannot be {verb} in state {job.state}")


@job_group.command("retry")
@click.argument("job_id", type=int)
@pass_state
def job_retry(state: AppState, job_id: int) -> None:
    """Put job JOB_ID back to ready (from error, paused, created or complete)."""
    _job_action(state, job_id, "restarted", "restart_job")


@job_group.command("pause")
@click.argument("job_id", type=int)
@pass_state
def job_pause(state: AppState, job_id: int) -> None:
    """Pause job JOB_ID (ready or processing)."""
    _job_action(state, job_id, "paused", "pause_job")


@job_group.command("resume")
@click.argument("job_id", type=int)
@pass_state
def job_resume(state: AppState, job_id: int) -> None:
    """Resume paused job JOB_ID."""
    _job_action(state, job_id, "resumed", "resume_job")


# ---- worker ---------------------------------------------------------------------------------

@click.group("worker")
def worker_group() -> None:
    """Worker rows: one per live worker of every process."""


@worker_group.command("list")
@json_option
@pass_state
def worker_list(state: AppState, as_json: bool) -> None:
    """List the workers, with the job each one holds."""
    from storage.workers import list_workers

    db = state.db()
    holding = {j.worker_id: j.id for j in catalog.list_jobs(db, state=JobState.PROCESSING)
               if j.worker_id}
    rows = [{"id": w.id, "hostname": w.hostname, "pid": w.pid,
             "last_heartbeat": w.last_heartbeat, "job_id": holding.get(w.id)}
            for w in list_workers(db)]
    if as_json:
        emit_json(rows)
    else:
        fields = ("id", "hostname", "pid", "last_heartbeat", "job_id")
        emit_table(fields, [[r[f] for f in fields] for r in rows])
