"""Northbound sync: the MQTT session and its encoders."""

from edgetwin.sync.message import MqttMessage
from edgetwin.sync.session import MqttSession

__all__ = ["MqttMessage", "MqttSession"]
