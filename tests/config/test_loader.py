import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgetwin.config import InvalidConfig, load_config, parse_config
from edgetwin.sources import source_configs

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """\
gateway: {id: gw1, group: plant1, state_dir: /tmp/x}
sources:
  - name: skid1
    type: modbus_tcp
    host: 127.0.0.1
    points:
      - {id: pump1/temp, address: 100, type: float32}
sync:
  mqtt: {host: 127.0.0.1}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        parse_config(text, "gw.yaml", source_configs())
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("name", ["demo.yaml", "example.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    """The demo and the full example in config/ load without problems."""
    config = load_config(ROOT / "config" / name, source_configs())
    assert config.sources


def test_minimal_config_gets_defaults() -> None:
    """Omitted sections take their documented defaults."""
    config = parse_config(MINIMAL, "gw.yaml", source_configs())
    assert config.buffer.max_bytes == 256 * 2**20
    assert config.commands.enabled is False
    assert config.sync.mqtt.port == 1883


def test_every_problem_is_reported_with_line_column_and_key_path() -> None:
    """Unknown keys, wrong types and out-of-range values are all listed at once, in file order."""
    text = MINIMAL.replace("    points", "    port: 70000\n    points")
    text = text.replace("type: float32}", "type: float32, adress: 3}")
    text = text.replace("mqtt: {host: 127.0.0.1}", "mqtt: {host: 127.0.0.1, keepalive: soon}")
    assert problems(text) == [
        "gw.yaml:6:11: sources[0].port: Input should be less than or equal to 65535 (got 70000)",
        "gw.yaml:8:55: sources[0].points[0].adress: unknown key",
        "gw.yaml:10:38: sync.mqtt.keepalive: Input should be a valid integer, unable to parse"
        " string as an integer (got 'soon')",
    ]


def test_broken_yaml_names_line_and_column() -> None:
    """A YAML syntax error is one problem at the place the parser stopped."""
    (problem,) = problems("gateway:\n  id: [gw1\n")
    assert problem.startswith("gw.yaml:3:1: (yaml): not valid YAML:")


def test_duplicate_keys_and_duplicate_point_ids_are_refused() -> None:
    """YAML duplicate keys and two points with one id are errors, not last-one-wins."""
    text = MINIMAL.replace(
        "      - {id: pump1/temp, address: 100, type: float32}\n",
        "      - {id: pump1/temp, address: 100, type: float32}\n"
        "      - {id: pump1/temp, address: 102, type: float32}\n",
    )
    assert problems(text) == [
        "gw.yaml:8:14: sources[0].points[1].id: duplicate point id 'pump1/temp'"
        " (first at sources[0].points[0])",
    ]
    assert problems(MINIMAL + "sync: {mqtt: {host: b}}\n")[0] == (
        "gw.yaml:10:1: sync: duplicate key (first at line 8)"
    )


def test_inline_password_is_refused() -> None:
    """Secrets come from files; an inline password is an error that says so."""
    text = MINIMAL.replace("mqtt: {host: 127.0.0.1}", "mqtt: {host: 127.0.0.1, password: hunter2}")
    (problem,) = problems(text)
    assert "inline secrets are not accepted" in problem
    assert "hunter2" not in problem


def test_unknown_source_type_points_at_the_type_key() -> None:
    """A type no plugin provides is reported on the type key with the known types."""
    (problem,) = problems(MINIMAL.replace("type: modbus_tcp", "type: profinet"))
    assert problem.startswith("gw.yaml:4:11: sources[0].type:")
    assert "'modbus_tcp'" in problem


def test_references_across_sections_are_checked() -> None:
    """Command rules and vibration entries must name configured (writable, waveform) points."""
    text = MINIMAL + (
        "vibration:\n  - {point: pump1/temp}\n"
        "commands:\n  rules:\n    - {point: pump1/temp, max: 5}\n    - {point: pump9/x}\n"
    )
    assert [p.split(": ", 1)[1] for p in problems(text)] == [
        "vibration[0].point: point 'pump1/temp' is not a waveform",
        "commands.rules[0].point: point 'pump1/temp' is not writable;"
        " set writable: true on the point first",
        "commands.rules[1].point: unknown point 'pump9/x'",
    ]


def test_sizes_and_durations_accept_units() -> None:
    """'64MiB' and '250ms' are parsed once, in config."""
    text = MINIMAL + "buffer: {max_bytes: 64MiB}\n"
    text = text.replace("type: modbus_tcp", "type: modbus_tcp\n    poll_interval: 250ms")
    config = parse_config(text, "gw.yaml", source_configs())
    assert config.buffer.max_bytes == 64 * 2**20
    assert config.sources[0].poll_interval == 0.25  # type: ignore[attr-defined]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgetwin", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_check_config_exit_codes(tmp_path: Path) -> None:
    """check-config exits 0 for a valid file, 2 with FILE:LINE:COL lines for a broken one."""
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL)
    assert run_cli("check-config", str(good)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("address: 100", "address: -1"))
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:7:35: sources[0].points[0].address: Input should be greater than or equal" \
        " to 0 (got -1)" in result.stderr


def test_run_with_invalid_config_exits_78_and_starts_nothing(tmp_path: Path) -> None:
    """`run` refuses a broken file with EX_CONFIG (78), which the unit does not restart."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("state_dir: /tmp/x", f"state_dir: {tmp_path / 's'}")
                   .replace("address: 100", "address: x"))
    result = run_cli("run", "-c", str(bad))
    assert result.returncode == 78
    assert "sources[0].points[0].address" in result.stderr
    assert not (tmp_path / "s").exists()


def test_schema_is_json_schema_of_every_section() -> None:
    """`edgetwin schema` prints a JSON Schema naming every top-level section."""
    result = run_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert set(schema["properties"]) == {
        "gateway", "sources", "vibration", "anomaly", "sync", "buffer", "commands", "health",
    }
    assert schema["additionalProperties"] is False


def test_control_character_is_a_problem_with_its_position() -> None:
    """A character YAML forbids (found by fuzzing) is reported where it stands."""
    (problem,) = problems("gateway:\n  id: g\x08w\n")
    assert problem == "gw.yaml:2:8: (yaml): not valid YAML: character U+0008 is not allowed"


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    """A file that is not UTF-8 (or not there) is one problem, not a traceback."""
    binary = tmp_path / "gw.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidConfig, match="cannot read"):
        load_config(binary, source_configs())
    with pytest.raises(InvalidConfig, match="cannot read"):
        load_config(tmp_path / "missing.yaml", source_configs())
