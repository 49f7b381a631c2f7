"""Twin state: value, time, quality and version of every point; deadband; deltas; snapshots."""

from edgetwin.twin.store import TwinStore

__all__ = ["TwinStore"]
