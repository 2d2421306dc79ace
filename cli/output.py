"""How the command line prints results: aligned tables or JSON on stdout; CID strings."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from typing import Any, Iterable, Sequence

import click


def cid_str(cid: bytes | None) -> str | None:
    """A binary CIDv1 as its usual base32 string (`bafy…`, `baga…`); None stays None."""
    if not cid:
        return None
    return "b" + base64.b32encode(bytes(cid)).decode("ascii").lower().rstrip("=")


def human_size(n: int | float) -> str:
    """`1536` → `1.5 KiB`."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return cid_str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    """Print `value` as indented JSON (bytes become CID strings, datetimes ISO text)."""
    click.echo(json.dumps(_plain(value), indent=2))


def emit_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows under a header, columns aligned; None prints as `-`."""
    text_rows = [["-" if v is None else str(_plain(v)) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in text_rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
