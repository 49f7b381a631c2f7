"""QoS 1 publishes waiting for their PUBACK, sent straight through paho.

aiomqtt's ``publish`` awaits each PUBACK with an Event and a timeout task of its own; with a
delivery task per publish besides, one unacknowledged publish cost about 8 KB, and a link
that swallows PUBACKs for a while fills ``sync.max_inflight`` of them (the HIL soak saw RSS
steps where such a backlog left new memory behind). Here a publish in flight is one small
record: paho sends it, aiomqtt's PUBACK hook calls it back (that hook sets whatever
aiomqtt's ``_pending_publishes`` holds for the message id), and the session's watch finds
the ones whose PUBACK is overdue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import structlog

from edgetwin.sync.message import MqttMessage

log = structlog.get_logger("edgetwin.sync")


class _Unacked:
    """One publish awaiting its PUBACK; ``set`` is what aiomqtt calls when it comes."""

    __slots__ = ("mid", "on_ack", "owner", "sent")

    def __init__(self, owner: InFlight, mid: int, on_ack: Callable[[], None]) -> None:
        self.owner = owner
        self.mid = mid
        self.on_ack = on_ack
        self.sent = time.monotonic()

    def set(self) -> None:
        self.owner.acknowledged(self)


class InFlight:
    """At most ``limit`` QoS 1 publishes unacknowledged; each settled by its own PUBACK."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._waiting: dict[int, _Unacked] = {}  # by message id, oldest first

    def __len__(self) -> int:
        return len(self._waiting)

    async def send(self, client: aiomqtt.Client, message: MqttMessage,
                   on_ack: Callable[[], None]) -> None:
        """Publish once a slot is free; ``on_ack`` runs when the broker acknowledged it.

        Raises:
            aiomqtt.MqttCodeError: paho refused the message (``rc`` says why); no slot held.
        """
        await self._slots.acquire()
        try:
            info = client._client.publish(message.topic, message.payload, message.qos,
                                          message.retain)
        except BaseException:
            self._slots.release()
            raise
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self._slots.release()
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        record = _Unacked(self, info.mid, on_ack)
        if info.is_published():  # QoS 0: nothing to wait for
            self._waiting[info.mid] = record
            self.acknowledged(record)
            return
        # No await since the publish: its PUBACK cannot have been read yet.
        self._waiting[info.mid] = record
        pending: dict[int, Any] = client._pending_publishes
        pending[info.mid] = record

    def acknowledged(self, record: _Unacked) -> None:
        """A PUBACK came (called from aiomqtt's paho callback, on the event loop)."""
        if self._waiting.get(record.mid) is not record:
            return  # abandoned with its session, or a stale id
        del self._waiting[record.mid]
        self._slots.release()
        try:
            record.on_ack()
        except Exception:  # inside paho's read loop: log it, never break the connection
            log.exception("Acknowledged publish not settled", mid=record.mid)

    def overdue_s(self) -> float:
        """How long the oldest publish has waited for its PUBACK (0 when none waits)."""
        oldest = next(iter(self._waiting.values()), None)
        return 0.0 if oldest is None else time.monotonic() - oldest.sent

    def abandon(self) -> int:
        """The session is over: forget what waits (the outbox rewinds it); free the slots."""
        count = len(self._waiting)
        self._waiting.clear()
        for _ in range(count):
            self._slots.release()
        return count
