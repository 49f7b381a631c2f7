"""OPC UA source configuration: the sample loads, bad configs are refused with exact text."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgetwin.sources
import edgetwin.sources.opcua
from edgetwin.config import InvalidConfig, load_config, parse_config
from edgetwin.sources.opcua import PLUGIN, OpcuaConfig, OpcuaSource
from edgetwin.sources.opcua.config import DeadbandType, PointMode

SAMPLE = Path(edgetwin.sources.opcua.__file__).with_name("sample.yaml")

HEAD = """\
gateway: {id: gw, group: g}
sync: {mqtt: {host: 127.0.0.1}}
sources:
  - name: line-opcua
    type: opcua
    endpoint: opc.tcp://192.0.2.20:4840
"""


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidConfig) as refused:
        parse_config(HEAD + text, "plant.yaml", edgetwin.sources.source_configs())
    return [(p.path, p.message) for p in refused.value.problems]


def test_plugin_is_registered_with_its_driver() -> None:
    """The registry entry builds an OpcuaSource from an OpcuaConfig."""
    assert PLUGIN in edgetwin.sources.BUILTIN_SOURCES
    assert (PLUGIN.type, PLUGIN.config, PLUGIN.factory) == ("opcua", OpcuaConfig, OpcuaSource)


def test_sample_loads_and_builds_a_driver() -> None:
    """sample.yaml is a valid gateway config whose source builds a driver."""
    config = load_config(SAMPLE, edgetwin.sources.source_configs())
    (source,) = config.sources
    assert isinstance(source, OpcuaConfig)
    assert (source.name, source.endpoint) == ("line-opcua", "opc.tcp://127.0.0.1:4840/plcsim")
    temp, _, counter, setpoint, _ = source.points
    assert (temp.deadband_type, temp.deadband, temp.sampling_interval) == (
        DeadbandType.ABSOLUTE, 0.2, 0.1)
    assert (counter.mode, counter.poll_interval) == (PointMode.POLL, 2.0)
    assert setpoint.writable
    driver = OpcuaSource(source)
    assert driver.name == "line-opcua"
    assert driver.where == "opcua source 'line-opcua' (opc.tcp://127.0.0.1:4840/plcsim)"


def test_secured_policy_without_certificate_is_refused() -> None:
    """A secured policy needs certificate and private_key; the message says so."""
    text = """\
    security: {policy: Basic256Sha256, mode: SignAndEncrypt}
    points: [{id: oven1/temp, node: "ns=2;s=Oven1.Temp"}]
"""
    assert problems(text) == [
        ("sources[0].security", "a secured endpoint needs certificate and private_key")]


def test_policy_without_mode_is_refused() -> None:
    """Policy and mode go together."""
    text = """\
    security: {policy: Basic256Sha256, certificate: c.der, private_key: k.pem}
    points: [{id: oven1/temp, node: "ns=2;s=Oven1.Temp"}]
"""
    assert problems(text) == [
        ("sources[0].security", "policy and mode must both be None, or both be set")]


@pytest.mark.parametrize(("point", "message"), [
    ('{id: a/b, node: "ns=2;s=X", mode: poll, deadband: 1, deadband_type: absolute}',
     "deadband_type, sampling_interval and queue_size apply to mode subscribe only"),
    ('{id: a/b, node: "ns=2;s=X", deadband_type: absolute}',
     "deadband_type absolute needs a deadband above 0"),
    ('{id: a/b, node: "ns=2;s=X", deadband_type: percent}',
     "deadband_percent goes with deadband_type percent, and only with it"),
    ('{id: a/b, node: "ns=2;s=X", deadband_percent: 5}',
     "deadband_percent goes with deadband_type percent, and only with it"),
])
def test_inconsistent_point_options_are_refused(point: str, message: str) -> None:
    """Server-side filter options that cannot apply are refused, not ignored."""
    assert problems(f"    points: [{point}]\n") == [("sources[0].points[0]", message)]


def test_password_file_needs_username() -> None:
    """A password without a user name is a mistake."""
    text = """\
    password_file: /etc/edgetwin/opcua.password
    points: [{id: oven1/temp, node: "ns=2;s=Oven1.Temp"}]
"""
    ((path, message),) = problems(text)
    # the loader's naming of a source-level path is being changed elsewhere ("sources[0]",
    # formerly "sources[0].opcua"); the message is this plugin's
    assert path.startswith("sources[0]")
    assert message == "password_file needs a username"


def test_certificates_without_a_secured_policy_are_refused() -> None:
    """A certificate with policy None would be silently unused: refused."""
    text = """\
    security: {certificate: c.der, private_key: k.pem}
    points: [{id: oven1/temp, node: "ns=2;s=Oven1.Temp"}]
"""
    assert problems(text) == [
        ("sources[0].security", "certificates apply to a secured endpoint only (policy is None)")]


def test_secured_policy_with_files_loads() -> None:
    """Policy, mode, certificate, key, pin and application URI make a valid secured source."""
    text = """\
    security: {policy: Aes128_Sha256_RsaOaep, mode: Sign, certificate: c.der,
               private_key: k.pem, server_certificate: s.der, application_uri: "urn:gw"}
    points: [{id: oven1/temp, node: "ns=2;s=Oven1.Temp"}]
"""
    config = parse_config(HEAD + text, "plant.yaml", edgetwin.sources.source_configs())
    (source,) = config.sources
    assert isinstance(source, OpcuaConfig)
    assert source.security.server_certificate == Path("s.der")
    assert source.security.application_uri == "urn:gw"
