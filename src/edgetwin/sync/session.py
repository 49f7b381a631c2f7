"""The MQTT session: connects, publishes the outbox in order, reconnects, drains on stop.

Invariants:
- an outbox entry is settled DELIVERED only when the broker's PUBACK for that very message
  arrived; on a lost connection every unsettled entry is rewound and sent again, in ``seq``
  order, so delivery is at least once and a consumer drops duplicates by ``seq``;
- at most ``sync.max_inflight`` publishes are unacknowledged at any time (paho stops
  delivering for good past ~65k queued QoS 1 messages);
- the retained status reads online only while a session is up: the offline form is the
  last will, and is published explicitly before a clean disconnect;
- after every (re)connect each asset's retained snapshot is published again, so the broker
  holds the whole twin even when deltas were dropped by a full buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import structlog

from edgetwin.config.model import MqttProtocol, Scheme, SyncConfig
from edgetwin.core.backoff import Backoff
from edgetwin.core.ports import Outbox, TwinView
from edgetwin.core.tasks import cancel_and_wait, raise_if_cancelling
from edgetwin.core.types import Delivery, Delta, OutboxEntry
from edgetwin.sync.jsontwin import JsonTwinEncoder
from edgetwin.sync.message import MqttMessage
from edgetwin.telemetry import Telemetry

log = structlog.get_logger("edgetwin.sync")

_PUBACK_TIMEOUT_S = 10.0
_GOODBYE_S = 1.0  # final snapshots and the offline status, after the drain
_FATAL_RC = {paho.MQTT_ERR_PAYLOAD_SIZE, paho.MQTT_ERR_INVAL}  # this message can never go


class MqttSession:
    """One broker session at a time for the gateway, for as long as the daemon runs."""

    def __init__(
        self,
        config: SyncConfig,
        gateway_id: str,
        outbox: Outbox,
        twin: TwinView,
        telemetry: Telemetry,
    ) -> None:
        self._config = config
        self._mqtt = config.mqtt
        self._outbox = outbox
        self._twin = twin
        self._telemetry = telemetry
        self._client_id = config.mqtt.client_id or gateway_id
        self.encoder = JsonTwinEncoder(config.json_.prefix, gateway_id)
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self._settled = asyncio.Event()
        self._inflight = asyncio.Semaphore(config.max_inflight)
        self._deliveries: set[asyncio.Task[None]] = set()
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
        if Scheme.SPARKPLUG in config.schemes:
            telemetry.emit_error(
                "sync", "scheme_unavailable", "start",
                "the sparkplug scheme is not implemented yet; publishing the json scheme only",
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

    async def run(self, stop: asyncio.Event, drain_s: float = 3.0) -> None:
        """Keep a session up until ``stop`` is set, then deliver what is queued within ``drain_s``.

        Returns after the offline status went out (when connected) and the session closed.
        """
        backoff = Backoff(initial_s=0.5, max_s=30.0)
        while not stop.is_set():
            try:
                password = self._read_password()
                async with self._client(password) as client:
                    await self._on_connect(client)
                    backoff.reset()
                    await self._pump(client, stop, drain_s)
                    async with asyncio.timeout(_GOODBYE_S):
                        await self._publish_snapshots(client)
                        await self._publish(client, self._status(online=False), "status")
                    self._set_connected(False, None)
                    log.info("Broker session closed", broker=self.broker)
                    return
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
            delay = backoff.next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        abandoned = self._outbox.depth()
        if abandoned:
            log.warning("Stopped while disconnected; entries left in the outbox",
                        abandoned=abandoned, broker=self.broker)

    def _read_password(self) -> str | None:
        path = self._mqtt.password_file
        if path is None:
            return None
        return path.read_text(encoding="utf-8").rstrip("\r\n")

    def _client(self, password: str | None) -> aiomqtt.Client:
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
        will = self._status(online=False)
        return aiomqtt.Client(
            self._mqtt.host,
            self._mqtt.port,
            identifier=self._client_id,
            username=self._mqtt.username,
            password=password,
            keepalive=self._mqtt.keepalive,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else True,
            will=aiomqtt.Will(will.topic, will.payload, will.qos, will.retain),
            tls_params=tls_params,
            timeout=_PUBACK_TIMEOUT_S,
            max_inflight_messages=self._config.max_inflight,
        )

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
        await self._publish(client, self._status(online=True), "status")
        self._dirty.update(self._twin.assets())
        await self._publish_snapshots(client)

    async def _pump(self, client: aiomqtt.Client, stop: asyncio.Event, drain_s: float) -> None:
        """Publish until ``stop``; then wait up to ``drain_s`` for the outbox to empty.

        Raises:
            aiomqtt.MqttError: the link was lost (the first error of the session's tasks).
        """
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._watch_link(client), name="sync.link"),
                    group.create_task(self._publish_outbox(client, group), name="sync.outbox"),
                    group.create_task(self._snapshot_loop(client), name="sync.snapshots"),
                ]
                await stop.wait()
                await self._drain(drain_s)
                for task in [*tasks, *self._deliveries]:
                    await cancel_and_wait(task)
        except BaseExceptionGroup as group_error:
            raise _link_error(group_error) from None
        finally:
            self._outbox.rewind()  # whatever is still claimed was not acknowledged

    async def _drain(self, drain_s: float) -> None:
        deadline = time.monotonic() + drain_s
        while self._outbox.depth() and (left := deadline - time.monotonic()) > 0:
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), left)
        if self._outbox.depth():
            log.warning("Drain time is up; entries stay queued", abandoned=self._outbox.depth(),
                        drain_s=drain_s)

    async def _watch_link(self, client: aiomqtt.Client) -> None:
        # Iterating messages is aiomqtt's one public way to learn of a lost connection:
        # it raises MqttError when the link drops. Inbound commands arrive here later.
        async for _message in client.messages:
            pass

    async def _publish_outbox(self, client: aiomqtt.Client, group: asyncio.TaskGroup) -> None:
        while True:
            raise_if_cancelling()  # aiomqtt's wait_for may have swallowed a cancellation
            for entry in await self._outbox.claim(self._config.max_batch):
                try:
                    message = self.encoder.entry(entry)
                except (ValueError, TypeError) as err:
                    self._reject(entry, "encode_failed", err)
                    continue
                await self._inflight.acquire()
                task = group.create_task(self._deliver(client, entry, message))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)

    async def _deliver(
        self, client: aiomqtt.Client, entry: OutboxEntry, message: MqttMessage
    ) -> None:
        try:
            await self._publish(client, message, _kind(entry))
        except aiomqtt.MqttCodeError as err:
            if err.rc not in _FATAL_RC:
                raise
            self._reject(entry, "publish_refused", err)
        else:
            self._outbox.settle(entry.seq, Delivery.DELIVERED)
            if isinstance(entry.item, Delta):
                self._dirty.add(entry.item.asset)
                self._dirty_event.set()
        finally:
            self._inflight.release()
            self._settled.set()

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
            if state:
                message = self.encoder.snapshot(asset, self._twin.asset_version(asset), state)
                await self._publish(client, message, "twin")

    async def _publish(
        self, client: aiomqtt.Client, message: MqttMessage, kind: str,
        timeout_s: float = _PUBACK_TIMEOUT_S,
    ) -> None:
        await client.publish(message.topic, message.payload, qos=message.qos,
                             retain=message.retain, timeout=timeout_s)
        self._published.labels(kind).inc()


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
    if leaves and all(isinstance(e, aiomqtt.MqttError | OSError) for e in leaves):
        return leaves[0]
    return group
