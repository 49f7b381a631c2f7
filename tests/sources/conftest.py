"""Fixtures every driver's tests share."""

import pytest

from tests.helpers.recording import RecordingHealth


@pytest.fixture
def health() -> RecordingHealth:
    """A SourceHealth that keeps every call."""
    return RecordingHealth()
