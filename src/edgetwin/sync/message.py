"""An MQTT message as encoders produce it and the session publishes it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """Topic, payload and delivery flags of one publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
