"""Serial line-protocol source configuration; the driver comes with the southbound issue."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgetwin.config.model import PointConfig, SourceConfig


class SerialPoint(PointConfig):
    """One field of a parsed record."""

    field: str = Field(min_length=1)
    type: Literal["float32", "float64", "int32", "int64", "bool", "string"] = "float64"


class SerialConfig(SourceConfig):
    """A device that sends newline-terminated text records."""

    type: Literal["serial"]
    port: str = Field(min_length=1)
    baudrate: int = Field(default=9600, ge=300, le=921600)
    protocol: Literal["line"] = "line"
    pattern: str
    points: tuple[SerialPoint, ...] = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"pattern is not a valid regular expression: {err}") from None
        if not compiled.groupindex:
            raise ValueError("pattern needs named groups, e.g. (?P<weight>...)")
        return pattern

    @model_validator(mode="after")
    def _fields_exist(self) -> SerialConfig:
        groups = set(re.compile(self.pattern).groupindex)
        for point in self.points:
            if point.field not in groups:
                raise ValueError(
                    f"point {point.id}: field {point.field!r} is not a group of pattern"
                    f" (groups: {', '.join(sorted(groups))})"
                )
        return self

    def resources(self) -> frozenset[str]:
        """The serial port, which one source at a time may own."""
        return frozenset({f"serial:{self.port}"})
