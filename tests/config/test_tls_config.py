"""Validation of ``sync.mqtt.tls``: what is refused at load, what is left to connect time."""

from pathlib import Path

import pytest

from edgetwin.config import parse_config
from edgetwin.config.model import GatewayConfig
from edgetwin.sources import source_configs
from tests.config.test_loader import MINIMAL, problems


def with_tls(tls: str) -> str:
    """The minimal config with ``sync.mqtt.tls: <tls>`` (the ``tls`` key on line 11)."""
    return MINIMAL.replace("mqtt: {host: 127.0.0.1}\n",
                           f"mqtt:\n    host: 127.0.0.1\n    tls: {tls}\n")


def load(tls: str) -> GatewayConfig:
    return parse_config(with_tls(tls), "gw.yaml", source_configs())


def test_ca_cert_and_key_load_as_paths() -> None:
    """The three files of mutual TLS load as paths, untouched."""
    tls = load("{ca: /etc/et/ca.pem, cert: /etc/et/gw.pem, key: /etc/et/gw.key}").sync.mqtt.tls
    assert tls is not None
    assert (tls.ca, tls.cert, tls.key) == (
        Path("/etc/et/ca.pem"), Path("/etc/et/gw.pem"), Path("/etc/et/gw.key"))


def test_empty_tls_section_means_tls_with_the_system_trust_store() -> None:
    """``tls: {}`` turns TLS on with no files of its own; without the key TLS is off."""
    config = load("{}")
    assert config.sync.mqtt.tls is not None and config.sync.mqtt.tls.ca is None
    assert parse_config(MINIMAL, "gw.yaml", source_configs()).sync.mqtt.tls is None


@pytest.mark.parametrize(("given", "missing"), [("cert", "key"), ("key", "cert")])
def test_cert_and_key_come_together(given: str, missing: str) -> None:
    """A client certificate without its key, or a key without its certificate, is refused."""
    assert problems(with_tls(f"{{ca: /ca.pem, {given}: /gw.{given}}}")) == [
        f"gw.yaml:11:10: sync.mqtt.tls: {given} is set but {missing} is not: mutual TLS needs"
        " both the client certificate (cert) and its private key (key); give both, or neither",
    ]


def test_an_empty_path_is_refused_not_read_as_the_working_directory() -> None:
    """``ca: ""`` is a problem, not Path("."), for each file key."""
    assert problems(with_tls('{ca: "", cert: " ", key: /gw.key}')) == [
        "gw.yaml:11:15: sync.mqtt.tls.ca: empty path; omit the setting instead (got '')",
        "gw.yaml:11:25: sync.mqtt.tls.cert: empty path; omit the setting instead (got ' ')",
    ]


def test_there_is_no_option_to_skip_verification() -> None:
    """Keys that would weaken verification are unknown keys, like any other."""
    assert problems(with_tls("{ca: /ca.pem, insecure: true, cert_reqs: none}")) == [
        "gw.yaml:11:24: sync.mqtt.tls.insecure: unknown key",
        "gw.yaml:11:40: sync.mqtt.tls.cert_reqs: unknown key",
    ]


def test_files_that_do_not_exist_yet_are_not_a_config_error(tmp_path: Path) -> None:
    """Certificates may be provisioned after the config; the session reports them at connect."""
    absent = tmp_path / "not-yet"
    config = load(f"{{ca: {absent}/ca.pem, cert: {absent}/gw.pem, key: {absent}/gw.key}}")
    assert config.sync.mqtt.tls is not None and config.sync.mqtt.tls.ca == absent / "ca.pem"
