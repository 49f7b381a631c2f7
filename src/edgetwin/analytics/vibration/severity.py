"""Velocity severity: acceleration to velocity in the frequency domain, and ISO 10816-3 zones.

Zone boundaries (FACTS 5.1) are broadband velocity RMS in mm/s on bearing housings, measured
over 10-1000 Hz for machines above 600 r/min. Groups 1 and 2 are those of ISO 10816-3:2009
Annex A (ISO 20816-3:2022 is believed to keep the housing values). Groups 3 and 4 (pumps with
a separate or an integrated driver) existed only in the 1998 edition, which gave them the
values of groups 1 and 2; 2009 moved pumps to ISO 10816-7. All figures are from background
knowledge of the paywalled text, marked [unconfirmed] in FACTS: check them against the
purchased standard before they gate anything.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from edgetwin.analytics.vibration.waveform import Array
from edgetwin.config.model import Foundation

STANDARD_GRAVITY_M_S2 = 9.80665
VELOCITY_BAND_HZ = (10.0, 1000.0)  # ISO 10816-3 for > 600 r/min (2-1000 Hz below that)

_GROUP_1 = {Foundation.RIGID: (2.3, 4.5, 7.1), Foundation.FLEXIBLE: (3.5, 7.1, 11.0)}
_GROUP_2 = {Foundation.RIGID: (1.4, 2.8, 4.5), Foundation.FLEXIBLE: (2.3, 4.5, 7.1)}
# (A/B, B/C, C/D) in mm/s RMS by machine group and foundation.
ZONE_BOUNDARIES_MM_S: dict[int, dict[Foundation, tuple[float, float, float]]] = {
    1: _GROUP_1, 2: _GROUP_2, 3: _GROUP_1, 4: _GROUP_2,
}
ZONE_LETTERS = "ABCD"  # zone 1 is A (newly commissioned) ... 4 is D (damage)


def iso_zone(velocity_rms_mm_s: float, group: int, foundation: Foundation) -> int:
    """Zone 1-4 (A-D) of a broadband velocity RMS for a machine group and foundation.

    A value equal to a boundary belongs to the lower zone: a reading of exactly 2.8 mm/s on a
    rigid group-2 machine is still B.
    """
    boundaries = ZONE_BOUNDARIES_MM_S[group][foundation]
    return 1 + bisect.bisect_left(boundaries, velocity_rms_mm_s)


def velocity_weights(freq_hz: Array, accel_to_m_s2: float) -> Array:
    """Per-bin factor turning acceleration power into velocity power in (mm/s)**2.

    ``v(f) = a(f) / (j 2 pi f)`` (FACTS 5.2), so power divides by ``(2 pi f)**2``; the DC bin,
    where that has no meaning, gets 0. Callers sum only the bins inside their band.
    """
    weights = np.zeros_like(freq_hz)
    to_mm_s = accel_to_m_s2 * 1000.0
    weights[1:] = np.square(to_mm_s / (2.0 * math.pi * freq_hz[1:]))
    return weights
