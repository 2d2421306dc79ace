"""One process contending for a lease: `python -m tests.storage.lease_contender URL NAME N`.

Tries to acquire lease NAME N times as its own holder, every try at the same instant (so
the lease never expires during the run), and prints how many tries succeeded.
"""
from __future__ import annotations

import datetime as dt
import os
import sys

from storage.db import connect
from storage.lease import acquire_lease

FIXED_NOW = dt.datetime(2030, 1, 1)

if __name__ == "__main__":
    url, name, tries = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = connect(url)
    holder = f"pid-{os.getpid()}"
    won = sum(acquire_lease(db, name, holder, 60, now=FIXED_NOW) for _ in range(tries))
    print(holder, won)
    db.close()
