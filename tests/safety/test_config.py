"""The commands section at config load: rules, interlocks, and where errors point."""

from __future__ import annotations

import pytest

from edgetwin.config import InvalidConfig, parse_config
from edgetwin.config.model import CommandsConfig, ValueType
from edgetwin.sources import source_configs

BASE = """\
gateway: {id: gw1, group: plant1, state_dir: /tmp/x}
sources:
  - name: skid1
    type: modbus_tcp
    host: 127.0.0.1
    points:
      - {id: pump1/motor_temp, address: 100, type: float32}
      - {id: pump1/run, address: 0, kind: coil, type: bool, writable: true}
      - {id: pump1/speed_setpoint, address: 200, type: uint16, writable: true}
      - {id: pump1/vib_de, address: 1000, type: int16, count: 64,
         waveform: {sample_rate: 12000}}
sync:
  mqtt: {host: 127.0.0.1}
commands:
  enabled: true
  keys: {ops: /etc/edgetwin/keys/ops.pub}
  rules:
"""


def problems(rules: str) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        parse_config(BASE + rules, "gw.yaml", source_configs())
    return [str(p) for p in info.value.problems]


def test_a_valid_commands_section_loads() -> None:
    """Types, ranges, allowed values, interlocks and the new settings all load."""
    config = parse_config(BASE + """\
    - point: pump1/speed_setpoint
      type: int
      min: 0
      max: 1800
      max_step: 300
      interlock: "pump1/run == true and pump1/motor_temp < 90"
    - {point: pump1/run, type: bool, allowed: [true, false], confirm: select_before_operate}
  clock_skew: 2s
  select_timeout: 5
  audit: {max_bytes: 1MiB, keep: 3}
""", "gw.yaml", source_configs())
    commands = config.commands
    assert commands.rules[0].type is ValueType.INT
    assert commands.rules[1].allowed == (True, False)
    assert (commands.clock_skew, commands.select_timeout) == (2.0, 5.0)
    assert (commands.audit.max_bytes, commands.audit.keep) == (2**20, 3)


@pytest.mark.parametrize(("interlock", "message"), [
    ("tank9/level > 10", "unknown point 'tank9/level'"),
    ("pump1/motor_temp.real > 1", "unknown point 'pump1/motor_temp.real'"),
    ("(pump1/motor_temp).real > 1", "attribute access (x.y) is not allowed in an interlock"),
    ("open('x') == 1", "only abs, min and max may be called, not open"),
    ("pump1/motor_temp < 90 and", "not a valid expression: invalid syntax"),
    ("pump1/vib_de > 1", "point 'pump1/vib_de' is a waveform; an interlock reads single values"),
])
def test_interlock_problems_point_at_the_interlock(interlock: str, message: str) -> None:
    """An unknown point or construct is a config error at FILE:LINE:COL of the interlock."""
    (problem,) = problems(f"    - point: pump1/run\n      interlock: \"{interlock}\"\n")
    assert problem.startswith("gw.yaml:19:18: commands.rules[0].interlock: ")
    assert message in problem


def test_every_interlock_problem_is_reported() -> None:
    """Two bad rules, two problems, in file order, with the other semantic checks."""
    found = problems("    - {point: pump1/run, interlock: \"x > 1\"}\n"
                     "    - {point: pump1/motor_temp, interlock: \"pump1/run[0]\"}\n")
    assert [p.split(": ", 2)[1:] for p in found] == [
        ["commands.rules[0].interlock", "unknown name 'x'; points are written asset/point "
         "(e.g. tank1/level), booleans as true or false (in 'x > 1')"],
        ["commands.rules[1].point", "point 'pump1/motor_temp' is not writable; set writable: "
         "true on the point first"],
        ["commands.rules[1].interlock", "subscripts (x[i]) is not allowed in an interlock "
         "(in 'pump1/run[0]')"],
    ]


@pytest.mark.parametrize(("rule", "message"), [
    ("{point: pump1/run, type: bool, max: 1}", "min, max and max_step apply to numbers"),
    ("{point: pump1/run, min: .nan}", "min must be a finite number"),
    ("{point: pump1/run, max_step: .inf}", "max_step must be a finite number"),
    ("{point: pump1/run, type: int, allowed: [1, 2.5]}", "allowed value 2.5 is not of type int"),
    ("{point: pump1/run, type: string, allowed: [1]}", "allowed value 1 is not of type string"),
    ("{point: pump1/run, type: bool, allowed: [1]}", "allowed value 1 is not of type bool"),
    ("{point: pump1/run, allowed: []}", "at least 1 item"),
    ("{point: pump1/run, type: integer}", "Input should be 'bool', 'int', 'float' or 'string'"),
    ("{point: pump1/run, interlock: ''}", "at least 1 character"),
])
def test_rule_problems(rule: str, message: str) -> None:
    """Rules that cannot mean what they say are refused, never repaired."""
    found = problems(f"    - {rule}\n")
    assert any(message in p for p in found), found


def test_defaults_are_the_documented_ones() -> None:
    """Writes off, signatures required, 30 s max age, 5 s skew, 10 s selects."""
    commands = CommandsConfig()
    assert (commands.enabled, commands.require_signature) == (False, True)
    assert (commands.max_age, commands.clock_skew, commands.select_timeout) == (30, 5, 10)
    assert (commands.write_timeout, commands.max_remembered_ids) == (10, 100_000)
    assert commands.rate_limit.per_point_per_minute == 6
    assert (commands.audit.max_bytes, commands.audit.keep) == (8 * 2**20, 8)
