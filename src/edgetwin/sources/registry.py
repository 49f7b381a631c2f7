"""What a source plugin provides: its config class and, once written, its driver."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgetwin.config.model import SourceConfig
from edgetwin.core.ports import Source


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One source type: ``type`` key in the config, its model, and the driver factory.

    A spec without a factory accepts configurations (so a file can be checked) but the
    daemon reports such sources as having no driver and does not start them.
    """

    type: str
    config: builtins.type[SourceConfig]
    factory: Callable[[Any], Source] | None = None
