"""Durations and sizes as users write them ("250ms", "64MiB"), parsed once, here."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_FACTORS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
}


def parse_duration(raw: Any) -> Any:
    """Seconds from a number or a string such as ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``."""
    if isinstance(raw, bool):
        raise ValueError("expected a duration such as 1.5 or \"250ms\", got a boolean")
    if isinstance(raw, str):
        match = _DURATION.match(raw)
        if match is None:
            msg = f"{raw!r} is not a duration; write seconds (1.5) or \"250ms\", \"5s\", \"2m\""
            raise ValueError(msg)
        return float(match.group(1)) * _DURATION_FACTORS[match.group(2)]
    return raw


def parse_size(raw: Any) -> Any:
    """Bytes from an integer or a string such as ``"64MiB"`` or ``"1GB"``."""
    if isinstance(raw, bool):
        raise ValueError("expected a size such as 1048576 or \"64MiB\", got a boolean")
    if isinstance(raw, str):
        match = _SIZE.match(raw)
        if match is None:
            raise ValueError(f"{raw!r} is not a size; write bytes or \"64MiB\", \"1GB\"")
        return int(float(match.group(1)) * _SIZE_FACTORS[match.group(2)])
    return raw


Seconds = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(gt=0),
    WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                              {"type": "string", "pattern": _DURATION.pattern}]}),
]
"""A strictly positive duration in seconds."""

Bytes = Annotated[
    int,
    BeforeValidator(parse_size),
    Field(gt=0),
    WithJsonSchema({"anyOf": [{"type": "integer", "exclusiveMinimum": 0},
                              {"type": "string", "pattern": _SIZE.pattern}]}),
]
"""A strictly positive size in bytes."""
