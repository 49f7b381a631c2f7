"""The MQTT session: connects, publishes the outbox per scheme, reconnects, drains on stop.

Schemes: the JSON twin scheme (QoS 1, each entry settled on its own PUBACK) and the
Sparkplug B edge node (QoS 0 DATA, entries held for the outbox's window and replayed as
history after a drop), one or both, from one claim of the outbox: each entry is encoded
once per scheme. The Will is the NDEATH when Sparkplug runs; the JSON status then rides a
second, data-less connection whose Will is the offline status.

Invariants:
- an outbox entry is settled DELIVERED only when the broker's PUBACK for that very message
  arrived; on a lost connection every unsettled entry is rewound and sent again, in ``seq``
  order, so delivery is at least once and a consumer drops duplicates by ``seq``;
- at most ``sync.max_inflight`` publishes are unacknowledged at any time (paho stops
  delivering for good past ~65k queued QoS 1 messages), each one small record
  (``inflight``); a PUBACK overdue by ``_PUBACK_TIMEOUT_S`` drops the session, as a lost
  link does;
- the retained status reads online only while a session is up: the offline form is the
  last will, and is published explicitly before a clean disconnect;
- after every (re)connect each asset's retained snapshot is published again, so the broker
  holds the whole twin even when deltas were dropped by a full buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import structlog

from edgetwin.config.model import MqttProtocol, Scheme, SyncConfig
from edgetwin.core.backoff import Backoff
from edgetwin.core.ports import Outbox, SubmitCommand, TwinView
from edgetwin.core.tasks import cancel_and_wait, raise_if_cancelling, wait_set
from edgetwin.core.types import (
    Command,
    CommandOrigin,
    Delivery,
    Delta,
    OutboxEntry,
    Record,
    RecordKind,
    Verdict,
    asset_of,
)
from edgetwin.sync.admission import CommandGate
from edgetwin.sync.inflight import InFlight
from edgetwin.sync.jsontwin import (
    DesiredState,
    JsonTwinDecoder,
    JsonTwinEncoder,
    RejectCode,
    Rejection,
    command_result,
    rejection_result,
)
from edgetwin.sync.message import MqttMessage
from edgetwin.sync.sparkplug.host import PrimaryHost
from edgetwin.sync.sparkplug.node import BadCommand, EdgeNode
from edgetwin.telemetry import Telemetry

log = structlog.get_logger("edgetwin.sync")

_PUBACK_TIMEOUT_S = 10.0
_GOODBYE_S = 1.0  # final snapshots and the offline status, after the drain
_FATAL_RC = {paho.MQTT_ERR_PAYLOAD_SIZE, paho.MQTT_ERR_INVAL}  # this message can never go


MAX_INBOUND_BYTES = 256 * 1024  # a command or STATE is small; anything bigger is refused unread
BAD_INPUT_TOLD_PER_MINUTE = 10  # logged and audited per error code; the rest only counted


class HostOffline(Exception):
    """The primary host went offline: NDEATH, disconnect, and wait for it to return."""


class MqttSession:
    """One broker session at a time for the gateway, for as long as the daemon runs."""

    def __init__(
        self,
        config: SyncConfig,
        gateway_id: str,
        outbox: Outbox,
        twin: TwinView,
        telemetry: Telemetry,
        *,
        group: str = "edgetwin",
        state_dir: Path | None = None,
        points: Iterable[str] = (),
        submit: SubmitCommand | None = None,
    ) -> None:
        """Set up the session; nothing connects before ``run``.

        ``points``: every configured point id (Sparkplug births list them all); ``submit``
        takes decoded commands to the safety policy (None: commands are counted and dropped,
        the gateway being read-only); ``state_dir`` keeps Sparkplug's bdSeq.
        """
        self._config = config
        self._mqtt = config.mqtt
        self._outbox = outbox
        self._twin = twin
        self._telemetry = telemetry
        self._client_id = config.mqtt.client_id or gateway_id
        self.encoder = JsonTwinEncoder(config.json_.prefix, gateway_id)
        self._json = Scheme.JSON in config.schemes
        point_ids = list(points)
        self.decoder = JsonTwinDecoder(config.json_.prefix, gateway_id, point_ids)
        self.desired = DesiredState()
        self.node: EdgeNode | None = None
        self.host: PrimaryHost | None = None
        if Scheme.SPARKPLUG in config.schemes:
            if state_dir is None:
                raise ValueError("the Sparkplug scheme needs a state_dir for its bdSeq")
            self.node = EdgeNode(group, gateway_id, point_ids, twin, state_dir)
            if config.sparkplug.primary_host:
                self.host = PrimaryHost(config.sparkplug.primary_host)
        self._submit = submit
        self._order = asyncio.Lock()  # births, rebirths and device deaths never interleave DATA
        self._host_online = asyncio.Event()
        self._rebirth = asyncio.Event()
        self._alive: dict[str, bool] = {}
        self._alive_changed = asyncio.Event()
        self._bad_told: dict[str, tuple[float, int]] = {}  # code -> (window start, count)
        self._handling: set[asyncio.Task[None]] = set()  # commands awaiting their verdict
        self._gate = CommandGate(config.inbound_commands.per_second,
                                 config.inbound_commands.burst)
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self._settled = asyncio.Event()
        self._acks = InFlight(config.max_inflight)
        self.connected = False
        self.since_ns = time.time_ns()
        self.last_error: str | None = None
        self.broker = f"{config.mqtt.host}:{config.mqtt.port}"
        self._connected_gauge = telemetry.gauge(
            "edgetwin_mqtt_connected", "1 while a broker session is up"
        )
        self._published = telemetry.counter(
            "edgetwin_mqtt_published_total", "Messages the broker acknowledged", ("kind",)
        )
        self._connects = telemetry.counter(
            "edgetwin_mqtt_connects_total", "Broker sessions established"
        )
        self._commands = telemetry.counter(
            "edgetwin_sync_commands_total", "Commands decoded and handed to the safety policy",
            ("origin",),
        )

    def status(self) -> dict[str, Any]:
        """Session state for ``edgetwin status``."""
        return {
            "broker": self.broker,
            "connected": self.connected,
            "since_ns": self.since_ns,
            "last_error": self.last_error,
            "client_id": self._client_id,
        }

    def set_alive(self, alive: Mapping[str, bool]) -> None:
        """Which assets have a live source; a change sends DDEATH or DBIRTH (Sparkplug)."""
        if dict(alive) != self._alive:
            self._alive = dict(alive)
            self._alive_changed.set()

    async def run(self, stop: asyncio.Event, drain_s: float = 3.0) -> None:
        """Keep a session up until ``stop`` is set, then deliver what is queued within ``drain_s``.

        Returns after the death certificates went out (when connected) and the session closed.
        """
        try:
            await self._run(stop, drain_s)
        finally:
            # Commands still waiting for a verdict outlive a lost link (their answers go to
            # the outbox), but not the session itself.
            for task in list(self._handling):
                await cancel_and_wait(task)

    async def _run(self, stop: asyncio.Event, drain_s: float) -> None:
        backoff = Backoff(initial_s=0.5, max_s=30.0)
        while not stop.is_set():
            pause = True
            try:
                await self._connection(stop, drain_s, backoff)
                return
            except HostOffline:
                self._outbox.rewind()
                self._set_connected(False, "primary host offline")
                log.warning("Primary host went offline; holding data until it returns",
                            host=self.host.host_id if self.host else None)
                pause = False  # reconnect at once and wait for its STATE online
            except (aiomqtt.MqttError, OSError) as err:
                self._outbox.rewind()
                lost = self.connected
                first_of_outage = lost or self.last_error is None
                self._set_connected(False, f"{type(err).__name__}: {err}")
                # Logged once per outage (on the loss, or on the first failed connect);
                # every failed attempt is counted.
                self._telemetry.emit_error(
                    "sync", "disconnected" if lost else "connect_failed", "session", err,
                    log=first_of_outage, broker=self.broker,
                    message="Broker connection lost" if lost else "Cannot connect to the broker",
                )
            if pause:
                await wait_set(stop, backoff.next_delay())
            _free_dropped_client()  # out here and after the pause: nothing holds it by now
        abandoned = self._outbox.depth()
        if abandoned:
            log.warning("Stopped while disconnected; entries left in the outbox",
                        abandoned=abandoned, broker=self.broker)

    async def _connection(self, stop: asyncio.Event, drain_s: float, backoff: Backoff) -> None:
        """One connection, until a clean close after ``stop``; raises when the link fails.

        A frame of its own, so that the client is no longer referenced once it is gone.
        """
        password = self._read_password()
        will = self._next_will()
        async with _connected(self._client(password, will, self._client_id)) as client, \
                self._status_link(password):
            await self._on_connect(client)
            backoff.reset()
            await self._pump(client, stop, drain_s)
            async with asyncio.timeout(_GOODBYE_S):
                await self._goodbye(client)
            self._outbox.confirm_sent()  # a clean close: QoS 0 writes arrived
            self._set_connected(False, None)
            log.info("Broker session closed", broker=self.broker)

    def _next_will(self) -> MqttMessage:
        """The Will of the next CONNECT: the NDEATH with a new bdSeq, or the offline status."""
        if self.node is None:
            return self._status(online=False)
        try:
            return self.node.next_will()
        except OSError as err:
            # Connect with the bdSeq in memory: keeping the node off the broker would lose
            # more than a bdSeq that a restart may use once more.
            self._telemetry.emit_error("sync", "bdseq_store", "session", err,
                                       message="Sparkplug bdSeq not stored; connecting anyway",
                                       bdseq=self.node.bdseq)
            return self.node.death_certificate()

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """A clean stop: last snapshots and the death certificates the Wills stand for."""
        if self._json:
            await self._publish_snapshots(client)
        if self.node is not None:
            # Sparkplug 3.1.1: publish NDEATH before DISCONNECT (the broker drops the Will).
            await self._publish(client, self.node.death_certificate(), "sparkplug")
        if self._json and self.node is None:
            await self._publish(client, self._status(online=False), "status")

    @contextlib.asynccontextmanager
    async def _status_link(self, password: str | None) -> AsyncIterator[None]:
        """With both schemes, a second connection whose Will is the JSON offline status."""
        if not (self._json and self.node is not None):
            yield
            return
        will = self._status(online=False)
        async with _connected(self._client(password, will, f"{self._client_id}-status")) as side:
            await self._publish(side, self._status(online=True), "status")
            try:
                yield
            finally:
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(_GOODBYE_S):
                        await self._publish(side, will, "status")

    def _read_password(self) -> str | None:
        path = self._mqtt.password_file
        if path is None:
            return None
        return path.read_text(encoding="utf-8").rstrip("\r\n")

    def _client(self, password: str | None, will: MqttMessage, client_id: str) -> aiomqtt.Client:
        tls = self._mqtt.tls
        tls_params = None
        if tls is not None:
            for key, path in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
                try:  # ssl's own error names no file ("[Errno 2] No such file or directory")
                    if path is not None:
                        path.open("rb").close()
                except OSError as err:
                    reason = f"sync.mqtt.tls.{key}: {err.strerror}"
                    raise type(err)(err.errno, reason, str(path)) from err
            tls_params = aiomqtt.TLSParameters(
                ca_certs=str(tls.ca) if tls.ca else None,
                certfile=str(tls.cert) if tls.cert else None,
                keyfile=str(tls.key) if tls.key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        v5 = self._mqtt.protocol is MqttProtocol.V5
        client = aiomqtt.Client(
            self._mqtt.host,
            self._mqtt.port,
            identifier=client_id,
            username=self._mqtt.username,
            password=password,
            keepalive=self._mqtt.keepalive,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else True,
            will=aiomqtt.Will(will.topic, will.payload, will.qos, will.retain),
            tls_params=tls_params,
            timeout=_PUBACK_TIMEOUT_S,
            max_inflight_messages=self._config.max_inflight,
            # QoS 0 has no PUBACK to carry the TCP ACK back: without this, Nagle and delayed
            # ACKs hold small Sparkplug messages for ~40 ms.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # aiomqtt warns on every publish beyond this many unacknowledged ones; the in-flight
        # window is ours by design, so only more than that is worth a line.
        client.pending_calls_threshold = self._config.max_inflight + 10
        return client

    def _status(self, *, online: bool) -> MqttMessage:
        return self.encoder.status(online=online, ts_ms=time.time_ns() // 1_000_000)

    def _set_connected(self, connected: bool, error: str | None) -> None:
        if connected != self.connected:
            self.since_ns = time.time_ns()
        self.connected = connected
        self.last_error = error if error is not None else self.last_error
        self._connected_gauge.set(1 if connected else 0)

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        self._connects.inc()
        recovered = self.last_error is not None
        self._set_connected(True, None)
        log.info("Broker session up" if not recovered else "Broker session recovered",
                 broker=self.broker, client_id=self._client_id, queued=self._outbox.depth())
        topics: list[str] = []
        if self.node is not None:
            # Before NBIRTH [tck-id-message-flow-edge-node-ncmd-subscribe].
            topics += self.node.command_topics()
        if self.host is not None:
            self._host_online.clear()
            self.host.online = False
            topics.append(self.host.topic)
        if self._json:
            topics += self.decoder.subscriptions()
        for topic in topics:
            await client.subscribe(topic, qos=1)
        if self._json and self.node is None:
            await self._publish(client, self._status(online=True), "status")
        if self._json:
            self._dirty.update(self._twin.assets())
            await self._publish_snapshots(client)

    async def _pump(self, client: aiomqtt.Client, stop: asyncio.Event, drain_s: float) -> None:
        """Publish until ``stop``; then wait up to ``drain_s`` for the outbox to empty.

        Raises:
            aiomqtt.MqttError: the link was lost (the first error of the session's tasks).
            HostOffline: the primary host went offline (after NDEATH went out).
        """
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._watch_link(client), name="sync.link")]
                if self.node is not None:  # no DATA before the births
                    ready = group.create_task(self._births_when_host_ready(client),
                                              name="sync.births")
                    tasks.append(ready)
                    stopping = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stopping.cancel()
                if not stop.is_set():
                    tasks.append(group.create_task(self._publish_outbox(client),
                                                   name="sync.outbox"))
                    tasks.append(group.create_task(self._watch_acks(), name="sync.pubacks"))
                    if self._json:
                        tasks.append(group.create_task(self._snapshot_loop(client),
                                                       name="sync.snapshots"))
                    if self.node is not None:
                        tasks.append(group.create_task(self._sparkplug_control(client),
                                                       name="sync.sparkplug"))
                    await stop.wait()
                    await self._drain(drain_s)
                for task in tasks:
                    await cancel_and_wait(task)
        except BaseExceptionGroup as group_error:
            error = _link_error(group_error)
            if isinstance(error, HostOffline):
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(_GOODBYE_S):
                        assert self.node is not None
                        await self._publish(client, self.node.death_certificate(), "sparkplug")
            raise error from None
        finally:
            self._acks.abandon()
            self._outbox.rewind()  # whatever is still claimed was not acknowledged

    async def _births_when_host_ready(self, client: aiomqtt.Client) -> None:
        if self.host is not None:
            log.info("Waiting for the primary host to be online", host=self.host.host_id)
            await self._host_online.wait()
        await self._publish_births(client)

    async def _publish_births(self, client: aiomqtt.Client) -> None:
        assert self.node is not None
        async with self._order:
            for message in self.node.births(self._alive or None):
                await self._publish(client, message, "sparkplug")
        log.info("Sparkplug births published", bdseq=self.node.bdseq,
                 devices=len(self.node.born()))

    async def _sparkplug_control(self, client: aiomqtt.Client) -> None:
        """Rebirth requests and device deaths/births, between DATA messages."""
        assert self.node is not None
        node = self.node
        while True:
            rebirth = asyncio.ensure_future(self._rebirth.wait())
            alive = asyncio.ensure_future(self._alive_changed.wait())
            try:
                await asyncio.wait({rebirth, alive}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                rebirth.cancel()
                alive.cancel()
            raise_if_cancelling()
            if self._rebirth.is_set():
                self._rebirth.clear()
                log.info("Rebirth requested by NCMD")
                await self._publish_births(client)
            if self._alive_changed.is_set():
                self._alive_changed.clear()
                async with self._order:
                    for asset, up in sorted(self._alive.items()):
                        message = node.device_birth(asset) if up else node.device_death(asset)
                        if message is not None:
                            await self._publish(client, message, "sparkplug")

    async def _drain(self, drain_s: float) -> None:
        deadline = time.monotonic() + drain_s
        while self._outbox.waiting() and (left := deadline - time.monotonic()) > 0:
            self._settled.clear()
            await wait_set(self._settled, left)
        if self._outbox.waiting():
            log.warning("Drain time is up; entries stay queued", abandoned=self._outbox.waiting(),
                        drain_s=drain_s)

    # -- inbound -----------------------------------------------------------------------------

    async def _watch_link(self, client: aiomqtt.Client) -> None:
        # Iterating messages is aiomqtt's one public way to learn of a lost connection:
        # it raises MqttError when the link drops.
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if len(payload) > MAX_INBOUND_BYTES:
                await self._bad_input("too_large", topic,
                                      f"{len(payload)} bytes (limit {MAX_INBOUND_BYTES})")
            elif self.host is not None and topic == self.host.topic:
                await self._on_host_state(payload)
            elif self.node is not None and self.node.is_command_topic(topic):
                await self._on_sparkplug_command(topic, payload)
            elif self._json:
                await self._on_json_command(topic, payload, bool(message.retain))

    async def _on_host_state(self, payload: bytes) -> None:
        assert self.host is not None
        try:
            changed = self.host.update(payload)
        except ValueError as err:
            await self._bad_input("bad_state", self.host.topic, err)
            return
        if changed is True:
            log.info("Primary host is online", host=self.host.host_id)
            self._host_online.set()
        elif changed is False:
            raise HostOffline(self.host.host_id)

    async def _on_sparkplug_command(self, topic: str, payload: bytes) -> None:
        assert self.node is not None
        try:
            inbound = self.node.inbound(topic, payload)
        except BadCommand as err:
            await self._bad_input(err.code, topic, err)
            return
        for problem in inbound.problems:
            await self._bad_input(problem.code, topic, problem)
        if inbound.rebirth:
            self._rebirth.set()
        if await self._admitted(topic, inbound.commands):
            for command in inbound.commands:
                self._route(command)

    async def _on_json_command(self, topic: str, payload: bytes, retained: bool) -> None:
        decoded = self.decoder.parse(topic, payload, time.time_ns(), retained=retained)
        if isinstance(decoded, Rejection):
            if await self._bad_input(decoded.code.value, topic, decoded.message):
                await self._outbox.put([rejection_result(decoded, time.time_ns())])
            return
        if not await self._admitted(topic, decoded.commands):
            return  # whole or nothing: the message's withdrawals do not happen either
        changed = {asset_of(p) for p in decoded.clears if self.desired.withdraw(p)}
        for command in decoded.commands:
            if command.origin is CommandOrigin.JSON_DESIRED:
                self.desired.want(command)
                changed.add(asset_of(command.point))
            self._route(command)
        self._mark_dirty(changed)

    async def _admitted(self, topic: str, commands: Sequence[Command]) -> bool:
        """Whether the gate lets a message's commands on; refused ones never reach the policy.

        Refusals are answered (``error_code`` ``flooded``) within the bad-input budget only:
        answering every command of a flood would be the flood the gate holds back.
        """
        why = self._gate.admit(len(commands), len(self._handling))
        if why is None:
            return True
        if await self._bad_input(RejectCode.FLOODED.value, topic, why):
            now = time.time_ns()
            await self._outbox.put([rejection_result(Rejection(
                RejectCode.FLOODED, why, command.origin, asset_of(command.point),
                command.id, command.point, command.reply_to), now) for command in commands])
        return False

    def _route(self, command: Command) -> None:
        """Hand a command to the policy without holding up the inbound stream."""
        self._commands.labels(command.origin.value).inc()
        task = asyncio.get_running_loop().create_task(self._answer(command))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    async def _answer(self, command: Command) -> None:
        """The one verdict, answered on cmd/result (through the outbox, like all data)."""
        if self._submit is None:
            verdict = Verdict(False, "this gateway has no command path")
        else:
            verdict = await self._submit(command)
        if self.desired.verdict(command, verdict):
            self._mark_dirty({asset_of(command.point)})
        await self._outbox.put([command_result(command, verdict, time.time_ns())])

    def _mark_dirty(self, assets: set[str]) -> None:
        if assets and self._json:
            self._dirty.update(assets)
            self._dirty_event.set()

    async def _bad_input(self, code: str, topic: str, err: BaseException | str) -> bool:
        """Count every bad inbound message; log and audit each kind a few times a minute.

        A flood of garbage must not flood the log or the outbox (audit records are evicted
        last, so unbounded ones would push out data): beyond the budget it is only counted.
        Returns whether this one was within the budget (and so may be answered).
        """
        now = time.monotonic()
        window, told = self._bad_told.get(code, (now, 0))
        if now - window > 60.0:
            window, told = now, 0
        self._bad_told[code] = (window, told + 1)
        tell = told < BAD_INPUT_TOLD_PER_MINUTE
        self._telemetry.emit_error("sync", code, "inbound", err, log=tell, topic=topic,
                                   message="Inbound message refused")
        if tell:
            await self._outbox.put([Record(RecordKind.AUDIT, "", time.time_ns(), {
                "event": "inbound_refused", "code": code, "topic": topic, "detail": str(err),
            })])
        return tell

    # -- outbound ----------------------------------------------------------------------------

    async def _publish_outbox(self, client: aiomqtt.Client) -> None:
        while True:
            raise_if_cancelling()  # aiomqtt's wait_for may have swallowed a cancellation
            entries = await self._outbox.claim(self._config.max_batch)
            async with self._order:
                for entry in entries:
                    await self._send(client, entry)

    async def _send(self, client: aiomqtt.Client, entry: OutboxEntry) -> None:
        """Encode one entry once per scheme and publish it; settle by the weakest delivery."""
        item = entry.item
        sparkplug = self.node is not None and isinstance(item, Delta)
        try:
            json_message = self.encoder.entry(entry) if self._json or not sparkplug else None
            spb = self.node.data(item, historical=entry.historical) \
                if sparkplug and self.node is not None and isinstance(item, Delta) else []
        except (ValueError, TypeError) as err:
            self._reject(entry, "encode_failed", err)
            return
        for message in spb:
            await self._publish(client, message, "sparkplug")
        if json_message is None:
            self._outbox.settle(entry.seq, Delivery.SENT)
            self._settled.set()
            return
        try:
            await self._acks.send(client, json_message,
                                  lambda: self._acknowledged(entry, held=sparkplug))
        except aiomqtt.MqttCodeError as err:
            if err.rc not in _FATAL_RC:
                raise
            self._reject(entry, "publish_refused", err)
            self._settled.set()

    def _acknowledged(self, entry: OutboxEntry, *, held: bool) -> None:
        """The PUBACK of an entry's JSON message came."""
        self._published.labels(_kind(entry)).inc()
        # Also sent as Sparkplug at QoS 0: kept for the replay window, not acknowledged.
        self._outbox.settle(entry.seq, Delivery.SENT if held else Delivery.DELIVERED)
        if isinstance(entry.item, Delta):
            self._dirty.add(entry.item.asset)
            self._dirty_event.set()
        self._settled.set()

    async def _watch_acks(self) -> None:
        """A PUBACK overdue means a link that takes but does not answer: drop the session."""
        while True:
            await asyncio.sleep(1.0)  # a period, not synchronisation
            if (waited := self._acks.overdue_s()) > _PUBACK_TIMEOUT_S:
                raise aiomqtt.MqttError(f"no PUBACK for {waited:.1f} s "
                                        f"({len(self._acks)} publishes unacknowledged)")

    def _reject(self, entry: OutboxEntry, code: str, err: BaseException) -> None:
        self._outbox.settle(entry.seq, Delivery.REJECTED, f"{code}: {err}")
        self._telemetry.emit_error("sync", code, "publish", err, seq=entry.seq,
                                   asset=entry.item.asset)

    async def _snapshot_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            await self._publish_snapshots(client)
            raise_if_cancelling()  # aiomqtt's wait_for may have swallowed a cancellation
            # Pacing, not synchronisation: a busy asset gets one retained snapshot per interval.
            await asyncio.sleep(self._config.json_.snapshot_interval)

    async def _publish_snapshots(self, client: aiomqtt.Client) -> None:
        dirty, self._dirty = self._dirty, set()
        for asset in sorted(dirty):
            state = self._twin.asset_state(asset)
            self.desired.reported(asset, state)
            pending = self.desired.pending(asset)
            if state or pending:
                message = self.encoder.snapshot(asset, self._twin.asset_version(asset), state,
                                                pending)
                await self._publish(client, message, "twin")

    async def _publish(
        self, client: aiomqtt.Client, message: MqttMessage, kind: str,
        timeout_s: float = _PUBACK_TIMEOUT_S,
    ) -> None:
        await client.publish(message.topic, message.payload, qos=message.qos,
                             retain=message.retain, timeout=timeout_s)
        self._published.labels(kind).inc()


@contextlib.asynccontextmanager
async def _connected(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Client]:
    """``async with client``, and a connect that failed leaves no socket behind.

    aiomqtt keeps the socket of an attempt whose CONNACK did not come in time. Once the
    link heals, that attempt would still finish connecting, as this gateway's client id
    and with its Will, beside the session that follows (the broker then takes one over),
    and the client would live on until then.
    """
    entered = False
    try:
        async with client:
            entered = True
            yield client
    finally:
        if not entered:
            # aiomqtt has no way to abandon a connect; paho's own close also makes aiomqtt
            # stop watching the socket (its socket-close callback).
            client._client._sock_close()


def _free_dropped_client() -> None:
    """Free a dropped client now, with every message it still held in flight.

    aiomqtt's client and paho's point at each other, and the frames of a lost session hold
    the error that ended it: cycles, which Python frees only in a full collection, minutes
    later, after new objects settled between their holes. In the HIL bench each blackholed
    broker link left ~0.1 MB on the heap and ~0.3 MB of RSS that way. The daemon freezes its
    start-up objects, so this pass walks only what came since (a millisecond or two).
    """
    started = time.perf_counter()
    found = gc.collect()
    log.debug("Dropped broker client freed", objects=found,
              ms=round((time.perf_counter() - started) * 1000, 1))


def _kind(entry: OutboxEntry) -> str:
    """The ``kind`` label of the published counter."""
    item = entry.item
    return "reported" if isinstance(item, Delta) else item.kind.value


def _link_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first connection error in a failed session, or the group itself when a bug is in it."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(reversed(error.exceptions))
        else:
            leaves.append(error)
    for leaf in leaves:
        if isinstance(leaf, HostOffline):
            return leaf
    if leaves and all(isinstance(e, aiomqtt.MqttError | OSError) for e in leaves):
        return leaves[0]
    return group
