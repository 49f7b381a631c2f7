"""The one exception a waveform raises when it cannot yield features."""

from __future__ import annotations

from edgetwin.core.errors import EdgetwinError


class FeatureError(EdgetwinError):
    """A waveform that cannot yield features: wrong shape, too short, NaN, flat, absurd range.

    The analytics stage counts it under ``code`` (a stable label for
    ``edgetwin_errors_total{error_code=...}``), logs it rate-limited and skips the waveform;
    the feature points keep their last value until the next good waveform.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
