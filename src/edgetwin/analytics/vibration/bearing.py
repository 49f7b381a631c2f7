"""Rolling-element bearing defect frequencies from the geometry (FACTS 5.5)."""

from __future__ import annotations

import math

from edgetwin.config.model import BearingConfig

DEFECTS = ("bpfo", "bpfi", "bsf", "ftf")


def defect_orders(bearing: BearingConfig) -> dict[str, float]:
    """Defect frequencies per 1 Hz of shaft speed: multiply by the running speed in Hz.

    BSF is the ball spin frequency itself; a ball defect strikes both races once per spin
    revolution, so its envelope line is usually strongest at 2 x BSF (its first harmonic
    here), as in CWRU's "rolling element" column.
    """
    ratio = (bearing.ball_diameter / bearing.pitch_diameter
             * math.cos(math.radians(bearing.contact_angle)))
    return {
        "bpfo": bearing.n_balls / 2 * (1 - ratio),
        "bpfi": bearing.n_balls / 2 * (1 + ratio),
        "bsf": bearing.pitch_diameter / (2 * bearing.ball_diameter) * (1 - ratio**2),
        "ftf": (1 - ratio) / 2,
    }
