"""Interop with independent implementations: run their decoders on what the gateway sent.

pysparkplug pins paho-mqtt<2, which edgetwin cannot share, so it lives in ``.venv-interop``
(``make interop-venv``; ``make test`` builds it) and decodes in a child process:
``hil/interop/decode_sparkplug.py`` reads the recording as JSON lines and answers with
what pysparkplug made of every message.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.mqtt import Received

REPO = Path(__file__).resolve().parents[2]
DECODER = REPO / "hil" / "interop" / "decode_sparkplug.py"


def write_recording(messages: Iterable[Received], path: Path) -> None:
    """The messages as the decoder reads them: one JSON line each, payload in base64."""
    with path.open("w") as out:
        for message in messages:
            out.write(json.dumps({
                "topic": message.topic,
                "payload_b64": base64.b64encode(message.payload).decode(),
                "qos": message.qos,
                "retain": message.retain,
            }) + "\n")


def decode_with_pysparkplug(python: Path, recording: Path) -> list[dict[str, Any]]:
    """Run the independent decoder on a recording; one dict per message, in order."""
    done = subprocess.run(
        [str(python), str(DECODER), str(recording)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"the pysparkplug decoder failed ({done.returncode}):\n{done.stderr}")
    decoded = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    recording.with_suffix(".decoded.jsonl").write_text(done.stdout)  # kept for a failed run
    return decoded
