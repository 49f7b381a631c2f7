"""Accelerometer waveforms of the pump's drive-end bearing: a small physical vibration model.

Contract used by ``Sim`` and the faces:

- ``VibrationSensor(seed=None, name="vib_de", sample_rate_hz=12000.0, capture_samples=4096,
  capture_interval_s=1.0, *, geometry, resonance_hz, damping_ratio, noise_g,
  resonance_noise_g, slip_jitter)``;
- ``advance(now_s, dt_s, shaft_hz, bearing_faults)`` is called every plant tick; when a
  capture interval has passed it makes a new ``capture`` (float64 array, in g, the record
  that ends at ``now_s``) and increments ``capture_counter``. A capture is replaced, never
  changed in place, so a face holding the old array keeps a consistent record;
- ``describe()`` returns a JSON-ready summary.

The signal (``synthesize``, a pure function of its arguments and a numpy ``Generator``) is
the sum of

- running-speed harmonics: a small healthy 1x and 2x; imbalance (strong 1x), misalignment
  (strong 2x, some 1x and 3x) and mechanical looseness (many harmonics and half harmonics).
  Their force grows with the square of the speed, so the levels below are at the skid's
  nominal 1450 r/min and scale with ``(shaft_hz / REFERENCE_SHAFT_HZ) ** 2``;
- rolling-bearing defects: a train of impacts, each ringing a structural resonance (a damped
  second-order oscillator, ``resonance_hz``, ``damping_ratio``). Outer race: impacts at BPFO
  of constant strength (the defect sits still in the load zone). Inner race: impacts at BPFI,
  strength modulated once per shaft revolution (the defect turns through the load zone).
  Ball: impacts at 2 x BSF (the defect strikes the inner and the outer race once per spin
  revolution, the outer-race strike harder), modulated at FTF (the cage carries the ball
  through the load zone). 2 x BSF is therefore the dominant envelope line of a ball defect,
  with a weaker BSF line from the unequal strikes, as in CWRU's "rolling element" column.
  Impact strength grows linearly with speed. Impact times jitter by ``slip_jitter`` of a
  period (rolling elements slip) but the mean rate is exactly the geometric frequency, so the
  envelope peak lands on the formula value;
- broadband sensor/background noise, plus noise that lightly excites the same resonance.

Severity (0..1) scales each fault linearly; at severity 1 and nominal speed an imbalance
gives about 12 mm/s RMS at 1x (ISO 10816-3 zone D for a rigid group-2 machine) and a bearing
impact rings at about 3 g peak. The shaft stopped (``shaft_hz <= 0``) gives noise only.

Cost: the harmonics come from a lookup table of one two-revolution period (constant cost for
any number of harmonics), each impact rings the resonance as a closed-form kernel placed at
its sub-sample time, and the noise is shaped in one inverse FFT: 1.5-2 ms of CPU per second
of 25.6 kHz signal with one fault (``hil/bench/bench_waveforms.py``), numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from plcsim.faults import Fault

BEARING_MODES = ("outer", "inner", "ball")
SHAFT_MODES = ("imbalance", "misalignment", "looseness")
MODES = BEARING_MODES + SHAFT_MODES
DEFAULT_SEVERITY = 0.5

REFERENCE_SHAFT_HZ = 1450.0 / 60.0  # the skid's nominal speed; the levels below are at it

# Amplitudes in g at severity 1 and the reference speed, by multiple of the shaft speed.
HEALTHY_ORDERS_G = {1.0: 0.02, 2.0: 0.008, 3.0: 0.003}
IMBALANCE_ORDERS_G = {1.0: 0.25}
MISALIGNMENT_ORDERS_G = {1.0: 0.08, 2.0: 0.2, 3.0: 0.06, 4.0: 0.02}
LOOSENESS_ORDERS_G = {
    **{float(k): 0.07 / math.sqrt(k) for k in range(1, 11)},
    **{k + 0.5: 0.03 / math.sqrt(max(k + 0.5, 1.0)) for k in range(5)},
}
IMPACT_G = 3.0  # peak of one impact's ringing at severity 1 and the reference speed

INNER_LOAD_ZONE_DEPTH = 0.6  # impact strength 1 +/- this over one shaft revolution
BALL_CAGE_DEPTH = 0.5  # impact strength 1 +/- this over one cage revolution
BALL_INNER_STRIKE = 0.6  # inner-race strike relative to the outer-race strike
IMPACT_SCATTER = 0.1  # relative random spread of single impact strengths

_TABLE_SAMPLES = 4096  # lookup table for the harmonics: samples per two shaft revolutions
_KERNEL_TOLERANCE = 1e-4  # the resonance kernel stops when it has decayed to this
_RING_CHUNK_VALUES = 32768  # kernel values per chunk of impacts (fits a core's L2 cache)


@dataclass(frozen=True, slots=True)
class BearingGeometry:
    """A rolling bearing's geometry; the defaults are the SKF 6205 (CWRU drive end)."""

    n_balls: int = 9
    ball_diameter_mm: float = 7.94
    pitch_diameter_mm: float = 39.04
    contact_angle_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.n_balls < 1:
            raise ValueError("a bearing needs at least one rolling element")
        if not 0 < self.ball_diameter_mm < self.pitch_diameter_mm:
            raise ValueError("need 0 < ball_diameter_mm < pitch_diameter_mm")
        if not 0 <= self.contact_angle_deg < 90:
            raise ValueError("contact_angle_deg must be in [0, 90)")

    def frequencies(self, shaft_hz: float) -> dict[str, float]:
        """Defect frequencies in Hz (ftf, bpfo, bpfi, bsf) for a shaft turning at ``shaft_hz``."""
        ratio = (self.ball_diameter_mm / self.pitch_diameter_mm
                 * math.cos(math.radians(self.contact_angle_deg)))
        return {
            "ftf": shaft_hz / 2 * (1 - ratio),
            "bpfo": self.n_balls * shaft_hz / 2 * (1 - ratio),
            "bpfi": self.n_balls * shaft_hz / 2 * (1 + ratio),
            "bsf": self.pitch_diameter_mm * shaft_hz / (2 * self.ball_diameter_mm)
            * (1 - ratio**2),
        }


SKF_6205 = BearingGeometry()


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One mechanical fault at one moment: what ``synthesize`` needs, without plant time."""

    mode: str
    severity: float = DEFAULT_SEVERITY

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown vibration fault mode {self.mode!r};"
                             f" known: {', '.join(MODES)}")
        if not 0 <= self.severity <= 1:
            raise ValueError(f"severity must be in 0..1, not {self.severity}")

    @classmethod
    def from_fault(cls, fault: Fault, now_s: float) -> FaultSpec:
        """The spec of a ``bearing`` fault at plant time ``now_s`` (run-to-failure growth)."""
        params = fault.params
        if "mode" not in params:
            raise ValueError(f"a bearing fault needs a mode ({', '.join(MODES)})")
        severity = float(params.get("severity", DEFAULT_SEVERITY))
        growth_per_s = float(params.get("growth_per_s", 0.0))
        if not 0 <= severity <= 1:
            raise ValueError(f"severity must be in 0..1, not {severity}")
        if growth_per_s < 0:
            raise ValueError("growth_per_s must not be negative")
        elapsed_s = max(0.0, now_s - fault.started_s)
        return cls(str(params["mode"]), min(1.0, severity + growth_per_s * elapsed_s))


# -- the signal ------------------------------------------------------------------------------


def synthesize(n_samples: int, sample_rate_hz: float, t0_s: float, shaft_hz: float,
               faults: Iterable[FaultSpec], rng: np.random.Generator, *,
               geometry: BearingGeometry = SKF_6205, resonance_hz: float = 3500.0,
               damping_ratio: float = 0.03, noise_g: float = 0.03,
               resonance_noise_g: float = 0.015, slip_jitter: float = 0.01) -> np.ndarray:
    """Acceleration in g of ``n_samples`` starting at plant time ``t0_s``.

    The shaft turns at a constant ``shaft_hz`` during the record; its phase is taken from
    ``t0_s`` so a record is the same function of absolute time whatever its start.
    ``faults`` may name a mode more than once; the contributions add up.
    """
    if n_samples < 1:
        raise ValueError("n_samples must be positive")
    if not 0 < resonance_hz < sample_rate_hz / 2:
        raise ValueError(f"resonance_hz must lie below the Nyquist frequency"
                         f" ({sample_rate_hz / 2:g} Hz)")
    if not 0 < damping_ratio < 1:
        raise ValueError("damping_ratio must be in (0, 1)")
    specs = list(faults)
    # Noise first: the random stream then does not depend on the faults when the shaft stands.
    signal = _noise(n_samples, float(sample_rate_hz), resonance_hz, damping_ratio, noise_g,
                    resonance_noise_g, rng)
    if shaft_hz <= 0:
        return signal

    orders = dict(HEALTHY_ORDERS_G)
    tables = {"imbalance": IMBALANCE_ORDERS_G, "misalignment": MISALIGNMENT_ORDERS_G,
              "looseness": LOOSENESS_ORDERS_G}
    for spec in specs:
        for order, amplitude_g in tables.get(spec.mode, {}).items():
            orders[order] = orders.get(order, 0.0) + spec.severity * amplitude_g
    speed_factor = shaft_hz / REFERENCE_SHAFT_HZ
    signal += _shaft_harmonics(n_samples, sample_rate_hz, t0_s, shaft_hz, orders,
                               speed_factor**2)

    bearing = [s for s in specs if s.mode in BEARING_MODES and s.severity > 0]
    if bearing:
        kernel = _resonance_kernel(float(sample_rate_hz), resonance_hz, damping_ratio)
        duration_s = n_samples / sample_rate_hz
        lead_s = kernel.lead_samples / sample_rate_hz
        defect_hz = geometry.frequencies(shaft_hz)
        times: list[np.ndarray] = []
        strengths: list[np.ndarray] = []
        for spec in bearing:
            t_abs, strength = _impacts(spec.mode, t0_s - lead_s, t0_s + duration_s, shaft_hz,
                                       defect_hz, slip_jitter, rng)
            times.append(t_abs - t0_s)
            strengths.append(strength * (spec.severity * IMPACT_G * speed_factor))
        signal += _ring(n_samples, float(sample_rate_hz), np.concatenate(times),
                        np.concatenate(strengths), kernel)
    return signal


def _noise(n_samples: int, sample_rate_hz: float, resonance_hz: float, damping_ratio: float,
           noise_g: float, resonance_noise_g: float, rng: np.random.Generator) -> np.ndarray:
    """Broadband noise plus noise through the resonance, shaped in one inverse FFT."""
    if noise_g <= 0 and resonance_noise_g <= 0:
        return np.zeros(n_samples)
    shape = _noise_shape(n_samples, sample_rate_hz, resonance_hz, damping_ratio,
                         float(noise_g), float(resonance_noise_g))
    spectrum = rng.standard_normal(2 * shape.size).view(np.complex128) * shape
    return np.fft.irfft(spectrum, n_samples)


@lru_cache(maxsize=64)
def _noise_shape(n_samples: int, sample_rate_hz: float, resonance_hz: float,
                 damping_ratio: float, noise_g: float, resonance_noise_g: float) -> np.ndarray:
    """|X(f)| for unit complex normals such that the two noise parts have the RMS asked for."""
    freq_hz = np.fft.rfftfreq(n_samples, 1.0 / sample_rate_hz)
    ratio = freq_hz / resonance_hz
    gain = 1.0 / np.sqrt((1 - ratio**2) ** 2 + (2 * damping_ratio * ratio) ** 2)
    flat = np.ones_like(gain)
    for part in (flat, gain):
        part[0] = 0.0  # no DC: an accelerometer is AC coupled
        part[-1] = 0.0  # no Nyquist bin: keeps the variance formula exact for any length
    # irfft of Z_k * G_k (Z unit complex normal) has variance 4 * sum(G^2) / n^2.
    flat_var = 4 * np.sum(flat**2) / n_samples**2
    gain_var = 4 * np.sum(gain**2) / n_samples**2
    if flat_var == 0:  # a record too short to carry noise
        return flat
    shape = np.sqrt(noise_g**2 * flat**2 / flat_var + resonance_noise_g**2 * gain**2 / gain_var)
    shape.flags.writeable = False
    return shape


def _shaft_harmonics(n_samples: int, sample_rate_hz: float, t0_s: float, shaft_hz: float,
                     orders: dict[float, float], scale: float) -> np.ndarray:
    """Sum of shaft-synchronous sines, read from one two-revolution period by interpolation."""
    spectrum = np.zeros(_TABLE_SAMPLES // 2 + 1, dtype=np.complex128)
    for order, amplitude_g in orders.items():
        cycles = round(2 * order)  # cycles per two revolutions
        spectrum[cycles] += amplitude_g * np.exp(1j * _order_phase(cycles))
    table = np.fft.irfft(spectrum, _TABLE_SAMPLES) * (_TABLE_SAMPLES / 2 * scale)
    table = np.append(table, table[0])
    start = math.fmod(shaft_hz * t0_s / 2, 1.0)
    # In place where possible: fresh temporaries cost more than the arithmetic here.
    position = np.arange(n_samples, dtype=np.float64)
    position *= shaft_hz / (2 * sample_rate_hz)
    position += start
    position -= np.floor(position)
    position *= _TABLE_SAMPLES
    index = position.astype(np.intp)
    position -= index  # now the fraction between two table entries
    below = table[index]
    index += 1
    signal: np.ndarray = table[index]
    signal -= below
    signal *= position
    signal += below
    return signal


def _order_phase(index: int) -> float:
    """A fixed phase per harmonic, so that the waveform shape is that of one machine."""
    return (0.9 * index + 0.37 * index * index) % (2 * math.pi)


@dataclass(frozen=True, slots=True)
class _Kernel:
    """The resonance's impulse response split so an impact at any sub-sample time is cheap.

    h(dt + m/fs) = A(dt) * cos_part[m] + B(dt) * sin_part[m], with A and B per impact.
    """

    decay_per_s: float
    omega_d: float
    cos_part: np.ndarray
    sin_part: np.ndarray
    peak: float

    @property
    def lead_samples(self) -> int:
        """How far before the record an impact still rings into it."""
        return int(self.cos_part.size)


@lru_cache(maxsize=16)
def _resonance_kernel(sample_rate_hz: float, resonance_hz: float,
                      damping_ratio: float) -> _Kernel:
    omega_n = 2 * math.pi * resonance_hz
    decay_per_s = damping_ratio * omega_n
    omega_d = omega_n * math.sqrt(1 - damping_ratio**2)
    length = math.ceil(math.log(1 / _KERNEL_TOLERANCE) / decay_per_s * sample_rate_hz)
    t_s = np.arange(length) / sample_rate_hz
    envelope = np.exp(-decay_per_s * t_s)
    cos_part = envelope * np.cos(omega_d * t_s)
    sin_part = envelope * np.sin(omega_d * t_s)
    cos_part.flags.writeable = False
    sin_part.flags.writeable = False
    t_peak = math.atan(omega_d / decay_per_s) / omega_d
    peak = math.exp(-decay_per_s * t_peak) * math.sin(omega_d * t_peak)
    return _Kernel(decay_per_s, omega_d, cos_part, sin_part, peak)


def _impacts(mode: str, start_s: float, end_s: float, shaft_hz: float,
             defect_hz: dict[str, float], slip_jitter: float, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """Absolute impact times in [start_s, end_s) (give or take jitter) and relative strengths."""
    rate_hz = 2 * defect_hz["bsf"] if mode == "ball" else defect_hz["bpfo" if mode == "outer"
                                                                    else "bpfi"]
    phase = {"outer": 0.13, "inner": 0.41, "ball": 0.77}[mode]  # fraction of a period
    first = math.floor(start_s * rate_hz - phase) - 1
    last = math.ceil(end_s * rate_hz - phase) + 1
    count = np.arange(first, last + 1)
    t_abs = (count + phase) / rate_hz
    t_abs += rng.standard_normal(count.size) * (slip_jitter / rate_hz)
    strength = 1.0 + IMPACT_SCATTER * rng.standard_normal(count.size)
    if mode == "inner":
        strength *= 1.0 + INNER_LOAD_ZONE_DEPTH * np.cos(2 * np.pi * shaft_hz * t_abs)
    elif mode == "ball":
        strength *= 1.0 + BALL_CAGE_DEPTH * np.cos(2 * np.pi * defect_hz["ftf"] * t_abs)
        strength *= np.where(count % 2 == 0, 1.0, BALL_INNER_STRIKE)
    return t_abs, np.clip(strength, 0.0, None)


def _ring(n_samples: int, sample_rate_hz: float, local_s: np.ndarray, strength: np.ndarray,
          kernel: _Kernel) -> np.ndarray:
    """The resonance rung by impacts at ``local_s`` (seconds from the record start).

    Impacts go in time-ordered chunks of about ``_RING_CHUNK_VALUES`` kernel values: the
    temporaries then stay in cache, which is several times faster than one big outer product.
    """
    length = kernel.cos_part.size
    first = np.ceil(local_s * sample_rate_hz).astype(np.intp)
    keep = (first > -length) & (first < n_samples)
    order = np.argsort(first[keep], kind="stable")
    first, local_s, strength = first[keep][order], local_s[keep][order], strength[keep][order]
    offset_s = first / sample_rate_hz - local_s  # in [0, 1/fs): the impact's sub-sample lag
    scale = strength / kernel.peak * np.exp(-kernel.decay_per_s * offset_s)
    theta = kernel.omega_d * offset_s
    with_cos, with_sin = scale * np.sin(theta), scale * np.cos(theta)
    rung = np.zeros(n_samples + 2 * length)
    steps = np.arange(length)
    chunk = max(16, _RING_CHUNK_VALUES // length)
    for start in range(0, first.size, chunk):
        starts = first[start:start + chunk]
        values = np.outer(with_cos[start:start + chunk], kernel.cos_part)
        values += np.outer(with_sin[start:start + chunk], kernel.sin_part)
        index = (starts - starts[0])[:, None] + steps
        summed = np.bincount(index.ravel(), values.ravel())
        begin = starts[0] + length
        rung[begin:begin + summed.size] += summed
    return rung[length:length + n_samples]


# -- the sensor ------------------------------------------------------------------------------


class VibrationSensor:
    """One accelerometer on a bearing housing making periodic captures."""

    def __init__(self, seed: int | None = None, name: str = "vib_de",
                 sample_rate_hz: float = 12000.0, capture_samples: int = 4096,
                 capture_interval_s: float = 1.0, *, geometry: BearingGeometry = SKF_6205,
                 resonance_hz: float = 3500.0, damping_ratio: float = 0.03,
                 noise_g: float = 0.03, resonance_noise_g: float = 0.015,
                 slip_jitter: float = 0.01) -> None:
        if sample_rate_hz <= 0 or capture_samples < 1 or capture_interval_s <= 0:
            raise ValueError("sample_rate_hz, capture_samples and capture_interval_s must be"
                             " positive")
        if not 0 < resonance_hz < sample_rate_hz / 2:
            raise ValueError(f"resonance_hz must lie below the Nyquist frequency"
                             f" ({sample_rate_hz / 2:g} Hz)")
        self.name = name
        self.sample_rate_hz = sample_rate_hz
        self.capture_samples = capture_samples
        self.capture_interval_s = capture_interval_s
        self.geometry = geometry
        self._options: dict[str, float] = {
            "resonance_hz": resonance_hz, "damping_ratio": damping_ratio, "noise_g": noise_g,
            "resonance_noise_g": resonance_noise_g, "slip_jitter": slip_jitter,
        }
        self.capture = np.zeros(capture_samples)
        self.capture_counter = 0
        self.capture_t0_s = 0.0
        self.capture_shaft_hz = 0.0
        self.faults: list[FaultSpec] = []  # those behind the current capture
        self.ignored_faults: list[dict[str, Any]] = []  # bearing faults that made no sense
        self._rng = np.random.default_rng(seed)
        self._next_capture_s = 0.0

    def advance(self, now_s: float, dt_s: float, shaft_hz: float,
                bearing_faults: Sequence[Fault | FaultSpec]) -> None:
        """Make a new capture, the record ending at ``now_s``, when its interval has passed.

        ``bearing_faults`` may hold faults for other sensors; those are left alone. A fault
        with a bad mode or severity is skipped and listed in ``describe()`` rather than
        raised, because this runs inside the plant's tick.
        """
        del dt_s
        if now_s < self._next_capture_s:
            return
        missed = math.floor((now_s - self._next_capture_s) / self.capture_interval_s)
        self._next_capture_s += (missed + 1) * self.capture_interval_s  # a drift-free grid
        self.faults, self.ignored_faults = self._specs(bearing_faults, now_s)
        self.capture_t0_s = now_s - self.capture_samples / self.sample_rate_hz
        self.capture_shaft_hz = max(0.0, float(shaft_hz))
        self.capture = synthesize(self.capture_samples, self.sample_rate_hz, self.capture_t0_s,
                                  self.capture_shaft_hz, self.faults, self._rng,
                                  geometry=self.geometry, **self._options)
        self.capture_counter += 1

    def _specs(self, faults: Sequence[Fault | FaultSpec], now_s: float
               ) -> tuple[list[FaultSpec], list[dict[str, Any]]]:
        specs: list[FaultSpec] = []
        ignored: list[dict[str, Any]] = []
        for fault in faults:
            if isinstance(fault, FaultSpec):
                specs.append(fault)
                continue
            if fault.kind != "bearing" or not fault.covers(self.name):
                continue
            try:
                specs.append(FaultSpec.from_fault(fault, now_s))
            except (TypeError, ValueError) as exc:
                ignored.append({"id": fault.id, "reason": str(exc)})
        return specs, ignored

    def describe(self) -> dict[str, Any]:
        """Summary for the control API: settings, the last capture and what shaped it."""
        capture = self.capture
        rms_g = float(np.sqrt(np.mean(capture**2))) if capture.size else 0.0
        peak_g = float(np.max(np.abs(capture))) if capture.size else 0.0
        defect_hz = self.geometry.frequencies(self.capture_shaft_hz)
        return {
            "name": self.name,
            "sample_rate_hz": float(self.sample_rate_hz),
            "capture_samples": int(self.capture_samples),
            "capture_interval_s": float(self.capture_interval_s),
            "capture_counter": int(self.capture_counter),
            "capture_t0_s": round(float(self.capture_t0_s), 6),
            "shaft_hz": round(float(self.capture_shaft_hz), 4),
            "rms_g": round(rms_g, 5),
            "peak_g": round(peak_g, 5),
            "faults": [{"mode": s.mode, "severity": round(float(s.severity), 4)}
                       for s in self.faults],
            "ignored_faults": list(self.ignored_faults),
            "bearing": {**asdict(self.geometry),
                        **{f"{k}_hz": round(v, 3) for k, v in defect_hz.items()}},
            "model": {k: float(v) for k, v in self._options.items()},
        }
