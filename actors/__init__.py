"""The worker pool: supervised pykka actors around the storage layer and the data path.

    pool.run_pool(config) → Supervisor ─┬─ Claimer  (job state, heartbeats, pause watch)
                                        ├─ Reaper   (lease-elected rescue, orphans, temp files)
                                        └─ Worker×N (job thread per job, backoff)

Modules: `messages` (every message), `ticker` (timers), `failures` (failure reporting),
`ledger` (what the process holds), `claimer`, `worker`, `reaper`, `supervisor`, `pool`,
`registry` (handlers), `signals` and `testing` (the test harness), `config` (settings).
"""
