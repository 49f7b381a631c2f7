"""A recording MQTT subscriber for tests (paho, in its own network thread)."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho


@dataclass(frozen=True)
class Received:
    """One message as the subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


class Recorder:
    """Subscribes to topics and keeps every message, in arrival order."""

    def __init__(self, port: int, *topics: str, host: str = "127.0.0.1",
                 client_id: str | None = None, tls: ssl.SSLContext | None = None,
                 login: tuple[str, str] | None = None) -> None:
        """Subscribe to ``topics``; reconnects on its own after a broker restart.

        With ``client_id`` the session is persistent: what is published while this
        subscriber is away (a broker restart) is queued for it and arrives on reconnect.
        With ``tls`` it connects over TLS with that client context; ``login`` is a broker
        username and password.
        """
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        if client_id is None:
            self._client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        else:
            self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                       clean_session=False)
        if tls is not None:
            self._client.tls_set_context(tls)
        if login is not None:
            self._client.username_pw_set(*login)
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client.on_connect = lambda c, *_a: c.subscribe([(t, 1) for t in topics])
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("test subscriber could not subscribe")

    def _on_message(self, _client: Any, _userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain), msg.qos))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Received], bool], timeout_s: float = 10.0) -> Received:
        """The first message (already received or arriving) that matches ``predicate``."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._cond:
            while True:
                for msg in self.messages[seen:]:
                    if predicate(msg):
                        return msg
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise TimeoutError(f"no matching message within {timeout_s}s; saw {topics}")
                self._cond.wait(left)

    async def await_for(
        self, predicate: Callable[[Received], bool], timeout_s: float = 10.0
    ) -> Received:
        """``wait_for`` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout_s)

    def on(self, topic_suffix: str) -> list[Received]:
        """Messages whose topic ends with ``topic_suffix``."""
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()


def publish_once(port: int, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
    """Publish one QoS 1 message as an outside client (a host, an operator) and wait for it."""
    publish_many(port, topic, [payload], retain=retain)


def publish_many(port: int, topic: str, payloads: Sequence[bytes | str], *,
                 retain: bool = False) -> None:
    """Publish QoS 1 messages in order from one outside client, and wait until all are sent."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        sent = [client.publish(topic, payload, qos=1, retain=retain) for payload in payloads]
        for info in sent:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
