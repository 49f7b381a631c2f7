"""The local twin: last reported value, time, quality and version of every point.

Invariants:
- a point's state changes only when its value moves by more than its deadband, its quality
  changes, or it goes stale; every change gets a new version from one gateway-wide counter;
- versions only grow, across restarts and crashes (``ReservedCounter``);
- an asset's version is the version of its latest point change;
- the snapshot file is replaced atomically: after a crash it holds an older, whole state.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from edgetwin.core.counter import ReservedCounter, write_atomically
from edgetwin.core.errors import StoreError
from edgetwin.core.types import Delta, PointSpec, PointState, Quality, Sample, asset_of

log = structlog.get_logger("edgetwin.twin")

SNAPSHOT_FORMAT = 1
_LIVE = (Quality.GOOD, Quality.UNCERTAIN)


def _changed(old: PointState, new: Sample, deadband: float) -> bool:
    if old.quality is not new.quality:
        return True
    a, b = old.value, new.value
    if isinstance(a, int | float) and isinstance(b, int | float) and not (
        isinstance(a, bool) or isinstance(b, bool)
    ):
        return abs(b - a) > deadband if deadband > 0 else a != b
    return type(a) is not type(b) or bool(a != b)


class TwinStore:
    """The twin state of every configured point, with deadband and staleness."""

    def __init__(self, specs: Mapping[str, PointSpec], state_dir: Path) -> None:
        """Open the twin in ``state_dir``, restoring the last snapshot if there is one."""
        self._specs = dict(specs)
        self._state_dir = state_dir
        self._snapshot_path = state_dir / "twin.json"
        self._points: dict[str, PointState] = {}
        self._asset_versions: dict[str, int] = {}
        self._seen_ns: dict[str, int] = {}  # last GOOD/UNCERTAIN read, drives staleness
        self._dirty = False
        self.unknown_points = 0
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            restored_max = self._restore()
            self._versions = ReservedCounter(state_dir / "twin.version", floor=restored_max)
        except OSError as err:
            msg = f"twin state in {state_dir} cannot be opened: {err}"
            raise StoreError(msg) from err

    # -- TwinView --------------------------------------------------------------------------

    def assets(self) -> Iterable[str]:
        """Every asset with at least one point in the twin."""
        return sorted(self._asset_versions)

    def asset_version(self, asset: str) -> int:
        """The asset's current version (0 when it never changed)."""
        return self._asset_versions.get(asset, 0)

    def asset_state(self, asset: str) -> dict[str, PointState]:
        """Current state of every point of the asset, by point name within the asset."""
        prefix = asset + "/"
        return {
            pid[len(prefix):]: state
            for pid, state in self._points.items()
            if pid.startswith(prefix)
        }

    def get(self, point: str) -> PointState | None:
        """Current state of one point."""
        return self._points.get(point)

    def qualities(self) -> dict[str, int]:
        """How many points have each quality, for status."""
        counts = {q.value: 0 for q in Quality}
        for state in self._points.values():
            counts[state.quality.value] += 1
        return counts

    def __len__(self) -> int:
        return len(self._points)

    # -- updates ---------------------------------------------------------------------------

    def update_specs(self, specs: Mapping[str, PointSpec]) -> None:
        """Take new point specs after a reload; points no longer configured are dropped."""
        self._specs = dict(specs)
        for gone in [p for p in self._points if p not in self._specs]:
            del self._points[gone]
            self._seen_ns.pop(gone, None)
            self._dirty = True
        live_assets = {asset_of(p) for p in self._points}
        for asset in [a for a in self._asset_versions if a not in live_assets]:
            del self._asset_versions[asset]

    def apply(self, batch: Sequence[Sample]) -> list[Delta]:
        """Fold one batch of samples into the twin; return one delta per asset that changed."""
        changes: dict[str, dict[str, PointState]] = {}
        specs, points, seen = self._specs, self._points, self._seen_ns
        for sample in batch:
            spec = specs.get(sample.point)
            if spec is None:
                self.unknown_points += 1
                continue
            if sample.quality in _LIVE:
                seen[sample.point] = sample.ts_ns
            old = points.get(sample.point)
            if old is not None and not _changed(old, sample, spec.deadband):
                continue
            value = None if sample.quality is Quality.BAD else sample.value
            state = PointState(value, sample.ts_ns, sample.quality, self._versions.next())
            points[sample.point] = state
            asset, _, name = sample.point.partition("/")
            changes.setdefault(asset, {})[name] = state
        return self._deltas(changes)

    def sweep_stale(self, now_ns: int | None = None) -> list[Delta]:
        """Mark points STALE whose last good read is older than their ``stale_after``."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        changes: dict[str, dict[str, PointState]] = {}
        for pid, state in self._points.items():
            spec = self._specs.get(pid)
            if spec is None or spec.stale_after_s is None or state.quality not in _LIVE:
                continue
            last = self._seen_ns.get(pid, state.ts_ns)
            if now_ns - last > spec.stale_after_s * 1e9:
                stale = PointState(state.value, now_ns, Quality.STALE, self._versions.next())
                self._points[pid] = stale
                asset, _, name = pid.partition("/")
                changes.setdefault(asset, {})[name] = stale
        return self._deltas(changes)

    def _deltas(self, changes: dict[str, dict[str, PointState]]) -> list[Delta]:
        if not changes:
            return []
        self._dirty = True
        deltas = []
        for asset, states in changes.items():
            version = max(s.version for s in states.values())
            self._asset_versions[asset] = version
            ts_ns = max(s.ts_ns for s in states.values())
            deltas.append(Delta(asset, version, ts_ns, states))
        return deltas

    # -- persistence -----------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Whether the twin changed since the last snapshot."""
        return self._dirty

    def save(self) -> None:
        """Write the snapshot atomically (temp file, fsync, rename)."""
        doc = {
            "format": SNAPSHOT_FORMAT,
            "saved_ns": time.time_ns(),
            "assets": self._asset_versions,
            "points": {
                pid: {"v": _jsonable(s.value), "ts_ns": s.ts_ns, "q": s.quality.value,
                      "ver": s.version}
                for pid, s in self._points.items()
            },
        }
        try:
            write_atomically(self._snapshot_path, json.dumps(doc, separators=(",", ":")).encode())
        except OSError as err:
            msg = f"twin snapshot {self._snapshot_path} cannot be written: {err}"
            raise StoreError(msg) from err
        self._dirty = False

    def _restore(self) -> int:
        """Load the snapshot; returns the highest version in it (0 without one)."""
        try:
            raw = self._snapshot_path.read_bytes()
        except FileNotFoundError:
            return 0
        try:
            doc = json.loads(raw)
            if doc.get("format") != SNAPSHOT_FORMAT:
                msg = f"unknown snapshot format {doc.get('format')!r}"
                raise ValueError(msg)
            points = {
                pid: PointState(p["v"], int(p["ts_ns"]), Quality(p["q"]), int(p["ver"]))
                for pid, p in doc["points"].items()
            }
            assets = {str(a): int(v) for a, v in doc["assets"].items()}
        except (ValueError, KeyError, TypeError) as err:
            # Keep the unreadable file for inspection and start empty; versions still grow
            # because the counter file is separate.
            broken = self._snapshot_path.with_suffix(f".broken-{time.time_ns()}")
            self._snapshot_path.replace(broken)
            log.error("Twin snapshot unreadable; starting empty", path=str(broken),
                      error=str(err))
            return 0
        self._points = {pid: s for pid, s in points.items() if pid in self._specs}
        self._asset_versions = {
            a: v for a, v in assets.items() if any(asset_of(p) == a for p in self._points)
        }
        log.info("Twin restored", points=len(self._points), path=str(self._snapshot_path))
        return max([s.version for s in points.values()] + list(assets.values()) + [0])


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
