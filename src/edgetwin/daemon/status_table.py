"""The human view of ``edgetwin status``: a few aligned tables from the status document."""

from __future__ import annotations

import time
from typing import Any


def _age(since_ns: int | None) -> str:
    if not since_ns:
        return "-"
    seconds = max(0, int((time.time_ns() - since_ns) / 1e9))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def render_status(status: dict[str, Any]) -> str:
    """The status document as text for a terminal."""
    lines = [
        f"edgetwin {status['version']}  gateway {status['gateway']} (group {status['group']})"
        f"  pid {status['pid']}  up {_age(status['started_ns'])}",
        "",
    ]
    rows = []
    for s in status["sources"]:
        q = s.get("qualities", {})
        rows.append([
            s["name"], s["type"], s["state"], _age(s.get("since_ns")), str(s["points"]),
            str(q.get("GOOD", 0)), str(q.get("BAD", 0)), str(q.get("STALE", 0)),
            (s.get("last_error") or "")[:60],
        ])
    lines += _table(["SOURCE", "TYPE", "STATE", "FOR", "POINTS", "GOOD", "BAD", "STALE",
                     "LAST ERROR"], rows)
    broker = status.get("broker") or {}
    state = "connected" if broker.get("connected") else "disconnected"
    since = _age(broker.get("since_ns"))
    lines += ["", f"broker   {broker.get('broker', '-')}  {state} for {since}"
              + (f"  last error: {broker['last_error']}" if broker.get("last_error") else "")]
    lines.append(_outbox_line(status["outbox"]))
    twin = status["twin"]
    q = twin["qualities"]
    lines.append(f"twin     {twin['points']} points: " +
                 ", ".join(f"{n} {k}" for k, n in q.items() if n) if twin["points"] else
                 "twin     empty")
    alarms = status.get("alarms") or []
    lines.append(f"alarms   {len(alarms)} active" if alarms else "alarms   none")
    lines += [f"  {a.get('alarm', '?')}: {a.get('message', '')}" for a in alarms]
    return "\n".join(lines)


def _outbox_line(outbox: dict[str, Any]) -> str:
    line = (f"outbox   {outbox['depth']} queued, {_size(outbox['nbytes'])}"
            f" of {_size(outbox['max_bytes'])}")
    if outbox.get("oldest_age_s") is not None:
        line += f", oldest {outbox['oldest_age_s']:.0f} s"
    if outbox.get("backlog"):
        line += f", backlog {outbox['backlog']} (about {outbox['drain_s']:.0f} s to replay)"
    if outbox.get("degraded"):
        line += f"  DEGRADED: disk {outbox['degraded']}, new data held in memory"
    if outbox.get("dead_letters"):
        line += f", {outbox['dead_letters']} dead-lettered"
    return line
