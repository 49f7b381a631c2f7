"""The MQTT session over TLS against a real Mosquitto: server auth, mutual TLS, refusals."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edgetwin.config.model import MqttConfig, SyncConfig
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.sync import MqttSession
from tests.helpers.mqtt import Recorder
from tests.helpers.procs import LOOPBACK, Broker
from tests.helpers.tls import PkiPaths
from tests.helpers.waiting import until
from tests.sync.test_session import Rig, reported
from tests.telemetry.conftest import captured_logs

pytestmark = pytest.mark.broker

MakeRig = Callable[..., Rig]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    """Rigs (see test_session) whose session has the given ``sync.mqtt`` keys.

    The keys go through the config model as YAML would, so ``tls: {ca: ...}`` becomes a
    validated ``TlsConfig``. Each rig has its own state directory, so several can run at once.
    """
    rigs: list[Rig] = []

    def make(broker: Broker, **mqtt: Any) -> Rig:
        home = tmp_path / f"rig{len(rigs)}"
        home.mkdir()
        rig = Rig(home, broker.port)
        keys = {"host": LOOPBACK, "port": broker.port, "keepalive": 5, **mqtt}
        config = SyncConfig(mqtt=MqttConfig.model_validate(keys))
        rig.session = MqttSession(config, "gw1", rig.outbox, rig.twin, rig.telemetry)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.close()


async def deliver(rig: Rig, rec: Recorder, values: range) -> None:
    """Run the session, feed ``values``, see them arrive in order, stop it cleanly."""
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=2.0))
    for value in values:
        await rig.feed(value)
    await rec.await_for(reported(values[-1]))
    assert rig.session.connected
    assert [m.json()["state"]["p0"]["v"] for m in rec.on("/pump1/reported")] == list(values)
    rig.stop.set()
    await asyncio.wait_for(task, 5)
    assert rig.outbox.depth() == 0
    assert rig.telemetry.errors_count("sync", "connect_failed") == 0


async def test_server_authenticated_tls_delivers_deltas(
    tls_broker: Callable[..., Broker], subscriber: Callable[..., Recorder],
    make_rig: MakeRig, pki: PkiPaths,
) -> None:
    """With only ``tls.ca`` the session verifies the broker and publishes over TLS."""
    broker = tls_broker()
    rec = subscriber(broker, "edgetwin/v1/gw1/#")
    await deliver(make_rig(broker, tls={"ca": str(pki.ca)}), rec, range(1, 6))


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_mutual_tls_with_a_client_certificate_delivers_deltas(
    tls_broker: Callable[..., Broker], subscriber: Callable[..., Recorder],
    make_rig: MakeRig, pki: PkiPaths, protocol: str,
) -> None:
    """A broker that requires a client certificate accepts the configured cert and key."""
    broker = tls_broker(require_certificate=True)
    rec = subscriber(broker, "edgetwin/v1/gw1/#")
    tls = {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}
    await deliver(make_rig(broker, tls=tls, protocol=protocol), rec, range(1, 6))
    # Mosquitto logs each client's protocol: p2 is MQTT 3.1.1, p5 is MQTT 5.
    level = {"3.1.1": "p2", "5": "p5"}[protocol]
    assert f"as gw1 ({level}," in broker.log()


async def test_mutual_tls_refuses_a_missing_or_foreign_client_certificate(
    tls_broker: Callable[..., Broker], subscriber: Callable[..., Recorder],
    make_rig: MakeRig, pki: PkiPaths,
) -> None:
    """No client certificate, or one from another CA: refused, counted, entries kept."""
    broker = tls_broker(require_certificate=True)
    rec = subscriber(broker, "edgetwin/v1/gw1/#")
    rigs = [
        make_rig(broker, tls={"ca": str(pki.ca)}),
        make_rig(broker, tls={"ca": str(pki.ca), "cert": str(pki.other_client_cert),
                              "key": str(pki.other_client_key)}),
    ]
    tasks = [asyncio.create_task(rig.session.run(rig.stop)) for rig in rigs]
    for rig in rigs:
        await rig.feed(1)
    # Under TLS 1.3 the broker refuses the client certificate after the client finished its
    # handshake, and aiomqtt notices only when its CONNACK wait times out (10 s): both
    # sessions run at once to keep this test at one such wait.
    await until(lambda: all(r.telemetry.errors_count("sync", "connect_failed") >= 1
                            for r in rigs), timeout_s=20, what="both refusals are counted")
    for rig, task in zip(rigs, tasks, strict=True):
        assert not rig.session.connected
        assert rig.session.last_error is not None
        assert rig.outbox.depth() == 1
        assert not task.done()  # still retrying, not crashed
    assert rec.on("/reported") == []
    refusals = broker.log()  # OpenSSL's reasons, as the broker logged them
    assert "peer did not return a certificate" in refusals
    assert "certificate verify failed" in refusals
    # A stop now would wait out the pending 10 s connect attempt; the daemon cancels the
    # session when its stop budget runs out, and so does this test, at once.
    for task in tasks:
        await cancel_and_wait(task)


@pytest.mark.parametrize("fault", ["foreign_ca", "wrong_name"])
async def test_an_unverifiable_broker_certificate_is_refused(
    tls_broker: Callable[..., Broker], make_rig: MakeRig, pki: PkiPaths, fault: str,
) -> None:
    """The broker's certificate must chain to ``tls.ca`` and name the host; no fallback."""
    if fault == "foreign_ca":
        broker, ca, reason = tls_broker(), pki.other_ca, "self-signed certificate in certificate"
    else:
        misnamed = dataclasses.replace(pki, server_cert=pki.misnamed_server_cert,
                                       server_key=pki.misnamed_server_key)
        broker, ca, reason = tls_broker(tls=misnamed), pki.ca, "IP address mismatch"
    rig = make_rig(broker, tls={"ca": str(ca)})
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=1.0))
    await rig.feed(1)
    await until(lambda: rig.telemetry.errors_count("sync", "connect_failed") >= 2,
                what="two refused attempts are counted")
    assert not rig.session.connected
    assert "CERTIFICATE_VERIFY_FAILED" in (rig.session.last_error or "")
    assert reason in (rig.session.last_error or "")
    assert rig.outbox.depth() == 1
    assert "as gw1" not in broker.log()  # no MQTT session ever started
    rig.stop.set()
    await asyncio.wait_for(task, 5)


async def test_tls_with_username_and_password_file(
    tmp_path: Path, tls_broker: Callable[..., Broker], subscriber: Callable[..., Recorder],
    make_rig: MakeRig, pki: PkiPaths,
) -> None:
    """TLS and a broker login from ``password_file`` work together."""
    broker = tls_broker(users={"gw1": "s3cret", "observer": "look"})
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    rec = subscriber(broker, "edgetwin/v1/gw1/#", login=("observer", "look"))
    rig = make_rig(broker, tls={"ca": str(pki.ca)}, username="gw1", password_file=str(secret))
    await deliver(rig, rec, range(1, 4))


@pytest.mark.parametrize("missing", ["ca", "key"])
async def test_a_missing_tls_file_is_named_counted_and_logged_once(
    tmp_path: Path, tls_broker: Callable[..., Broker], make_rig: MakeRig, pki: PkiPaths,
    missing: str,
) -> None:
    """A TLS file that is not there fails each attempt with its key and path, logged once."""
    broker = tls_broker(require_certificate=True)
    tls = {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}
    tls[missing] = str(tmp_path / "absent.pem")
    rig = make_rig(broker, tls=tls)
    with captured_logs() as logs:
        task = asyncio.create_task(rig.session.run(rig.stop, drain_s=1.0))
        await rig.feed(1)
        await until(lambda: rig.telemetry.errors_count("sync", "connect_failed") >= 2,
                    what="two failed attempts are counted")
        rig.stop.set()
        await asyncio.wait_for(task, 5)
    (line,) = logs.events("Cannot connect to the broker")
    expected = f"sync.mqtt.tls.{missing}: No such file or directory: '{tmp_path}/absent.pem'"
    assert line["error"] == f"[Errno 2] {expected}"
    assert line["error_type"] == "FileNotFoundError"
    assert rig.outbox.depth() == 1
