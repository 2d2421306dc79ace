"""Which handler runs which job type.

The default handlers are the data path's (`dataprep.handlers.HANDLERS`), imported only
when first needed so that the actors can be built and tested without it. Tests pass their
own mapping to `run_pool(handlers=...)` or register fakes here.
"""
from __future__ import annotations

import threading
from typing import Mapping

from dataprep.context import Handler

_lock = threading.Lock()
_registered: dict[str, Handler] = {}


def register(job_type: str, handler: Handler) -> None:
    """Use `handler` for `job_type` in this process (overrides the default)."""
    with _lock:
        _registered[job_type] = handler


def unregister_all() -> None:
    """Forget every handler registered with `register` (tests)."""
    with _lock:
        _registered.clear()


def default_handlers() -> dict[str, Handler]:
    """The data path's handlers, overridden by any registered here."""
    from dataprep.handlers import HANDLERS  # lazily: dataprep is heavy, and tests may not need it

    with _lock:
        return {**HANDLERS, **_registered}


def resolve(handlers: Mapping[str, Handler] | None = None) -> dict[str, Handler]:
    """The handler table a pool uses: `handlers` if given, else the defaults."""
    if handlers is not None:
        return dict(handlers)
    with _lock:
        registered = dict(_registered)
    try:
        return default_handlers()
    except ImportError:
        if registered:
            return registered
        raise
