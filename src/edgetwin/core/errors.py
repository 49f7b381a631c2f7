"""The few exception types edgetwin raises on purpose, each translated once at a library edge."""


class EdgetwinError(Exception):
    """Base for every error edgetwin raises on purpose."""


class ConfigError(EdgetwinError):
    """Bad configuration; raised only while loading, before anything connects."""


class SourceUnavailable(EdgetwinError):
    """Device or bus did not answer; the driver retries with backoff."""


class DecodeError(EdgetwinError):
    """Device answered with something unusable (exception code, wrong length, NaN)."""


class DeliveryError(EdgetwinError):
    """Broker or network failure; the outbox keeps the entries."""


class StoreError(EdgetwinError):
    """Local storage failure (state snapshot, outbox); health turns red."""
