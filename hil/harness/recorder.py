"""The broker-side witness: records every MQTT message of a run, as a cloud consumer would get it.

It is a plain paho client with a persistent session (clean_session false, QoS 1) on a
broker with persistence, so a broker restart loses nothing it had accepted for us. It runs
in paho's own thread and appends one JSON line per message to ``messages.jsonl``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class Recorder:
    """Subscribes to ``#`` and writes what arrives; tracks the last counter value it saw.

    Args:
        counter_topic_suffix: topic ending of the JSON deltas that carry the counter point,
            with ``counter_name`` the point's name inside ``state``; the runner waits on
            ``counter_seen`` to know the gateway has caught up.
    """

    def __init__(self, port: int, out: Path, *, counter_topic: str, counter_name: str) -> None:
        self.port = port
        self._file: IO[str] = out.open("w", buffering=1 << 16)
        self._lock = threading.Lock()
        self.counter_topic = counter_topic
        self.counter_name = counter_name
        self.counter_values: set[int] = set()  # every counter value received (live or replayed)
        self.messages = 0
        self.last_message_t = 0.0
        self.connected = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="hil-recorder",
                                   clean_session=False)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)  # paho's delays are whole seconds

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and start paho's network thread; wait for the first CONNACK."""
        self._client.connect_async("127.0.0.1", self.port, keepalive=10)
        self._client.loop_start()
        if not self.connected.wait(timeout_s):
            raise TimeoutError("the recorder could not connect to the broker")

    def stop(self) -> None:
        """Disconnect, stop the thread and close the file."""
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self._file.close()

    def flush(self) -> None:
        """Write buffered lines to the file (before a judge reads it)."""
        with self._lock:
            self._file.flush()

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any,
                    reason: Any, _properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe("#", qos=1)
            self.connected.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any,
                       _reason: Any, _properties: Any) -> None:
        self.connected.clear()

    def _on_message(self, _client: paho.Client, _userdata: Any,
                    message: paho.MQTTMessage) -> None:
        now = time.time()
        line = json.dumps({"t": now, "topic": message.topic,
                           "payload_b64": base64.b64encode(message.payload).decode(),
                           "qos": message.qos, "retain": bool(message.retain)})
        if message.topic == self.counter_topic:
            self._note_counter(message.payload)
        with self._lock:
            self._file.write(line + "\n")
            self.messages += 1
            self.last_message_t = now

    def _note_counter(self, payload: bytes | bytearray) -> None:
        try:
            point = json.loads(payload)["state"].get(self.counter_name)
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # the judges count malformed messages; the live view just skips them
        if isinstance(point, dict) and isinstance(point.get("v"), int):
            self.counter_values.add(point["v"])
