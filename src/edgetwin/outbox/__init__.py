"""Store-and-forward: the durable SQLite outbox between the twin and sync."""

from edgetwin.outbox.durable import DurableOutbox, OutboxStats

__all__ = ["DurableOutbox", "OutboxStats"]
