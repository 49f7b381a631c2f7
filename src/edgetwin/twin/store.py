"""The local twin: last reported value, time, quality and version of every point.

Invariants:
- a point's state changes only when its value moves by more than its deadband, its quality
  changes, or it goes stale; every change gets a new version from one gateway-wide counter;
- versions only grow, across restarts and crashes (``ReservedCounter``);
- an asset's version is the version of its latest point change;
- the twin keeps no file of its own: every change leaves as a delta, and the outbox stores
  each point's latest state in the same transaction as the delta, so what is restored
  after a crash is exactly what was committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import structlog

from edgetwin.core.counter import ReservedCounter
from edgetwin.core.errors import StoreError
from edgetwin.core.types import Delta, PointSpec, PointState, Quality, Sample, asset_of

log = structlog.get_logger("edgetwin.twin")

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

    def __init__(
        self,
        specs: Mapping[str, PointSpec],
        state_dir: Path,
        restored: Mapping[str, PointState] | None = None,
    ) -> None:
        """Open the twin's version counter in ``state_dir``, starting from ``restored`` state."""
        self._specs = dict(specs)
        # A restored value is the last known one, not a fresh read: STALE until the source
        # reads the point again, so nothing (an interlock, a max_step) trusts it as live.
        self._points = {
            p: PointState(s.value, s.ts_ns, Quality.STALE if s.quality in _LIVE else s.quality,
                          s.version)
            for p, s in (restored or {}).items() if p in self._specs
        }
        self._asset_versions: dict[str, int] = {}
        for pid, state in self._points.items():
            asset = asset_of(pid)
            self._asset_versions[asset] = max(self._asset_versions.get(asset, 0), state.version)
        self._seen_ns: dict[str, int] = {}  # last GOOD/UNCERTAIN read, drives staleness
        self.unknown_points = 0
        restored_max = max((s.version for s in (restored or {}).values()), default=0)
        try:
            self._versions = ReservedCounter(state_dir / "twin.version", floor=restored_max)
        except OSError as err:
            msg = f"twin version counter in {state_dir} cannot be opened: {err}"
            raise StoreError(msg) from err
        if self._points:
            log.info("Twin restored", points=len(self._points))

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

    def spec(self, point: str) -> PointSpec | None:
        """What the twin knows of a configured point (its source, writability, deadband)."""
        return self._specs.get(point)

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
        deltas = []
        for asset, states in changes.items():
            version = max(s.version for s in states.values())
            self._asset_versions[asset] = version
            ts_ns = max(s.ts_ns for s in states.values())
            deltas.append(Delta(asset, version, ts_ns, states))
        return deltas
