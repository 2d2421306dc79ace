"""click parameter types for sizes and durations: a bad value is one usage line, exit 2."""
from __future__ import annotations

from typing import Any

import click

from actors.config import parse_duration, parse_size


class SizeType(click.ParamType):
    """A size in bytes: `4096`, `1k`, `1MiB`, `31.5GiB`."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DurationType(click.ParamType):
    """A duration in seconds: `500ms`, `5s`, `2m`, `1h`, `30`."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()
DURATION = DurationType()
