"""Structured logging setup: one stream, JSON under systemd, readable text on a terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

import structlog
from structlog.typing import Processor

_FORMATS: frozenset[str] = frozenset({"auto", "json", "console"})

# Either variable means journald is collecting our stdout; it stamps every line itself.
_SYSTEMD_ENV = ("INVOCATION_ID", "JOURNAL_STREAM")

# The root level before the first configure_logging(), restored by reset_logging().
_saved_root_level: int | None = None


class _EdgetwinHandler(logging.StreamHandler[TextIO]):
    """Marks the one root handler we own, so a second configure call can replace it."""

    def filter(self, record: logging.LogRecord) -> bool:
        # pymodbus logs every unanswered request at ERROR with a hex dump (a PLC reboot:
        # one per request); the Modbus driver reports that outage once, with its source.
        if record.name.startswith("pymodbus") and str(record.msg).startswith(
                "No response received"):
            return False
        return super().filter(record)


def under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs as a systemd service (journald collects stdout).

    Args:
        environ: The environment to inspect; ``os.environ`` when omitted.
    """
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in _SYSTEMD_ENV)


def _lead_with_level_and_event(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Put timestamp, level and event first so a JSON line reads well in journalctl."""
    lead = {
        key: event_dict.pop(key) for key in ("timestamp", "level", "event") if key in event_dict
    }
    return {**lead, **event_dict}


def _level_number(name: str) -> int:
    levels = logging.getLevelNamesMapping()
    number = levels.get(name.upper())
    if number is None:
        known = ", ".join(sorted(n.lower() for n in levels if n != "NOTSET"))
        msg = f"log level {name!r} is not one of {known}"
        raise ValueError(msg)
    return number


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or file-like objects without a terminal
        return False


def configure_logging(
    fmt: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    library_level: str = "warning",
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send structlog events and stdlib ``logging`` records to one stream in one format.

    Every line carries ``level`` and ``event``. Under systemd (``INVOCATION_ID`` or
    ``JOURNAL_STREAM`` set) lines carry no timestamp because journald adds its own;
    elsewhere they carry an ISO-8601 UTC ``timestamp``. Libraries that log through the
    stdlib (pymodbus, aiomqtt, asyncio) are routed into the same output, filtered at
    ``library_level`` so their chatter does not drown ours; their lines carry ``logger``.

    Safe to call again (config reload, tests): the previous configuration is replaced,
    including the stream. Loggers are not cached on first use for the same reason, so a
    module-level ``structlog.get_logger()`` follows the latest call.

    Args:
        fmt: ``"auto"``, ``"json"`` or ``"console"``. ``auto`` means JSON under systemd or
            when the stream is not a TTY, the console renderer otherwise.
        level: Minimum level for edgetwin's own events (``debug`` .. ``critical``).
        stream: Where lines go; ``sys.stdout`` (as it is at call time) when omitted.
        library_level: Minimum level for records from stdlib loggers outside edgetwin.
        environ: Environment used to detect systemd; ``os.environ`` when omitted.

    Raises:
        ValueError: ``fmt`` or one of the levels is not recognised.
    """
    global _saved_root_level  # the root logger is process-global anyway

    if fmt not in _FORMATS:
        msg = f"log format {fmt!r} is not one of auto, json, console"
        raise ValueError(msg)
    min_level = _level_number(level)
    lib_level = _level_number(library_level)
    out = sys.stdout if stream is None else stream
    systemd = under_systemd(environ)
    tty = _is_tty(out)
    as_json = fmt == "json" or (fmt == "auto" and (systemd or not tty))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if not systemd:
        shared.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    shared.append(structlog.processors.StackInfoRenderer())

    renderer: Processor
    if as_json:
        # Tracebacks become one string field so an event stays one line for journald.
        shared.append(structlog.processors.format_exc_info)
        shared.append(_lead_with_level_and_event)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=tty)

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _EdgetwinHandler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    if _saved_root_level is None:
        _saved_root_level = root.level
    _remove_own_handlers(root)
    root.addHandler(handler)
    root.setLevel(lib_level)
    # Anything in edgetwin that still uses the stdlib follows our level, not the libraries'.
    logging.getLogger("edgetwin").setLevel(min_level)
    for library, quiet_level in _QUIET_LIBRARIES.items():
        logging.getLogger(library).setLevel(max(quiet_level, lib_level))


# Libraries whose warnings repeat what our wrapper already reports once, with context:
# pymodbus warns on every failed connect and unanswered request ("Failed to connect",
# "Repeating....") while the Modbus driver logs each outage once through SourceHealth.
_QUIET_LIBRARIES: dict[str, int] = {"pymodbus": logging.ERROR}


def _remove_own_handlers(root: logging.Logger) -> None:
    for old in [h for h in root.handlers if isinstance(h, _EdgetwinHandler)]:
        root.removeHandler(old)
        # Flush only: the stream belongs to the caller (usually sys.stdout), who may
        # already have closed it.
        with contextlib.suppress(ValueError, OSError):
            old.flush()


def reset_logging() -> None:
    """Undo ``configure_logging``: structlog defaults, our root handler removed.

    Meant for tests that configure logging into a buffer and must not leave later tests
    writing into it.
    """
    global _saved_root_level

    structlog.reset_defaults()
    root = logging.getLogger()
    _remove_own_handlers(root)
    if _saved_root_level is not None:
        root.setLevel(_saved_root_level)
        _saved_root_level = None
    logging.getLogger("edgetwin").setLevel(logging.NOTSET)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)
