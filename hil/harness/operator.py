"""The scripted operator: signs commands with the gateway's own tool and publishes them.

Besides valid commands it sends the ones a safety engineer worries about: a forged
signature, no signature, an expired command, a key the gateway does not know, and a flood
of unsigned commands.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hil.harness.profile import Profile

OPERATOR_KEY = "operator"
INTRUDER_KEY = "intruder"  # a key pair the gateway was never told about


async def _run(argv: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {process.returncode}: {err.decode()}")
    return out.decode()


async def make_keys(profile: Profile, keys: str) -> None:
    """The operator's key (known to the gateway) and an intruder's (unknown)."""
    for key_id in (OPERATOR_KEY, INTRUDER_KEY):
        await _run(profile.argv(profile.keygen, {"keys": keys, "key_id": key_id}))


async def command_payload(profile: Profile, keys: str, point: str, value: Any,
                          signature: str) -> dict[str, Any]:
    """A cmd payload for ``point := value``, signed (or mis-signed) as ``signature`` says."""
    key_id = INTRUDER_KEY if signature == "unknown_key" else OPERATOR_KEY
    ttl = 0.001 if signature == "expired" else 30.0
    text = await _run(profile.argv(profile.sign, {
        "keys": keys, "key_id": key_id, "point": point, "value": json.dumps(value),
        "ttl": ttl}))
    payload: dict[str, Any] = json.loads(text)
    if signature == "forged":
        # Signed for one value, sent with another: what a tampering relay would do.
        signed = payload["value"]
        payload["value"] = (not signed) if isinstance(signed, bool) else signed + 1
    elif signature == "unsigned":
        payload.pop("sig", None)
        payload.pop("key_id", None)
    return payload


def flood_payloads(point: str, value: Any, count: int) -> list[dict[str, Any]]:
    """``count`` unsigned commands with fresh ids: a cloud application gone wrong, or worse."""
    batch, now_ms = uuid.uuid4().hex[:8], int(time.time() * 1000)
    return [{"id": f"flood-{batch}-{i}", "point": point, "value": value, "issued_at": now_ms}
            for i in range(count)]


def publish(port: int, topic: str, *payloads: dict[str, Any], timeout_s: float = 10.0) -> None:
    """Publish QoS 1 messages straight to the broker, in order, and wait for every PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="hil-operator")
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        sent = [client.publish(topic, json.dumps(payload), qos=1) for payload in payloads]
        deadline = time.monotonic() + timeout_s + len(payloads) / 1000
        for info in sent:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()
