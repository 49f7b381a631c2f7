"""Store-and-forward queue between the twin and sync."""

from edgetwin.outbox.memory import MemoryOutbox, entry_size

__all__ = ["MemoryOutbox", "entry_size"]
