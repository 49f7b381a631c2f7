"""Live view of a gateway's JSON twin as the broker sees it (used by `make demo`).

It talks only to the broker, so it can watch any gateway that speaks the JSON twin scheme.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho


class TwinView:
    """The twin rebuilt from retained snapshots and reported deltas."""

    def __init__(self) -> None:
        self.points: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.deltas = 0
        self.lock = threading.Lock()

    def on_message(self, base: str, topic: str, payload: bytes) -> None:
        """Fold one message into the view."""
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        rest = topic[len(base) + 1:]
        with self.lock:
            if rest == "status":
                self.status = doc
                return
            asset, _, kind = rest.partition("/")
            if kind in ("reported", "twin") and isinstance(doc.get("state"), dict):
                self.deltas += kind == "reported"
                for name, point in doc["state"].items():
                    self.points[(asset, name)] = {**self.points.get((asset, name), {}), **point}

    def render(self) -> str:
        """The view as a text table."""
        with self.lock:
            online = self.status.get("online")
            head = f"gateway {'ONLINE' if online else 'offline' if online is False else '?'}" \
                   f"   deltas received: {self.deltas}   (Ctrl-C stops the demo)"
            rows = [f"{'ASSET/POINT':<26} {'VALUE':>14} {'QUALITY':<9} {'AGE':>6}"]
            now_ms = time.time() * 1000
            for (asset, name), p in sorted(self.points.items()):
                value = p.get("v")
                shown = f"{value:.3f}" if isinstance(value, float) else str(value)
                age = f"{(now_ms - p.get('ts', now_ms)) / 1000:.1f}s"
                rows.append(f"{asset + '/' + name:<26} {shown:>14} {p.get('q', '?'):<9} {age:>6}")
        return "\n".join([head, "", *rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--base", required=True, help="e.g. edgetwin/v1/gw-demo")
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()

    view = TwinView()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe(
        [(f"{args.base}/status", 1), (f"{args.base}/+/reported", 1), (f"{args.base}/+/twin", 1)]
    )
    client.on_message = lambda _c, _u, m: view.on_message(args.base, m.topic, m.payload)
    client.connect(args.host, args.port)
    client.loop_start()
    tty = sys.stdout.isatty()
    try:
        while True:
            time.sleep(args.interval)  # screen refresh period
            frame = view.render()
            print("\033[H\033[2J" + frame if tty else frame + "\n", flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
