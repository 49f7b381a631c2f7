"""The MQTT session against a real Mosquitto: delivery, retained state, outages, drain."""

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest
from hil.harness.proxy import LinkProxy

from edgetwin.config.model import BufferConfig, InboundCommands, MqttConfig, Scheme, SyncConfig
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import Command, PointSpec, Quality, Sample, Verdict
from edgetwin.outbox import DurableOutbox
from edgetwin.sync import MqttSession
from edgetwin.sync import session as session_module
from edgetwin.sync.sparkplug.node import BDSEQ_FILE, EdgeNode
from edgetwin.telemetry import Telemetry
from edgetwin.twin import TwinStore
from tests.helpers.mqtt import Received, Recorder, publish_many, publish_once
from tests.helpers.procs import Broker
from tests.helpers.waiting import until

pytestmark = pytest.mark.broker

SPECS = {f"pump1/p{i}": PointSpec(f"pump1/p{i}", "s") for i in range(3)}


class Rig:
    """Twin + outbox + session wired the way the daemon wires them."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.telemetry = Telemetry()
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        self.outbox = DurableOutbox(state, BufferConfig(max_bytes=2**20), self.telemetry)
        self.committer = asyncio.create_task(self.outbox.run())
        self.twin = TwinStore(SPECS, state, self.outbox.restored_twin)
        config = SyncConfig(mqtt=MqttConfig(host="127.0.0.1", port=port, keepalive=5))
        self.session = MqttSession(config, "gw1", self.outbox, self.twin, self.telemetry)
        self.stop = asyncio.Event()
        self.ts = 0

    async def close(self) -> None:
        await cancel_and_wait(self.committer)
        await self.outbox.close()

    async def feed(self, value: int) -> None:
        self.ts += 1
        batch = [Sample(p, value, Quality.GOOD, self.ts * 1_000_000) for p in SPECS]
        await self.outbox.put(self.twin.apply(batch))


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[Callable[[int], Rig]]:
    rigs: list[Rig] = []

    def make(port: int) -> Rig:
        rigs.append(Rig(tmp_path, port))
        return rigs[-1]

    yield make
    for rig in rigs:
        await rig.close()


def reported(value: int) -> Callable[[Received], bool]:
    return lambda m: m.topic.endswith("/reported") and m.json()["state"]["p0"]["v"] == value


async def test_deltas_snapshot_and_status_reach_the_broker(
    broker: Broker, make_rig: Callable[[int], Rig], recorder_factory: Callable[..., Recorder]
) -> None:
    """Deltas arrive in order, the snapshot is retained, status goes online then offline."""
    rec = recorder_factory("edgetwin/v1/gw1/#")
    rig = make_rig(broker.port)
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=2.0))
    for value in range(1, 21):
        await rig.feed(value)
    await rec.await_for(reported(20))
    seqs = [m.json()["seq"] for m in rec.on("/pump1/reported")]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    assert [m.json()["state"]["p0"]["v"] for m in rec.on("/pump1/reported")] == list(range(1, 21))
    await rec.await_for(lambda m: m.topic.endswith("/pump1/twin")
                        and m.json()["state"]["p0"]["v"] == 20)
    assert rec.on("/status")[0].json()["online"] is True
    rig.stop.set()
    await asyncio.wait_for(task, 5)
    await rec.await_for(lambda m: m.topic.endswith("/status") and m.json()["online"] is False)
    assert rig.outbox.depth() == 0

    late = recorder_factory("edgetwin/v1/gw1/+/twin", "edgetwin/v1/gw1/status")
    twin = await late.await_for(lambda m: m.topic.endswith("/twin"))
    assert twin.retain and twin.json()["state"]["p0"]["v"] == 20
    status = await late.await_for(lambda m: m.topic.endswith("/status"))
    assert status.retain and status.json()["online"] is False


async def test_broker_outage_loses_nothing_and_will_marks_offline(
    broker: Broker, make_rig: Callable[[int], Rig], recorder_factory: Callable[..., Recorder]
) -> None:
    """Entries queued while the broker is down are delivered after it returns, in order."""
    rig = make_rig(broker.port)
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=2.0))
    rec = recorder_factory("edgetwin/v1/gw1/#")
    await rig.feed(1)
    await rec.await_for(reported(1))
    rec.close()

    broker.stop(kill=True)
    for value in range(2, 12):
        await rig.feed(value)
    assert rig.outbox.depth() >= 1
    broker.start()
    rec2 = recorder_factory("edgetwin/v1/gw1/+/reported")
    await rec2.await_for(reported(11), timeout_s=30)
    values = [m.json()["state"]["p0"]["v"] for m in rec2.on("/reported")]
    assert set(range(2, 12)) <= set(values)  # at least once: nothing queued was lost
    firsts = {}
    for m in rec2.on("/reported"):
        firsts.setdefault(m.json()["seq"], m.json()["state"]["p0"]["v"])
    assert list(firsts.values()) == sorted(firsts.values())  # order per asset kept
    assert rig.telemetry.errors_count("sync", "disconnected") >= 1
    rig.stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_lost_session_frees_its_client_at_once(
    broker: Broker, make_rig: Callable[[int], Rig]
) -> None:
    """A dropped client (a reference cycle with paho's) is freed at the loss, not minutes later.

    Python's automatic collection is off for the test: only the session's own pass may
    free the client, so without it the client lives on and the wait fails.
    """
    rig = make_rig(broker.port)
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=1.0))
    await until(lambda: rig.session.connected, what="session up")
    gc.disable()
    try:
        clients = [weakref.ref(o) for o in gc.get_objects() if isinstance(o, aiomqtt.Client)]
        assert clients
        broker.stop(kill=True)
        await until(lambda: not rig.session.connected, what="session lost")
        await until(lambda: all(ref() is None for ref in clients), timeout_s=5.0,
                    what="dropped clients freed")
    finally:
        gc.enable()
    rig.stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_connect_that_got_no_connack_is_closed_not_left_to_finish_later(
    broker: Broker, make_rig: Callable[[int], Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link that swallows everything: each timed-out attempt's socket is closed at once.

    Left open, it would finish connecting once the link heals, as this gateway's client id
    and with its Will, beside the session that follows (then the broker takes one over).
    """
    monkeypatch.setattr(session_module, "_PUBACK_TIMEOUT_S", 1.0)  # the CONNACK wait too
    proxy = LinkProxy("broker", "127.0.0.1", broker.port)
    await proxy.start()
    try:
        proxy.blackhole()
        rig = make_rig(proxy.port)
        task = asyncio.create_task(rig.session.run(rig.stop, drain_s=1.0))
        await until(lambda: rig.telemetry.errors_count("sync", "connect_failed") >= 3,
                    timeout_s=20, what="three attempts timed out")
        assert proxy.stats()["connections_open"] <= 1  # at most the attempt under way
        proxy.restore()
        await until(lambda: rig.session.connected, timeout_s=20, what="session up")
        assert proxy.stats()["connections_open"] == 1
        rig.stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        await proxy.stop()


async def test_publishes_without_pubacks_drop_the_session_and_are_sent_again(
    broker: Broker, make_rig: Callable[[int], Rig], recorder_factory: Callable[..., Recorder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A link that takes publishes and answers none: dropped before keepalive would notice.

    What was in flight is sent again on the next session: none lost, none left waiting.
    """
    monkeypatch.setattr(session_module, "_PUBACK_TIMEOUT_S", 1.0)
    proxy = LinkProxy("broker", "127.0.0.1", broker.port)
    await proxy.start()
    rec = recorder_factory("edgetwin/v1/gw1/+/reported")
    try:
        rig = make_rig(proxy.port)  # keepalive 5 s: it would take 7.5 s to see the link gone
        task = asyncio.create_task(rig.session.run(rig.stop, drain_s=2.0))
        await until(lambda: rig.session.connected, what="session up")
        proxy.blackhole()
        for value in range(1, 6):
            await rig.feed(value)
        await until(lambda: not rig.session.connected, timeout_s=5.0,
                    what="the session dropped for want of PUBACKs")
        assert rig.session.last_error is not None
        assert "no PUBACK for" in rig.session.last_error
        assert len(rig.session._acks) == 0  # nothing left holding a slot
        proxy.restore()
        await rec.await_for(reported(5), timeout_s=20)
        assert [m.json()["state"]["p0"]["v"] for m in rec.on("/reported")][-5:] == [1, 2, 3, 4, 5]
        rig.stop.set()
        await asyncio.wait_for(task, 5)
        assert rig.outbox.depth() == 0
    finally:
        await proxy.stop()


async def test_stop_while_broker_down_returns_promptly_and_keeps_entries(
    tmp_path: Path, broker: Broker, make_rig: Callable[[int], Rig]
) -> None:
    """With no broker, stop ends the session within its budget and reports what is left."""
    rig = make_rig(broker.port)
    broker.stop(kill=True)
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=1.0))
    await rig.feed(1)
    rig.stop.set()
    await asyncio.wait_for(task, 3)
    assert rig.outbox.depth() == 1
    assert not rig.session.connected


async def test_password_comes_from_a_file_and_a_wrong_one_is_counted(
    tmp_path: Path, make_rig: Callable[[int], Rig]
) -> None:
    """The broker password is read from password_file; a refused login is retried, not fatal."""
    broker = Broker(tmp_path, users={"gw1": "s3cret"})
    broker.start()
    try:
        secret = tmp_path / "mqtt.password"
        secret.write_text("wrong\n")
        rig = make_rig(broker.port)
        mqtt = MqttConfig(host="127.0.0.1", port=broker.port, username="gw1",
                          password_file=secret)
        rig.session = MqttSession(SyncConfig(mqtt=mqtt), "gw1", rig.outbox, rig.twin,
                                  rig.telemetry)
        task = asyncio.create_task(rig.session.run(rig.stop, drain_s=1.0))
        await rig.feed(1)
        await until(lambda: rig.telemetry.errors_count("sync", "connect_failed") >= 1,
                    what="a refused login is counted")
        assert not rig.session.connected
        assert rig.outbox.depth() == 1

        secret.write_text("s3cret\n")  # fixed on disk: the next attempt reads it again
        await until(lambda: rig.outbox.depth() == 0, what="the queued delta is delivered")
        assert rig.session.connected
        rig.stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        broker.stop(kill=True)


async def test_desired_values_are_pending_until_the_verdict_and_every_command_is_answered(
    broker: Broker, make_rig: Callable[[int], Rig], recorder_factory: Callable[..., Recorder]
) -> None:
    """A desired value goes to the policy, stays pending in the snapshot, then is answered."""
    decide = asyncio.Event()
    seen: list[Command] = []

    async def policy(command: Command) -> Verdict:
        seen.append(command)
        await decide.wait()
        return Verdict(False, "interlock: tank1/level below 10")

    rig = make_rig(broker.port)
    rig.session = MqttSession(rig.session._config, "gw1", rig.outbox, rig.twin, rig.telemetry,
                              points=list(SPECS), submit=policy)
    rec = recorder_factory("edgetwin/v1/gw1/#")
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=2.0))
    await rig.feed(1)
    await rec.await_for(reported(1))
    desired = {"id": "c-7", "state": {"p1": 5}, "client_token": "t1"}
    publish_once(broker.port, "edgetwin/v1/gw1/pump1/desired", json.dumps(desired))
    await until(lambda: len(seen) == 1, what="the command reaches the policy")
    assert (seen[0].point, seen[0].value, seen[0].id) == ("pump1/p1", 5, "c-7")
    pending = await rec.await_for(lambda m: m.topic.endswith("/pump1/twin")
                                  and "p1" in m.json()["desired"])
    assert pending.json()["desired"]["p1"]["v"] == 5 and "p1" in pending.json()["delta"]

    decide.set()
    result = await rec.await_for(lambda m: m.topic.endswith("/cmd/result"))
    assert result.json()["id"] == "c-7" and result.json()["accepted"] is False
    assert result.json()["client_token"] == "t1"
    await rec.await_for(lambda m: m.topic.endswith("/pump1/twin") and not m.json()["desired"])

    unknown = {"id": "c-8", "point": "nowhere/x", "value": 1}
    publish_once(broker.port, "edgetwin/v1/gw1/cmd", json.dumps(unknown))
    refused = await rec.await_for(lambda m: m.topic.endswith("/cmd/result")
                                  and m.json().get("error_code") == "unknown_point")
    assert refused.json()["accepted"] is False
    assert rig.telemetry.errors_count("sync", "unknown_point") == 1
    rig.stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_command_flood_is_refused_before_the_policy_and_answered_within_budget(
    broker: Broker, make_rig: Callable[[int], Rig], recorder_factory: Callable[..., Recorder]
) -> None:
    """Past the burst, commands never reach the policy; a few refusals are answered, all counted."""
    seen: list[str] = []

    async def policy(command: Command) -> Verdict:
        seen.append(command.id)
        return Verdict(False, "denied: test policy")

    rig = make_rig(broker.port)
    config = rig.session._config.model_copy(
        update={"inbound_commands": InboundCommands(per_second=0.001, burst=64)})
    rig.session = MqttSession(config, "gw1", rig.outbox, rig.twin, rig.telemetry,
                              points=list(SPECS), submit=policy)
    rec = recorder_factory("edgetwin/v1/gw1/cmd/result")
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=2.0))
    await until(lambda: rig.session.connected, what="the session is up")
    flood = 64 + 30
    publish_many(broker.port, "edgetwin/v1/gw1/cmd", [
        json.dumps({"id": f"f{i}", "point": "pump1/p1", "value": i, "client_token": f"t{i}"})
        for i in range(flood)])
    await until(lambda: rig.telemetry.errors_count("sync", "flooded") == flood - 64,
                what="every refused command is counted")
    await rec.await_for(lambda _m: len(rec.on("/cmd/result")) >= 64 + 10)
    results = [m.json() for m in rec.on("/cmd/result")]
    assert seen == [f"f{i}" for i in range(64)]
    verdicts = [r for r in results if "error_code" not in r]
    refused = [r for r in results if r.get("error_code") == "flooded"]
    assert sorted(r["id"] for r in verdicts) == sorted(seen)
    # Answered within the bad-input budget (10 a minute per code), in order, the rest counted.
    assert [r["id"] for r in refused] == [f"f{i}" for i in range(64, 74)]
    assert refused[0] == {**refused[0], "accepted": False, "point": "pump1/p1",
                          "origin": "json/cmd", "client_token": "t64", "reason":
                          "commands arrive faster than 0.001/s "
                          "(sync.inbound_commands.per_second, burst 64)"}
    rig.stop.set()
    await asyncio.wait_for(task, 5)
    assert len(rec.on("/cmd/result")) == 64 + 10


async def test_a_bdseq_that_cannot_be_stored_is_reported_as_such_and_the_node_connects(
    broker: Broker, make_rig: Callable[[int], Rig], recorder_factory: Callable[..., Recorder],
    tmp_path: Path,
) -> None:
    """Not a broker problem: counted as bdseq_store, and the node goes online regardless."""
    rig = make_rig(broker.port)
    config = rig.session._config.model_copy(update={"schemes": (Scheme.SPARKPLUG,)})
    state = tmp_path / "spb"
    state.mkdir()
    rig.session = MqttSession(config, "gw1", rig.outbox, rig.twin, rig.telemetry, group="g",
                              state_dir=state, points=list(SPECS))
    (state / BDSEQ_FILE).mkdir()  # a directory where the file belongs: every write fails
    rec = recorder_factory("spBv1.0/g/#")
    task = asyncio.create_task(rig.session.run(rig.stop, drain_s=2.0))
    nbirth = await rec.await_for(lambda m: "/NBIRTH/" in m.topic)
    assert next(m.long_value for m in EdgeNode.decode(nbirth.payload).metrics
                if m.name == "bdSeq") == 0
    assert rig.telemetry.errors_count("sync", "bdseq_store") == 1
    assert rig.telemetry.errors_count("sync", "connect_failed") == 0
    rig.stop.set()
    await asyncio.wait_for(task, 5)
