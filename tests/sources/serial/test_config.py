"""Serial source configuration: the sample loads, bad configs are refused with exact text.

Each folder under ``cases/`` holds a ``config.yaml`` and the ``init.err`` it must produce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import edgetwin.sources
from edgetwin.config import InvalidConfig, load_config, parse_config
from edgetwin.sources.serial import PLUGIN, SerialConfig, SerialSource

SAMPLE = Path(edgetwin.sources.serial.__file__).with_name("sample.yaml")
CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())
HEAD = """\
gateway: {id: gw-test, group: test}
sync: {mqtt: {host: 127.0.0.1}}
sources:
  - name: scale1
    type: serial
    port: /dev/ttyUSB0
"""


def refused(body: str) -> list[tuple[str, str]]:
    """(key path, message) of every problem the config with this source body has."""
    with pytest.raises(InvalidConfig) as error:
        parse_config(HEAD + body, "plant.yaml", edgetwin.sources.source_configs())
    # The loader reports a model-level problem of a union member at "sources[0].serial"
    # (it keeps a trailing union tag); the document key is "sources[0]".
    return [(p.path.removesuffix(".serial"), p.message) for p in error.value.problems]


def test_sample_loads_and_builds_the_driver() -> None:
    """sample.yaml is a valid gateway config whose source builds a SerialSource."""
    config = load_config(SAMPLE, edgetwin.sources.source_configs())
    (source,) = config.sources
    assert isinstance(source, SerialConfig)
    assert (source.name, source.protocol, source.terminator) == ("scale1", "line", "\n")
    assert [p.id for p in source.points] == ["tank1/weight", "tank1/weight_status"]
    assert PLUGIN.factory is SerialSource
    driver = PLUGIN.factory(source)
    assert driver.name == "scale1"
    assert driver.resources() == frozenset({f"serial:{source.port}"})


async def test_write_is_refused() -> None:
    """A line device takes no writes; the outcome says who and why."""
    config = load_config(SAMPLE, edgetwin.sources.source_configs()).sources[0]
    assert isinstance(config, SerialConfig)
    source = SerialSource(config)
    outcome = await source.write("tank1/weight", 1.0)
    assert not outcome.ok
    assert outcome.reason == (
        "serial source 'scale1' (/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0)"
        ": cannot write 'tank1/weight': serial line devices are read-only"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_invalid_case_is_refused_with_its_init_err(case: Path) -> None:
    """The case's config is refused with exactly the problems in its init.err."""
    text = (case / "config.yaml").read_text()
    with pytest.raises(InvalidConfig) as error:
        parse_config(text, "config.yaml", edgetwin.sources.source_configs())
    assert str(error.value) + "\n" == (case / "init.err").read_text()


def test_bad_regex() -> None:
    """A pattern that does not compile is refused with the regex error."""
    assert refused("""\
    pattern: '(?P<w>[0-9+'
    points: [{id: tank1/weight, field: w}]
""") == [("sources[0].pattern",
          "pattern is not a valid regular expression: unterminated character set at position 6"
          " (got '(?P<w>[0-9+')")]


def test_field_not_in_pattern() -> None:
    """A point's field must be a named group of the pattern."""
    assert refused("""\
    pattern: '(?P<w>\\d+) (?P<s>\\w+)'
    points: [{id: tank1/weight, field: weight}]
""") == [("sources[0]", "point tank1/weight: field 'weight' is not a group of pattern "
          "(groups: s, w)")]


def test_layout_past_frame_length() -> None:
    """A layout field that does not fit into the frame is refused, naming it."""
    assert refused("""\
    protocol: fixed
    frame_length: 8
    layout: [{name: w, offset: 6, type: int32}]
    points: [{id: tank1/weight, field: w}]
""") == [("sources[0].layout", "layout field 'w' (int32 at offset 6) runs past frame_length 8")]


def test_overlapping_fields() -> None:
    """Two layout fields, or a field and the checksum, may not share bytes."""
    assert refused("""\
    protocol: fixed
    frame_length: 8
    sync: 0x02
    layout: [{name: w, offset: 1, type: int32}, {name: s, offset: 4, type: uint8}]
    points: [{id: tank1/weight, field: w}]
""") == [("sources[0].layout", "layout field 's' (uint8 at offset 4) overlaps layout field 'w' "
          "(int32 at offset 1) at byte 4")]
    assert refused("""\
    protocol: fixed
    frame_length: 6
    layout: [{name: w, offset: 2, type: int32}]
    checksum: {type: crc16_modbus}
    points: [{id: tank1/weight, field: w}]
""") == [("sources[0].checksum", "checksum crc16_modbus (at offset 4) overlaps layout field 'w' "
          "(int32 at offset 2) at byte 4")]


def test_unknown_checksum() -> None:
    """Only the listed checksums exist."""
    assert refused("""\
    protocol: fixed
    frame_length: 5
    layout: [{name: w, offset: 0, type: int32}]
    checksum: {type: crc32}
    points: [{id: tank1/weight, field: w}]
""") == [("sources[0].checksum.type",
          "Input should be 'sum8', 'xor8' or 'crc16_modbus' (got 'crc32')")]


@pytest.mark.parametrize(("body", "problem"), [
    ("    pattern: '(?P<w>.+)'\n    frame_length: 4\n    points: [{id: a/b, field: w}]\n",
     ("sources[0].frame_length", "only for protocol fixed (got 4)")),
    ("    points: [{id: a/b, field: w}]\n",
     ("sources[0].pattern", "protocol line needs a pattern with named groups")),
    ("    protocol: fixed\n    points: [{id: a/b, field: w}]\n",
     [("sources[0].frame_length", "protocol fixed needs frame_length"),
      ("sources[0].layout", "protocol fixed needs a layout with at least one field")]),
    ("    pattern: '(?P<w>.+)'\n    stopbits: 3\n    points: [{id: a/b, field: w}]\n",
     ("sources[0].stopbits", "stopbits must be 1, 1.5 or 2, not 3 (got 3)")),
    ("    pattern: '(?P<w>.+)'\n    encoding: klingon\n    points: [{id: a/b, field: w}]\n",
     ("sources[0].encoding",
      "unknown encoding 'klingon', e.g. ascii, latin-1, utf-8 (got 'klingon')")),
    ("    protocol: fixed\n    frame_length: 3\n    layout: [{name: w, offset: 0, type: int16}]\n"
     "    checksum: {type: sum8, start: 0, end: 3}\n    points: [{id: a/b, field: w}]\n",
     ("sources[0].checksum", "checksum range 0..3 covers the checksum itself")),
    ("    protocol: fixed\n    frame_length: 2\n    layout: [{name: w, offset: 0, type: int16}]\n"
     "    points: [{id: a/b, field: w, type: string}]\n",
     ("sources[0]", "point a/b: type string needs protocol line")),
    ("    pattern: '(?P<w>.+)'\n    points: [{id: a/b, field: w, writable: true}]\n",
     ("sources[0]", "point a/b: serial line devices are read-only; writable must be false")),
])
def test_inconsistent_settings_are_refused(
    body: str, problem: tuple[str, str] | list[tuple[str, str]]
) -> None:
    """Settings of the other protocol, missing ones and impossible values are refused."""
    assert refused(body) == (problem if isinstance(problem, list) else [problem])


def test_defaults() -> None:
    """8N1 at 9600 baud, LF-terminated ASCII lines of at most 512 bytes."""
    config: Any = SerialConfig.model_validate({
        "name": "s", "type": "serial", "port": "/dev/x", "pattern": "(?P<v>.*)",
        "points": [{"id": "a/b", "field": "v"}],
    })
    assert (config.baudrate, config.bytesize, config.parity, config.stopbits) == (
        9600, 8, "none", 1)
    assert (config.terminator, config.encoding, config.max_frame_bytes) == ("\n", "ascii", 512)
