"""Modbus source configuration: the sample loads, bad configs are refused with exact text.

Each folder under ``cases/`` holds a ``config.yaml`` and the ``init.err`` it must produce
(every problem, ``FILE:LINE:COL: key.path: message``), named after the rule it pins.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import edgetwin.sources
from edgetwin.config import InvalidConfig, load_config, parse_config
from edgetwin.sources.modbus import ModbusSource, ModbusTcpConfig
from edgetwin.sources.modbus.config import ByteOrder, DataType

SAMPLE = Path(edgetwin.sources.modbus.__file__).with_name("sample.yaml")
CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())


def test_sample_loads_and_plans() -> None:
    """sample.yaml is a valid gateway config whose source builds a driver."""
    config = load_config(SAMPLE, edgetwin.sources.source_configs())
    (source,) = config.sources
    assert isinstance(source, ModbusTcpConfig)
    assert (source.name, source.port, source.unit_id) == ("skid1", 5020, 1)
    flow = next(p for p in source.points if p.id == "pump1/flow")
    assert (flow.type, flow.byte_order) == (DataType.FLOAT32, ByteOrder.CDAB)
    assert flow.poll_interval == 2.0
    driver = ModbusSource(source)
    assert [g.interval_s for g in driver.groups] == [0.5, 2.0]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_invalid_case_is_refused_with_its_init_err(case: Path) -> None:
    """The case's config is refused with exactly the problems in its init.err."""
    text = (case / "config.yaml").read_text()
    with pytest.raises(InvalidConfig) as refused:
        parse_config(text, "config.yaml", edgetwin.sources.source_configs())
    assert str(refused.value) + "\n" == (case / "init.err").read_text()


def test_coil_with_float_type_message() -> None:
    """The message for a float coil names the table, the rule and the wrong type."""
    text = (Path(__file__).parent / "cases" / "coil_float32" / "config.yaml").read_text()
    with pytest.raises(InvalidConfig) as refused:
        parse_config(text, "plant.yaml", edgetwin.sources.source_configs())
    (problem,) = refused.value.problems
    assert (problem.path, problem.message) == (
        "sources[0].points[0]", "a coil holds bits: type must be bool, not float32"
    )


def test_address_overflow_message() -> None:
    """A value running past register 65535 is refused, naming address and width."""
    text = (Path(__file__).parent / "cases" / "address_overflow" / "config.yaml").read_text()
    with pytest.raises(InvalidConfig) as refused:
        parse_config(text, "plant.yaml", edgetwin.sources.source_configs())
    (problem,) = refused.value.problems
    assert problem.message == "address 65535 + 2 registers runs past 65535"


def test_max_read_gap_defaults_to_16() -> None:
    """Neighbouring points up to 16 unused registers apart share a request by default."""
    config = ModbusTcpConfig.model_validate({
        "name": "s", "type": "modbus_tcp", "host": "h", "points": [{"id": "a/b", "address": 0}],
    })
    assert config.max_read_gap == 16
