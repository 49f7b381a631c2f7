"""Exponential backoff with full jitter, for reconnects and restarts. Stdlib only."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial_s`` up to ``max_s``, each drawn with jitter.

    Jitter (a delay drawn from [delay/2, delay]) keeps a fleet of gateways, or the sources
    of one gateway, from reconnecting in lock-step after a shared outage.
    """

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, factor: float = 2.0) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        ceiling = min(self.max_s, self.initial_s * self.factor**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)  # jitter, not cryptography

    def reset(self) -> None:
        """Start again from ``initial_s`` after a success."""
        self.attempt = 0
