"""The per-entry plan: everything about a ``vibration:`` entry that does not depend on the data.

A plan is built once per entry at startup (window, bin frequencies, velocity weights, band
edges, band-pass gains, bearing orders, the feature names) so that the per-waveform work in
``features.extract`` is only the numeric part. Building it checks the entry against the
waveform's sample rate and reports every problem at once; a plan is immutable and its arrays
are read-only, so one plan may serve several executor threads at the same time.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgetwin.analytics.vibration import bearing, speed
from edgetwin.analytics.vibration.envelope import EnvelopeFilter, envelope_filter
from edgetwin.analytics.vibration.severity import (
    STANDARD_GRAVITY_M_S2,
    VELOCITY_BAND_HZ,
    velocity_weights,
)
from edgetwin.analytics.vibration.spectrum import (
    MAIN_LOBE_HALF_WIDTH,
    WINDOW_DC_BINS,
    IndexArray,
    bin_range,
    power_scale,
    spectral_window,
)
from edgetwin.analytics.vibration.waveform import Array
from edgetwin.config.model import VibrationConfig, VibrationFeature
from edgetwin.core.errors import ConfigError

F = VibrationFeature
HARMONIC_FEATURES = ("shaft_hz", "h1x", "h2x", "h3x", "h2x_h1x", "h3x_h1x")
LINE_HARMONICS = 3  # each bearing defect line is read at 1x, 2x and 3x its frequency
SPEED_TOLERANCE = 0.01  # shaft harmonics searched within +-1 % (or +-1 bin, the wider)
SLIP_TOLERANCE = 0.02  # bearing lines sit 1-2 % off the formula because of slip (FACTS 5.4)
MIN_BAND_BINS = 8  # fewer bins than this in a band measure the window, not the machine
HIGHEST_USABLE = 1 / 2.56  # of the sample rate: anti-alias filters roll off above fs / 2.56

KeyPath = tuple[str | int, ...]


class AccelUnit(enum.Enum):
    """Unit of the acceleration samples (the waveform point's ``unit``)."""

    G = "g"
    M_S2 = "m/s2"

    @property
    def to_m_s2(self) -> float:
        """Factor from this unit to m/s**2."""
        return STANDARD_GRAVITY_M_S2 if self is AccelUnit.G else 1.0


_UNIT_SPELLINGS = {"g": AccelUnit.G, "m/s2": AccelUnit.M_S2, "m/s^2": AccelUnit.M_S2,
                   "m/s²": AccelUnit.M_S2, "m/s/s": AccelUnit.M_S2}


def accel_unit(unit: str | None) -> AccelUnit:
    """The acceleration unit named by a waveform point's ``unit`` (None means g).

    Raises:
        ConfigError: the unit is not an acceleration unit this module knows.
    """
    if unit is None:
        return AccelUnit.G
    try:
        return _UNIT_SPELLINGS[unit.strip()]
    except KeyError:
        raise ConfigError(
            f"waveform unit {unit!r} is not an acceleration unit: use g or m/s2"
        ) from None


@dataclass(frozen=True, slots=True)
class Band:
    """A frequency band whose acceleration RMS is a feature (``band_energy``)."""

    lo_hz: float
    hi_hz: float

    @property
    def name(self) -> str:
        """Feature name, e.g. ``band_10_1000hz`` or ``band_2p5_40hz``."""
        def hz(value: float) -> str:
            return f"{value:g}".replace(".", "p")

        return f"band_{hz(self.lo_hz)}_{hz(self.hi_hz)}hz"


def default_bands(config: VibrationConfig, sample_rate_hz: float) -> tuple[Band, ...]:
    """Bands used while the config has no key for them: shaft orders, bearings, resonance.

    10-1000 Hz (the ISO band, where running-speed faults show), 1 kHz up to the usable
    bandwidth ``fs / 2.56`` (bearing and gear noise), and the envelope band when set.
    """
    bands = [Band(*VELOCITY_BAND_HZ)]
    usable_hz = float(math.floor(sample_rate_hz * HIGHEST_USABLE))
    if usable_hz > VELOCITY_BAND_HZ[1]:
        bands.append(Band(VELOCITY_BAND_HZ[1], usable_hz))
    if config.envelope_band is not None and config.envelope_band[1] < sample_rate_hz / 2:
        bands.append(Band(*config.envelope_band))
    return tuple(dict.fromkeys(bands))


@dataclass(frozen=True, slots=True, eq=False)
class VibrationPlan:
    """Precomputed analysis of one ``vibration:`` entry for one sample rate.

    ``feature_names`` lists, in a fixed order, every feature ``extract`` reports for this
    entry (each as a value or as unavailable): the twin points ``<point>.<name>`` and the
    Sparkplug metrics to declare at birth. ``units`` gives each one's unit (None: a ratio,
    a count or the ISO zone number).
    """

    config: VibrationConfig
    sample_rate_hz: float
    accel_unit: AccelUnit
    feature_names: tuple[str, ...]
    units: Mapping[str, str | None]
    window_samples: int
    hop: int  # Welch segments overlap by half a window
    df_hz: float
    window: Array
    power_scale: Array
    half_width: int
    dc_bins: int
    velocity_bins: tuple[int, int]
    velocity_weights: Array  # (mm/s)**2 per unit power, for every bin
    bands: tuple[Band, ...]
    band_lo: IndexArray
    band_hi: IndexArray
    envelope: EnvelopeFilter | None
    defect_features: tuple[str, ...]  # bpfo, bpfo_2x, bpfo_3x, bpfi, ... as configured
    defect_orders: Array  # their frequencies per 1 Hz of shaft speed
    speed_bins: tuple[int, int]  # 1x search range when the speed is estimated; lo > hi: none
    highest_line_hz: float  # harmonics must stay below this
    highest_envelope_hz: float  # bearing lines must stay below this (the band's width)

    def wants(self, feature: VibrationFeature) -> bool:
        """Whether the entry asks for ``feature``."""
        return feature in self.config.features

    @property
    def needs_shaft(self) -> bool:
        """Whether any configured feature depends on the running speed."""
        return bool(self.defect_features) or self.wants(F.HARMONICS_1X_3X)


def feature_names(config: VibrationConfig, bands: Sequence[Band]) -> tuple[str, ...]:
    """Every feature name the entry produces, in the order of its ``features`` list."""
    names: list[str] = []
    for feature in config.features:
        names.extend(_expand(feature, bands))
    return tuple(dict.fromkeys(names))


def _expand(feature: VibrationFeature, bands: Sequence[Band]) -> tuple[str, ...]:
    if feature.value in bearing.DEFECTS:
        return (feature.value, *(f"{feature.value}_{h}x" for h in range(2, LINE_HARMONICS + 1)))
    if feature is F.HARMONICS_1X_3X:
        return HARMONIC_FEATURES
    if feature is F.BAND_ENERGY:
        return tuple(band.name for band in bands)
    return (feature.value,)


def _units(names: Iterable[str], accel: AccelUnit) -> dict[str, str | None]:
    velocity = {"velocity_rms", "h1x", "h2x", "h3x"}
    accel_units = {"rms", "peak", "peak_to_peak"}
    units: dict[str, str | None] = {}
    for name in names:
        if name in velocity:
            units[name] = "mm/s"
        elif name == "shaft_hz":
            units[name] = "Hz"
        elif (name in accel_units or name.startswith("band_")
              or name.partition("_")[0] in bearing.DEFECTS):
            units[name] = accel.value
        else:
            units[name] = None  # crest, kurtosis, skewness, iso_zone, ratios
    return units


def plan_problems(config: VibrationConfig, sample_rate_hz: float,
                  bands: Sequence[Band] | None = None) -> list[tuple[KeyPath, str]]:
    """Every reason ``config`` cannot be analysed at ``sample_rate_hz``, with its key path.

    Key paths are relative to the ``vibration:`` entry, so the config checker can prefix
    ``("vibration", i)`` and report them with file and line like its other checks.
    """
    if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        return [(("point",), f"sample rate {sample_rate_hz!r} Hz is not a positive number")]
    problems: list[tuple[KeyPath, str]] = []
    seen: set[VibrationFeature] = set()
    for i, feature in enumerate(config.features):
        if feature in seen:
            problems.append((("features", i), f"{feature.value} is listed twice"))
        seen.add(feature)
    defects = ", ".join(f.value for f in config.features if f.value in bearing.DEFECTS)
    if defects and config.bearing is None:
        problems.append((("bearing",), f"{defects} need the bearing geometry"
                         " (n_balls, ball_diameter, pitch_diameter)"))
    if defects and config.envelope_band is None:
        problems.append((("envelope_band",), f"{defects} need envelope_band: the resonance"
                         " band [low, high] in Hz to demodulate"))
    if config.envelope_band is not None:
        lo_hz, hi_hz = config.envelope_band
        why = _unmeasurable(lo_hz, hi_hz, sample_rate_hz, config.window)
        if why:
            problems.append((("envelope_band",), f"[{lo_hz:g}, {hi_hz:g}] Hz {why}"))
    if F.VELOCITY_RMS in seen or F.ISO_ZONE in seen:
        lo_hz, hi_hz = VELOCITY_BAND_HZ
        why = _unmeasurable(lo_hz, hi_hz, sample_rate_hz, config.window)
        if why:
            problems.append((("features",), f"velocity_rms and iso_zone integrate"
                             f" {lo_hz:g}-{hi_hz:g} Hz, which {why}"))
    if F.BAND_ENERGY in seen:
        problems.extend(_band_problems(
            bands if bands is not None else default_bands(config, sample_rate_hz),
            sample_rate_hz, config.window))
    lo_bin, hi_bin = _speed_bins(config.window, sample_rate_hz / config.window)
    if ((defects or F.HARMONICS_1X_3X in seen) and config.machine.shaft_hz_point is None
            and lo_bin > hi_bin):
        problems.append((("machine", "shaft_hz_point"), "without a speed point the running"
                         " speed is estimated from the spectrum, which"
                         f" {sample_rate_hz / config.window:.3g} Hz bins cannot resolve:"
                         " set shaft_hz_point or lengthen the window"))
    return problems


def _unmeasurable(lo_hz: float, hi_hz: float, sample_rate_hz: float, n: int) -> str | None:
    """Why the band ``[lo_hz, hi_hz]`` cannot be analysed in windows of ``n``, or None."""
    if hi_hz >= sample_rate_hz / 2:
        return (f"reaches the Nyquist frequency ({sample_rate_hz / 2:g} Hz) of this"
                f" {sample_rate_hz:g} Hz waveform")
    df_hz = sample_rate_hz / n
    if (hi_hz - lo_hz) / df_hz < MIN_BAND_BINS:
        return (f"spans fewer than {MIN_BAND_BINS} bins of {df_hz:.3g} Hz ({n} samples at"
                f" {sample_rate_hz:g} Hz): widen it or the window")
    return None


def _band_problems(bands: Iterable[Band], sample_rate_hz: float, n: int
                   ) -> list[tuple[KeyPath, str]]:
    """Bands for ``band_energy`` that lie outside 0..Nyquist or hold no bin."""
    problems: list[tuple[KeyPath, str]] = []
    for band in bands:
        lo_bin, hi_bin = bin_range(band.lo_hz, band.hi_hz, sample_rate_hz / n)
        if not 0 < band.lo_hz < band.hi_hz < sample_rate_hz / 2:
            problems.append((("features",), f"band {band.lo_hz:g}-{band.hi_hz:g} Hz must lie"
                             f" inside 0-{sample_rate_hz / 2:g} Hz with low < high"))
        elif lo_bin > hi_bin:
            problems.append((("features",), f"band {band.lo_hz:g}-{band.hi_hz:g} Hz holds no"
                             f" bin of {sample_rate_hz / n:.3g} Hz"))
    return problems


def _speed_bins(n: int, df_hz: float) -> tuple[int, int]:
    """Range of 1x candidate bins for the speed estimate (empty when lo > hi)."""
    lo_hz, hi_hz = speed.SPEED_RANGE_HZ
    lo_bin = max(speed.MIN_SPEED_BINS, math.ceil(lo_hz / df_hz))
    last = n // 2
    hi_bin = min(math.floor(hi_hz / df_hz), (last - 3) // speed.HARMONICS)
    return lo_bin, hi_bin


def build_plan(config: VibrationConfig, sample_rate_hz: float, *,
               unit: AccelUnit = AccelUnit.G, bands: Sequence[Band] | None = None
               ) -> VibrationPlan:
    """The plan for ``config`` on waveforms sampled at ``sample_rate_hz``.

    Args:
        config: the ``vibration:`` entry.
        sample_rate_hz: the waveform point's sample rate (Modbus: ``waveform.sample_rate``).
        unit: unit of the samples (``accel_unit(waveform.unit)``).
        bands: bands for ``band_energy``; ``default_bands`` when None.

    Raises:
        ConfigError: listing every problem ``plan_problems`` finds.
    """
    problems = plan_problems(config, sample_rate_hz, bands)
    if problems:
        raise ConfigError(f"vibration entry for {config.point!r}: " + "; ".join(
            f"{'.'.join(str(k) for k in key)}: {message}" for key, message in problems))
    n = config.window
    df_hz = sample_rate_hz / n
    freq_hz = np.arange(n // 2 + 1, dtype=np.float64) * df_hz
    window = spectral_window(config.window_fn, n)
    band_list = tuple(bands) if bands is not None else default_bands(config, sample_rate_hz)
    if VibrationFeature.BAND_ENERGY not in config.features:
        band_list = ()
    edges = [bin_range(b.lo_hz, b.hi_hz, df_hz) for b in band_list]
    names = feature_names(config, band_list)
    envelope = None
    highest_envelope_hz = 0.0
    if config.envelope_band is not None:
        envelope = envelope_filter(config.envelope_band, sample_rate_hz, n)
        # The envelope of a band holds no line wider than the band itself.
        highest_envelope_hz = min(config.envelope_band[1] - config.envelope_band[0],
                                  sample_rate_hz / 2)
    defect_names: list[str] = []
    defect_orders: list[float] = []
    if config.bearing is not None:
        orders = bearing.defect_orders(config.bearing)
        for feature in config.features:
            if feature.value in orders:
                for h in range(1, LINE_HARMONICS + 1):
                    defect_names.append(feature.value if h == 1 else f"{feature.value}_{h}x")
                    defect_orders.append(h * orders[feature.value])
    scale = power_scale(window)
    weights = velocity_weights(freq_hz, unit.to_m_s2)
    half_width = MAIN_LOBE_HALF_WIDTH[config.window_fn]
    band_lo = np.array([lo for lo, _ in edges], dtype=np.intp)
    band_hi = np.array([hi for _, hi in edges], dtype=np.intp)
    orders_array = np.array(defect_orders, dtype=np.float64)
    for array in (window, scale, weights, band_lo, band_hi, orders_array):
        array.flags.writeable = False
    return VibrationPlan(
        config=config,
        sample_rate_hz=float(sample_rate_hz),
        accel_unit=unit,
        feature_names=names,
        units=_units(names, unit),
        window_samples=n,
        hop=n // 2,
        df_hz=df_hz,
        window=window,
        power_scale=scale,
        half_width=half_width,
        dc_bins=WINDOW_DC_BINS[config.window_fn],
        velocity_bins=bin_range(*VELOCITY_BAND_HZ, df_hz),
        velocity_weights=weights,
        bands=band_list,
        band_lo=band_lo,
        band_hi=band_hi,
        envelope=envelope,
        defect_features=tuple(defect_names),
        defect_orders=orders_array,
        speed_bins=_speed_bins(n, df_hz),
        highest_line_hz=(n // 2 - half_width) * df_hz,
        highest_envelope_hz=highest_envelope_hz,
    )
