"""What a judge decides about one expectation: passed or not, why, and the figures behind it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """One expectation, judged.

    ``figures`` are plain JSON values (numbers, strings, short lists) the report shows in
    its table; ``summary`` is one sentence an engineer reads ("0 of 1,204 samples lost").
    """

    name: str
    kind: str
    passed: bool
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as written to ``results.json``."""
        return asdict(self)
