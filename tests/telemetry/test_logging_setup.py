"""configure_logging: format choice, systemd detection, stdlib routing, reconfiguration."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from edgetwin.telemetry import configure_logging, reset_logging, under_systemd


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    reset_logging()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


@pytest.mark.parametrize("env_var", ["INVOCATION_ID", "JOURNAL_STREAM"])
@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_json_under_systemd_has_no_timestamp(env_var: str, fmt: str) -> None:
    """Under systemd every event is one JSON line with level and event, and no timestamp."""
    stream = io.StringIO()
    configure_logging(fmt=fmt, stream=stream, environ={env_var: "x"})
    structlog.get_logger().info("Source is up", source="skid1")

    (line,) = _lines(stream)
    assert line == {"event": "Source is up", "level": "info", "source": "skid1"}


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit environ, INVOCATION_ID in os.environ means systemd."""
    monkeypatch.setenv("INVOCATION_ID", "0123abcd")
    assert under_systemd()
    stream = io.StringIO()
    configure_logging(stream=stream)
    structlog.get_logger().warning("Something odd")

    (line,) = _lines(stream)
    assert "timestamp" not in line
    assert line["level"] == "warning"


def test_json_off_systemd_has_iso_timestamp() -> None:
    """Off systemd, JSON lines carry an ISO-8601 UTC timestamp."""
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, environ={})
    structlog.get_logger().info("Hello", n=1)

    (line,) = _lines(stream)
    assert line["event"] == "Hello"
    assert line["level"] == "info"
    assert line["n"] == 1
    stamp = datetime.fromisoformat(str(line["timestamp"]))
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0


def test_auto_on_a_pipe_is_json() -> None:
    """A stream that is not a terminal gets JSON even off systemd."""
    stream = io.StringIO()
    configure_logging(fmt="auto", stream=stream, environ={})
    structlog.get_logger().info("Piped")
    assert _lines(stream)[0]["event"] == "Piped"


def test_auto_on_a_terminal_is_coloured_console() -> None:
    """On a real TTY (a pty) auto picks the console renderer, with colours."""
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        configure_logging(fmt="auto", stream=tty, environ={})
        structlog.get_logger().info("On a terminal", source="skid1")
        tty.flush()
        output = os.read(master, 65536).decode()
    os.close(master)
    assert "On a terminal" in output
    assert "\x1b[" in output
    assert not output.lstrip().startswith("{")


def test_console_without_tty_has_no_colours() -> None:
    """Forcing console on a pipe renders plain text without escape codes."""
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream, environ={})
    structlog.get_logger().info("Plain text", source="skid1")
    text = stream.getvalue()
    assert "Plain text" in text
    assert "source=skid1" in text
    assert "\x1b[" not in text


def test_stdlib_records_go_through_as_json() -> None:
    """Library records (aiomqtt, asyncio) land in the same stream as JSON with their logger."""
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, environ={"INVOCATION_ID": "x"})
    logging.getLogger("aiomqtt.client").warning("Connection to %s lost", "192.0.2.10")
    logging.getLogger("aiomqtt.client").info("Chatty detail")  # below the library level

    (line,) = _lines(stream)
    assert line == {
        "event": "Connection to 192.0.2.10 lost",
        "level": "warning",
        "logger": "aiomqtt.client",
    }


def test_pymodbus_warnings_are_left_to_the_driver() -> None:
    """Pymodbus repeats a warning per failed attempt; the driver logs each outage once instead."""
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, environ={"INVOCATION_ID": "x"})
    logging.getLogger("pymodbus.logging").warning("Failed to connect")
    logging.getLogger("pymodbus.logging").error(  # what a PLC reboot gives, per request
        "No response received after 0 retries, continue with next request\n"
        ">>>>> send: 0x0 0x4 0x0 0x0 0x0 0x6 0x1 0x3 0x0 0x0 0x0 0x2")
    logging.getLogger("pymodbus.logging").error("Unexpected frame")

    (line,) = _lines(stream)
    assert line["event"] == "Unexpected frame"


def test_stdlib_exception_is_one_line() -> None:
    """A stdlib traceback stays inside one JSON line."""
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, environ={"INVOCATION_ID": "x"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")

    (line,) = _lines(stream)
    assert line["level"] == "error"
    assert "RuntimeError: boom" in str(line["exception"])


def test_library_level_can_be_lowered() -> None:
    """library_level="info" lets library info records through."""
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, library_level="info", environ={})
    logging.getLogger("aiomqtt").info("Connected")
    assert [line["event"] for line in _lines(stream)] == ["Connected"]


def test_level_filters_own_events() -> None:
    """Events below the configured level are dropped."""
    stream = io.StringIO()
    configure_logging(fmt="json", level="warning", stream=stream, environ={})
    log = structlog.get_logger()
    log.info("Dropped")
    log.debug("Dropped too")
    log.error("Kept")
    assert [line["event"] for line in _lines(stream)] == ["Kept"]


def test_configure_twice_replaces_the_stream() -> None:
    """A second call redirects everything, including a module-level logger and the stdlib."""
    module_level_logger = structlog.get_logger("edgetwin.example")
    first, second = io.StringIO(), io.StringIO()
    configure_logging(fmt="json", stream=first, environ={})
    module_level_logger.info("One")
    configure_logging(fmt="json", stream=second, environ={})
    module_level_logger.info("Two")
    logging.getLogger("pymodbus").error("Three")

    assert [line["event"] for line in _lines(first)] == ["One"]
    assert [line["event"] for line in _lines(second)] == ["Two", "Three"]
    own = [h for h in logging.getLogger().handlers if type(h).__name__ == "_EdgetwinHandler"]
    assert len(own) == 1


def test_reset_removes_the_handler() -> None:
    """reset_logging leaves no handler of ours on the root logger."""
    configure_logging(fmt="json", stream=io.StringIO(), environ={})
    reset_logging()
    own = [h for h in logging.getLogger().handlers if type(h).__name__ == "_EdgetwinHandler"]
    assert own == []


def test_defaults_write_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """With no stream, lines go to stdout."""
    configure_logging(fmt="json", environ={})
    structlog.get_logger().info("To stdout")
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[-1])["event"] == "To stdout"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "xml"}, "log format 'xml' is not one of auto, json, console"),
        ({"level": "loud"}, "log level 'loud' is not one of"),
        ({"library_level": "chatty"}, "log level 'chatty' is not one of"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, str], message: str) -> None:
    """Unknown formats and levels raise ValueError naming the value."""
    with pytest.raises(ValueError, match=message):
        configure_logging(stream=io.StringIO(), **kwargs)
