"""Named leases with a TTL: how one reaper per deployment is elected.

State model: a `leases` row (name, holder, expires_at) exists once the lease was first
taken. A holder *holds* the lease while `now < expires_at`. Acquiring is one atomic upsert
that succeeds when

    - there is no row yet (insert), or
    - the row has expired (take over), or
    - the row's holder is the caller (renew: the expiry moves forward),

and otherwise changes nothing and reports False: a compare-and-set on the holder. Two
callers can therefore never both hold an unexpired lease: the database serialises the two
upserts on the row's unique key (PostgreSQL: the conflicting insert waits for the other and
re-checks the WHERE on the row it sees; SQLite: the write lock of the IMMEDIATE transaction).

Failure cases: a holder that stops renewing loses the lease at `expires_at`, and the next
caller takes it over. A holder whose renewal fails (database down) must assume it lost the
lease once its own `expires_at` has passed; clocks of different hosts must agree to well
within the TTL. Releasing deletes the row only if the caller still holds it.
"""
from __future__ import annotations

import datetime as dt

from storage.db import Database
from storage.models import Lease, utcnow
from storage.retry import retrying


@retrying
def acquire_lease(db: Database, name: str, holder: str, ttl_seconds: float, *,
                  now: dt.datetime | None = None) -> bool:
    """Acquire or renew lease `name` for `holder` until now + `ttl_seconds`.

    Returns True when `holder` holds the lease afterwards, False when someone else does.
    """
    now = now or utcnow()
    stamp = Lease.expires_at.db_value(now)
    expires = Lease.expires_at.db_value(now + dt.timedelta(seconds=ttl_seconds))
    # The two forms differ only in the placeholder. Both keep acquired_at on a renewal so
    # that it tells when the current holder's term began.
    if db.is_postgres:
        sql = """
            INSERT INTO leases (name, holder, expires_at, acquired_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (name) DO UPDATE SET
                holder = EXCLUDED.holder,
                expires_at = EXCLUDED.expires_at,
                acquired_at = CASE WHEN leases.holder = EXCLUDED.holder
                                   THEN leases.acquired_at ELSE EXCLUDED.acquired_at END
            WHERE leases.expires_at <= %s OR leases.holder = EXCLUDED.holder
            RETURNING holder"""
    else:
        # SQLite ≥ 3.35 has the same upsert, with RETURNING; `excluded` is the same pseudo-
        # table. A VALUES insert needs no "WHERE true" disambiguation (only INSERT … SELECT).
        sql = """
            INSERT INTO leases (name, holder, expires_at, acquired_at)
            VALUES (?, ?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET
                holder = excluded.holder,
                expires_at = excluded.expires_at,
                acquired_at = CASE WHEN leases.holder = excluded.holder
                                   THEN leases.acquired_at ELSE excluded.acquired_at END
            WHERE leases.expires_at <= ? OR leases.holder = excluded.holder
            RETURNING holder"""
    with db.atomic():
        row = db.pw.execute_sql(sql, (name, holder, expires, stamp, stamp)).fetchone()
    return row is not None and row[0] == holder


@retrying
def release_lease(db: Database, name: str, holder: str) -> bool:
    """Give the lease up if `holder` has it; True when a row was removed."""
    with db.atomic():
        n = Lease.delete().where((Lease.name == name) & (Lease.holder == holder)).execute()
    return n == 1


@retrying
def lease_holder(db: Database, name: str, *, now: dt.datetime | None = None) -> str | None:
    """Who holds lease `name` now, or None when nobody does (no row, or expired)."""
    now = now or utcnow()
    lease = Lease.get_or_none(Lease.name == name)
    if lease is None or lease.expires_at <= now:
        return None
    return lease.holder
