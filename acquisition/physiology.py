"""Synthetic wearable physiology for a group of people (pure numpy, no LSL).

:func:`simulate_session` turns a :class:`~attune_monitor.acquisition.scenario.Scenario` and a
seed into the streams real devices would send (Polar H10 RR and ECG, wrist
HR, E4 / EmotiBit / Shimmer EDA, E4 BVP), plus the ground truth of what was
scripted. The same (scenario, seed, duration) gives bitwise identical data.

The model, per participant ``i`` (on an internal 20 Hz grid, times in seconds):

* **Coupling, slow.** A slow shared drive ``S(t)`` and an own drive ``O_i(t)``
  (independent, band-limited to the scenario's ``drive_band_hz``, default
  0.005-0.1 Hz, unit variance). Person ``i``'s
  arousal drive is ``d_i = sqrt(c_i) S + sqrt(1 - c_i) O_i`` where ``c_i(t)``
  is the scenario's coupling, pulled to 0 for the person who ruptures and
  brought back linearly over ``repair_s`` afterwards. The drive moves heart
  rate (``HR_DRIVE_BPM`` per unit), the tonic skin conductance and the rate of
  spontaneous skin-conductance responses (SCRs).
* **Coupling, moment to moment.** Partners in conversation also react to the
  *same moments* (a laugh, a raised voice, a pause) with co-occurring phasic
  responses: co-occurring SCRs and short heart-rate accelerations or
  decelerations are what physiological-linkage studies measure (Levenson &
  Gottman 1983, J Pers Soc Psychol 45:587; Marci et al. 2007, J Nerv Ment Dis
  195:103, SC concordance from co-occurring slopes; Palumbo et al. 2017, Pers
  Soc Psychol Rev 21:99, review). Shared events arrive as a Poisson process
  (scenario ``shared_events_per_min``, default 3; 0 leaves only the slow
  drive), each with its own salience and direction (about 70 % evoke a heart
  rate acceleration, the rest an orienting deceleration). Person ``i``
  responds to an event with probability ``sqrt(c_i)`` (engagement), after a
  person-specific latency of 1-3 s (plus 0.25 s jitter), with an SCR whose
  amplitude follows the event's salience and a transient HR response
  (``HR_EVENT_BPM`` per unit salience, peak ~1.5 s after the response, over
  after ~8 s). Everybody also has *own* moments (``OWN_EVENTS_PER_MIN``,
  a thought, a shift in the chair) with the same kind of response, which the
  partners do not share (scenario ``own_events_per_min``, default 1; the
  shared moments' salience is scaled by ``shared_salience``, default 1).
  During a rupture ``who``'s coupling is 0, so they
  stop responding to shared moments: *withdrawn* responds to nothing and
  flattens (drive x 0.25, no own moments); *aversive* responds to own moments
  at 4 x the rate while arousal (HR, tonic SC, SCR rate) climbs.
* **Rupture families** (a rupture's ``family``; without one, its ``style``,
  so every scenario written before families existed gives the same data).
  In every family ``who`` decouples from everybody (from the shared drive and
  the shared moments); what else changes, one line each:

  - ``aversive``: coupling to 0 (3-s onset, back over ``repair_s``); arousal climbs (HR +10 bpm, tonic SC
    +1.2 uS, SCR rate x 4) and own moments x 4.
  - ``withdrawn``: coupling to 0; flattens: drive x 0.25, HR -2 bpm, tonic SC down, SCRs x 0.25, no moments.
  - ``coupling_loss``: coupling to 0, nothing else: the shared moments no longer responded to become own
    moments at the same rate, so mean HR, SC level and SCR rate stay as without the rupture.
  - ``partial``: as coupling_loss, but the coupling drops by ``depth`` (drawn 50-90 %), not to 0.
  - ``drift``: as coupling_loss, but the coupling ramps down linearly over ``ramp_s`` (drawn 30-90 s, at
    most the duration) and back over as long (or ``repair_s``).
  - ``sudden``: as coupling_loss, but the break and the return are abrupt (one grid step each).
  - ``leave_group``: as coupling_loss with ``depth`` drawn 85-100 %, for a group of 3 or more, plus an
    arousal shift drawn up, down or none (at full scale HR +-7 bpm, tonic SC +-25 % of ``eda_us``, SCR and
    own-moment rates x e^+-0.7, over 20 s; scale drawn 0.5-1).

  ``depth`` and ``arousal`` may be given for every newer family, ``ramp_s`` for drift; what is not given is
  drawn from ``(seed, rupture number)`` (:func:`rupture_model`) and written to the truth (``family``,
  ``params``; ``style`` is the family).
* **Heart.** Instantaneous heart rate = baseline + drive + respiratory sinus
  arrhythmia (breathing 0.2-0.3 Hz, slowly varying) + scripted events. Beats
  come from integral pulse frequency modulation (IPFM): the integral of
  HR/60 is interpolated linearly between grid points, and a beat falls where
  it crosses an integer, so beat times (and RR intervals) are continuous,
  not on a sample grid. Ectopic beats: premature by 35 % of the RR, with a
  full compensatory pause.
* **EDA.** Tonic level (participant's ``eda_us`` + drive + slow drift) plus
  SCRs with a bi-exponential shape (rise time constant 0.4 s, so about 1.2 s
  to peak; decay 5-9 s), white sensor noise, and ADC quantisation of the
  device (white noise scaled by the participant's ``noise``, default 1, as are the ECG and PPG noise and
  the beat-to-beat HR variability).
* **ECG** (130 Hz, microvolts, 16-bit integers) from a sum of Gaussian P, Q,
  R, S, T waves per beat plus respiratory baseline wander and noise; **PPG**
  (64 Hz, arbitrary units) from a systolic and a diastolic wave per beat,
  delayed by the pulse transit time, with respiratory modulation.

Stream timestamps are session seconds: regular streams start at exactly 0,
which is the time origin of the ground truth.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import uniform_filter1d

from .convention import desc_fields
from .scenario import AROUSAL_SHIFTS, RUPTURE_FAMILIES, RUPTURE_STYLES, Scenario
from .xdf_writer import stream_header_xml

__all__ = [
    "GRID_HZ", "HR_DRIVE_BPM", "RSA_BPM", "SCR_RATE_PER_MIN", "OWN_EVENTS_PER_MIN", "HR_EVENT_BPM", "HR_EVENT_TAU_S",
    "SCR_EVENT_US", "EDA_DEVICES", "HR_DEVICES", "HR_DEVICE_AVERAGING_S", "ECG_HZ", "PPG_HZ", "LEGACY_FAMILIES",
    "AROUSAL_SHIFT_BPM", "AROUSAL_SHIFT_EDA", "AROUSAL_SHIFT_RATE", "AROUSAL_SHIFT_RISE_S", "PARTIAL_DEPTH",
    "LEAVE_GROUP_DEPTH", "DRIFT_RAMP_S", "AROUSAL_SCALE", "SimStream", "Session", "band_noise", "SCR_TAU_RISE",
    "rupture_model", "simulate_session"
]

logger = logging.getLogger(__name__)

#: Internal simulation grid (Hz) for the slow latent processes.
GRID_HZ = 20.0
#: Heart-rate change (bpm) per unit of arousal drive.
HR_DRIVE_BPM = 6.0
#: Peak RSA swing (bpm, half peak-to-peak).
RSA_BPM = 1.4
#: Spontaneous SCRs per minute at zero drive.
SCR_RATE_PER_MIN = 1.2
#: Own (unshared) response-eliciting moments per person per minute, at rest.
OWN_EVENTS_PER_MIN = 1.0
#: Peak HR acceleration (bpm) per unit salience of a moment; decelerations are 0.75 of it.
HR_EVENT_BPM = 4.0
#: Time constant (s) of the transient HR response ``(t / tau) exp(1 - t / tau)``: peak at tau.
HR_EVENT_TAU_S = 1.5
#: Mean SCR amplitude (microsiemens at ``eda_us`` = 4) per unit salience of a moment.
SCR_EVENT_US = 0.4

#: EDA devices: (manufacturer, model, rate in Hz, ADC step in microsiemens, noise std in microsiemens).
EDA_DEVICES = {
    "e4": ("Empatica", "E4", 4.0, 0.001, 0.002),
    "emotibit": ("EmotiBit", "EmotiBit", 15.0, 0.0005, 0.003),
    "shimmer": ("Shimmer", "GSR+", 32.0, 0.0005, 0.004),
}
#: Wrist HR device that goes with each EDA device (1 Hz HR stream).
HR_DEVICES = {"e4": ("Empatica", "E4"), "emotibit": ("EmotiBit", "EmotiBit"),
              "shimmer": ("Polar", "Verity Sense"), "none": ("Polar", "Verity Sense")}
#: Seconds of beats each simulated wrist HR value averages over (trailing); declared in its desc as
#: ``averaging_s`` (``acquisition.convention``).
HR_DEVICE_AVERAGING_S = 4.0
ECG_HZ = 130.0
PPG_HZ = 64.0

#: The two original rupture models (the styles), simulated exactly as before families existed.
LEGACY_FAMILIES = RUPTURE_STYLES
#: Arousal shift of the newer families at full scale: heart rate (bpm), tonic skin conductance (fraction of the
#: person's ``eda_us``), and the log-factor on the rates of spontaneous SCRs and own moments; reached over
#: ``AROUSAL_SHIFT_RISE_S``.
AROUSAL_SHIFT_BPM = 7.0
AROUSAL_SHIFT_EDA = 0.25
AROUSAL_SHIFT_RATE = 0.7
AROUSAL_SHIFT_RISE_S = 20.0
#: Ranges the newer families draw from when the scenario does not say: partial's lost fraction of the
#: coupling, leave_group's, drift's ramp (s), and the scale of an arousal shift.
PARTIAL_DEPTH = (0.5, 0.9)
LEAVE_GROUP_DEPTH = (0.85, 1.0)
DRIFT_RAMP_S = (30.0, 90.0)
AROUSAL_SCALE = (0.5, 1.0)


@dataclass
class SimStream:
    """One simulated device stream, complete for the whole session.

    Attributes
    ----------
    timestamps : ndarray, shape (n_samples,)
        Session seconds (float64); add the recording's time origin for LSL time.
    values : ndarray, shape (n_samples, 1)
        float32 samples in the unit the header declares.
    """

    kind: str
    participant: str
    name: str
    type: str
    srate: float
    source_id: str
    manufacturer: str
    device: str
    unit: str
    timestamps: np.ndarray
    values: np.ndarray
    channel_format: str = "float32"
    #: device HR: seconds each value averages over (declared in the desc), else None
    averaging_s: float | None = None

    @property
    def desc(self) -> dict:
        """The convention's desc fields (``acquisition.convention.desc_fields``)."""
        return desc_fields(self.kind, self.participant, device=self.device, manufacturer=self.manufacturer,
                           unit=self.unit, averaging_s=self.averaging_s)

    @property
    def header_xml(self) -> str:
        """The stream's ``<info>`` XML (same fields an LSL outlet of this stream declares)."""
        return stream_header_xml(name=self.name, type=self.type, channel_count=1, nominal_srate=self.srate,
                                 channel_format=self.channel_format, source_id=self.source_id, desc=self.desc)


@dataclass
class Session:
    """The output of :func:`simulate_session`."""

    scenario: Scenario
    seed: int
    duration_s: float
    streams: list[SimStream]
    truth: dict
    #: latent per-participant signals on the internal grid (for tests and plots)
    latent: dict = field(default_factory=dict)

    def stream(self, participant: str, kind: str) -> SimStream:
        """The stream of ``kind`` of ``participant`` (``KeyError`` with the choices if absent)."""
        for s in self.streams:
            if s.participant == participant and s.kind == kind:
                return s
        have = ", ".join(f"{s.participant}/{s.kind}" for s in self.streams)
        raise KeyError(f"no {kind!r} stream for {participant!r}; this session has {have}")


# --------------------------------------------------------------------------- helpers
def _rng(seed: int, *keys) -> np.random.Generator:
    """An independent generator per (seed, keys): one person's noise does not shift when another is added."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(words)


def band_noise(rng: np.random.Generator, n: int, fs: float, lo: float, hi: float) -> np.ndarray:
    """Gaussian noise with a flat spectrum between ``lo`` and ``hi`` Hz, unit variance, shape (n,)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec[(f < lo) | (f > hi)] = 0.0
    x = np.fft.irfft(spec, n)
    sd = x.std()
    return x / sd if sd > 0 else x


def _ramp(t: np.ndarray, onset: float, offset: float, rise: float, fall: float) -> np.ndarray:
    """0 before ``onset``, up to 1 over ``rise`` s, 1 until ``offset``, back to 0 over ``fall`` s."""
    up = np.clip((t - onset) / max(rise, 1e-9), 0.0, 1.0)
    down = np.clip(1.0 - (t - offset) / max(fall, 1e-9), 0.0, 1.0)
    return np.minimum(up, down)


def _scr_kernel(t: np.ndarray, tau_rise: float, tau_decay: float) -> np.ndarray:
    """Bi-exponential SCR shape, peak 1, zero for ``t < 0``."""
    t_peak = np.log(tau_decay / tau_rise) * tau_rise * tau_decay / (tau_decay - tau_rise)
    norm = np.exp(-t_peak / tau_decay) - np.exp(-t_peak / tau_rise)
    tt = np.maximum(t, 0.0)
    return np.where(t > 0, (np.exp(-tt / tau_decay) - np.exp(-tt / tau_rise)) / norm, 0.0)


#: SCR rise time constant (s): 1.1-1.3 s from onset to peak with the 5-9 s decays below.
SCR_TAU_RISE = 0.4


def _poisson_times(rng, t: np.ndarray, rate_hz: np.ndarray) -> np.ndarray:
    """Event times of an inhomogeneous Poisson process given its rate on grid ``t`` (thinning)."""
    dt = t[1] - t[0]
    hits = rng.random(t.size) < rate_hz * dt
    return t[hits] + rng.random(int(hits.sum())) * dt


def _windows(confounds, kind, pid, duration):
    return [(c.onset_s, min(c.onset_s + c.duration_s, duration), c) for c in confounds
            if c.kind == kind and pid in c.participants and c.onset_s < duration]


def _in_any(t: np.ndarray, wins) -> np.ndarray:
    m = np.zeros(t.shape, bool)
    for on, off, *_ in wins:
        m |= (t >= on) & (t < off)
    return m


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def rupture_model(scenario: Scenario, seed: int, k: int) -> dict:
    """What rupture ``k`` of a scenario does, with what its family leaves open drawn from ``(seed, k)``.

    Returns
    -------
    model : dict
        ``family``; ``depth`` (fraction of the coupling lost at the rupture's full extent); ``rise_s``
        (seconds from onset to full extent); ``repair_s`` (seconds from offset until the coupling is back);
        ``arousal`` ("up", "down" or "none") and ``arousal_scale`` (0-1) of the newer families' arousal shift.
        The same (scenario, seed, k) always gives the same model.
    """
    r = scenario.ruptures[k]
    fam = r.model
    if fam not in RUPTURE_FAMILIES:
        raise ValueError(f"Invalid value for 'family': expected one of {', '.join(RUPTURE_FAMILIES)}, but got {fam!r}.")
    repair = scenario.repair_s if r.repair_s is None else r.repair_s
    if fam in LEGACY_FAMILIES:
        return {"family": fam, "depth": 1.0, "rise_s": 3.0, "repair_s": repair,
                "arousal": "up" if fam == "aversive" else "down", "arousal_scale": 1.0}
    # always the same draws in the same order, so a value given in the scenario does not move the others
    u = _rng(seed, "rupture", k).random(5)
    depth = {"partial": _within(PARTIAL_DEPTH, u[0]), "leave_group": _within(LEAVE_GROUP_DEPTH, u[1])}.get(fam, 1.0)
    arousal = AROUSAL_SHIFTS[min(int(u[3] * 3), 2)] if fam == "leave_group" else "none"
    rise = 3.0
    if fam == "drift":
        rise = min(_within(DRIFT_RAMP_S, u[2]) if r.ramp_s is None else r.ramp_s, r.duration_s)
        repair = rise if r.repair_s is None else r.repair_s
    elif fam == "sudden":
        rise = 0.0
        repair = 0.0 if r.repair_s is None else r.repair_s
    return {"family": fam, "depth": float(depth if r.depth is None else r.depth), "rise_s": float(rise),
            "repair_s": float(repair), "arousal": arousal if r.arousal is None else r.arousal,
            "arousal_scale": float(_within(AROUSAL_SCALE, u[4]))}


def _within(bounds: tuple[float, float], u: float) -> float:
    """The point a fraction ``u`` (0-1) of the way from ``bounds[0]`` to ``bounds[1]``."""
    return bounds[0] + (bounds[1] - bounds[0]) * u


# --------------------------------------------------------------------------- main entry
def simulate_session(scenario: Scenario, seed: int = 0, duration_s: float | None = None, *,
                     source_prefix: str = "attune-sim") -> Session:
    """Generate every stream of a scenario.

    Parameters
    ----------
    scenario : Scenario
    seed : int
        Same seed, same data (bitwise).
    duration_s : float | None
        Seconds of data; default the scenario's ``duration_s``.
    source_prefix : str
        Start of every ``source_id`` (``<prefix>-<seed>-<participant>-<device>-<kind>``),
        stable per (participant, device, kind, seed) so a restarted simulator is the same stream
        (a second simulator publishing the same session meanwhile appends ``-run2``: see
        :mod:`attune_monitor.acquisition.simulator`).

    Returns
    -------
    session : Session
    """
    duration = float(scenario.duration_s if duration_s is None else duration_s)
    if not duration > 0:
        raise ValueError(
            f"Invalid value for 'duration_s': expected a positive number of seconds, but got {duration_s}.")
    fs = GRID_HZ
    n = int(np.ceil((duration + 4.0) * fs)) + 1
    t = np.arange(n) / fs
    ids = scenario.ids
    band_lo, band_hi = scenario.drive_band_hz
    rng_shared = _rng(seed, "shared")
    shared = band_noise(rng_shared, n, fs, band_lo, band_hi)
    # shared conversational moments: time, salience, direction of the HR response
    rng_ev = _rng(seed, "events")
    ev_t = _poisson_times(rng_ev, t, np.full(n, scenario.shared_events_per_min / 60.0))
    ev_t = ev_t[ev_t < duration]
    ev_sal = rng_ev.lognormal(0.0, 0.35, ev_t.size) * scenario.shared_salience
    ev_dir = np.where(rng_ev.random(ev_t.size) < 0.7, 1.0, -0.75)

    c_base = np.interp(t, [p for p, _ in scenario.coupling], [c for _, c in scenario.coupling])
    # each rupture's model, drawn per (seed, rupture number) so adding a rupture does not move the others
    models = [rupture_model(scenario, seed, k) for k in range(len(scenario.ruptures))]
    ruptures = [(r, m) for r, m in zip(scenario.ruptures, models) if r.onset_s < duration]

    streams: list[SimStream] = []
    latent: dict = {}
    for pid in ids:
        p = next(q for q in scenario.participants if q.id == pid)
        rng = _rng(seed, "person", pid)
        own = band_noise(rng, n, fs, band_lo, band_hi)

        # rupture envelopes: w = 1 inside the rupture, back to 0 over the repair time
        c_i = c_base.copy()
        aversive = np.zeros(n)
        withdrawn = np.zeros(n)
        shift = None     # signed arousal shift of the newer families (None: none, the data stay as before)
        neutral = False  # a newer family: lost shared responses are replaced by own ones (arousal unchanged)
        for r, m in ruptures:
            if r.who != pid:
                continue
            if m["family"] in LEGACY_FAMILIES:
                rep = m["repair_s"]
                w = _ramp(t, r.onset_s, r.onset_s + r.duration_s, 3.0, rep)
                c_i *= 1.0 - w
                if r.style == "aversive":
                    # arousal climbs over ~20 s and stays up until the repair
                    aversive = np.maximum(aversive, _ramp(t, r.onset_s, r.onset_s + r.duration_s, 20.0, rep + 5.0))
                else:
                    withdrawn = np.maximum(withdrawn, w)
                continue
            neutral = True
            w = _ramp(t, r.onset_s, r.onset_s + r.duration_s, m["rise_s"], m["repair_s"])
            c_i *= 1.0 - m["depth"] * w
            if m["arousal"] != "none":
                sign = 1.0 if m["arousal"] == "up" else -1.0
                env = _ramp(t, r.onset_s, r.onset_s + r.duration_s, AROUSAL_SHIFT_RISE_S, m["repair_s"] + 5.0)
                shift = (np.zeros(n) if shift is None else shift) + sign * m["arousal_scale"] * env
        extra_own = None
        if neutral:
            # the moments they no longer share become moments of their own, at the same rate
            extra_own = scenario.shared_events_per_min / 60.0 * np.clip(
                np.sqrt(np.clip(c_base, 0.0, 1.0)) - np.sqrt(np.clip(c_i, 0.0, 1.0)), 0.0, None)
        drive = np.sqrt(c_i) * shared + np.sqrt(1.0 - c_i) * own
        drive = drive * (1.0 - 0.75 * withdrawn)

        # shared stressors: everybody listed reacts at once
        stress = np.zeros(n)
        stress_hr = np.zeros(n)
        stress_eda = np.zeros(n)
        stress_onsets = []
        for on, off, c in _windows(scenario.confounds, "shared_stressor", pid, duration):
            env = _ramp(t, on + rng.uniform(0.5, 2.0), off, 6.0, 15.0)
            stress = np.maximum(stress, env)
            stress_hr += float(c.options.get("hr_bpm", 15.0)) * env
            stress_eda += float(c.options.get("eda_us", 1.5)) * env
            stress_onsets.append(on)

        # ---- responses to moments: shared ones in proportion to engagement, own ones (more when aversive)
        resp_t, resp_sal, resp_dir, resp_shared = _responses(
            _rng(seed, "respond", pid), t, c_i, aversive, withdrawn, ev_t, ev_sal, ev_dir,
            scenario.own_events_per_min, extra_own, shift)
        hr_events = _hr_responses(t, resp_t, resp_sal * resp_dir)

        # ---- heart: RSA + drive + events, then IPFM beats
        rng_h = _rng(seed, "heart", pid)
        f_resp = p.resp_hz * (1.0 + 0.12 * band_noise(rng_h, n, fs, 0.002, 0.03))
        resp_phase = 2 * np.pi * np.cumsum(f_resp) / fs + rng_h.uniform(0, 2 * np.pi)
        rsa_amp = RSA_BPM * (1.0 - 0.4 * stress) * (1.0 - 0.3 * aversive)
        hr = (p.hr_bpm + HR_DRIVE_BPM * drive + rsa_amp * np.sin(resp_phase)
              + (0.4 * p.noise) * band_noise(rng_h, n, fs, 0.1, 0.5)  # fast beat-to-beat variability
              + hr_events + stress_hr + 10.0 * aversive - 2.0 * withdrawn)
        if shift is not None:
            hr = hr + AROUSAL_SHIFT_BPM * shift
        hr = np.clip(hr, 35.0, 200.0)
        phase = np.concatenate([[0.0], np.cumsum((hr[1:] + hr[:-1]) / 2.0) / 60.0 / fs]) + rng_h.uniform(0, 1)
        levels = np.arange(np.ceil(phase[0]), np.floor(phase[-1]) + 1)
        beats = np.interp(levels, phase, t)
        # beats run on to the end of the grid (duration + 4 s) so waveforms are whole at the end
        # ectopic beats: premature by 35 % of the RR, next beat on time (full compensatory pause)
        ectopic_times = []
        for on, off, c in _windows(scenario.confounds, "ectopic", pid, duration):
            cand = np.flatnonzero((beats >= on) & (beats < off))
            cand = cand[(cand > 0) & (cand < beats.size - 1)][::3]  # never two in a row
            pick = np.sort(rng_h.choice(cand, size=min(int(c.options.get("count", 5)), cand.size), replace=False))
            for k in pick:
                beats[k] = beats[k - 1] + 0.65 * (beats[k] - beats[k - 1])
                ectopic_times.append(float(beats[k]))
        rr = np.diff(beats, prepend=np.nan)  # RR of each beat (from the previous true beat)
        dropout = _windows(scenario.confounds, "strap_dropout", pid, duration)
        sent = ~_in_any(beats, dropout) & (beats < duration)
        sent[0] = False  # the first beat has no RR yet
        latent[pid] = {"t": t, "coupling": c_i, "drive": drive, "hr": hr, "beats": beats[beats < duration],
                       "resp_hz": f_resp, "ectopic_s": ectopic_times,
                       "shared_events_s": ev_t, "shared_events_hr_dir": ev_dir, "response_s": resp_t,
                       "response_shared": resp_shared,
                       "hr_events_bpm": hr_events, "arousal_shift": np.zeros(n) if shift is None else shift}

        has_rr = p.heart in ("rr", "both")
        has_hr = p.heart in ("hr", "both")
        sid = f"{source_prefix}-{seed}-{_slug(pid)}"
        if has_rr:
            streams.append(_make(sid, "rr", pid, "Polar", "H10", "ms", 0.0, beats[sent], rr[sent] * 1000.0))
        if has_hr:
            ticks = np.arange(1.0, duration, 1.0)
            hi = np.searchsorted(beats, ticks, side="right")
            lo = np.searchsorted(beats, ticks - HR_DEVICE_AVERAGING_S, side="right")
            ok = (hi - lo >= 2) & ~_in_any(ticks, dropout)
            hi, lo = hi[ok], lo[ok]
            hr_dev = 60.0 * (hi - lo - 1) / (beats[hi - 1] - beats[lo])
            man, dev = HR_DEVICES[p.eda]
            streams.append(_make(sid, "hr", pid, man, dev, "bpm", 1.0, ticks[ok], np.round(hr_dev, 2),
                                 averaging_s=HR_DEVICE_AVERAGING_S))
        if p.ecg:
            streams.append(_ecg(sid, pid, beats, duration, f_resp, t, dropout, scenario, seed, p.noise))
        if p.ppg:
            streams.append(_ppg(sid, pid, beats, duration, resp_phase, t, dropout, scenario, seed, p.noise))

        # ---- EDA
        if p.eda != "none":
            streams.append(_eda(sid, p, t, drive, aversive, withdrawn, stress, stress_eda, stress_onsets,
                                resp_t, resp_sal, duration, scenario, seed, latent[pid], shift))

    truth = _truth(scenario, seed, duration, ruptures, latent)
    return Session(scenario=scenario, seed=int(seed), duration_s=duration, streams=streams, truth=truth, latent=latent)


def _make(sid, kind, pid, manufacturer, device, unit, srate, ts, values, averaging_s=None) -> SimStream:
    typ = {"rr": "RR", "hr": "HR", "eda": "EDA", "ecg": "ECG", "ppg": "PPG"}[kind]
    return SimStream(kind=kind, participant=pid, name=f"{pid} {device} {typ}", type=typ, srate=float(srate),
                     source_id=f"{sid}-{_slug(device)}-{kind}", manufacturer=manufacturer, device=device, unit=unit,
                     timestamps=np.asarray(ts, dtype=np.float64),
                     values=np.asarray(values, dtype=np.float32).reshape(-1, 1), averaging_s=averaging_s)


def _responses(rng, t, c_i, aversive, withdrawn, ev_t, ev_sal, ev_dir, own_per_min=OWN_EVENTS_PER_MIN,
               extra_own_hz=None, shift=None):
    """The moments one person responds to: shared ones with probability sqrt(coupling), plus own ones.

    ``own_per_min`` is the rate of own moments at rest; ``extra_own_hz`` (shape (n,), or None) adds own
    moments per second (the shared ones a newer rupture family no longer responds to), and ``shift``
    (shape (n,), or None) scales the own rate by ``exp(AROUSAL_SHIFT_RATE * shift)``.

    Returns
    -------
    times, salience, direction, shared : ndarray, shape (n_responses,)
        Response onsets (s, after the person's latency), salience, HR direction (+1 up, -0.75 down) and
        whether the moment was a shared one; sorted by time.
    """
    latency = rng.uniform(1.0, 3.0)  # this person's response latency
    gain = rng.uniform(0.7, 1.3)      # this person's responsiveness
    p_resp = np.sqrt(np.clip(np.interp(ev_t, t, c_i), 0.0, 1.0))
    hit = rng.random(ev_t.size) < p_resp
    jitter = rng.normal(0.0, 0.25, ev_t.size)
    sh_t = (ev_t + latency + jitter)[hit]
    sh_sal = (ev_sal * gain * rng.lognormal(0.0, 0.25, ev_t.size))[hit]
    own_rate = own_per_min / 60.0 * (1.0 + 3.0 * aversive) * (1.0 - withdrawn)
    if shift is not None:
        own_rate = own_rate * np.exp(AROUSAL_SHIFT_RATE * shift)
    if extra_own_hz is not None:
        own_rate = own_rate + extra_own_hz
    own_t = _poisson_times(rng, t, own_rate)
    own_sal = gain * rng.lognormal(0.0, 0.35, own_t.size)
    own_dir = np.where(rng.random(own_t.size) < 0.7, 1.0, -0.75)
    times = np.concatenate([sh_t, own_t + latency])
    sal = np.concatenate([sh_sal, own_sal])
    dirs = np.concatenate([ev_dir[hit], own_dir])
    shared = np.r_[np.ones(sh_t.size, bool), np.zeros(own_t.size, bool)]
    order = np.argsort(times, kind="stable")
    return times[order], sal[order], dirs[order], shared[order]


def _hr_responses(t: np.ndarray, onsets: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Sum of transient HR responses ``HR_EVENT_BPM * a * (s / tau) exp(1 - s / tau)`` on grid ``t``, shape (n,)."""
    fs = 1.0 / (t[1] - t[0])
    imp = np.zeros(t.size)
    pos = onsets * fs
    k = np.floor(pos).astype(int)
    frac = pos - k
    ok = (k >= 0) & (k + 1 < t.size)
    np.add.at(imp, k[ok], amps[ok] * (1.0 - frac[ok]))  # sub-grid onset: split between the two grid points
    np.add.at(imp, k[ok] + 1, amps[ok] * frac[ok])
    s = np.arange(int(8 * HR_EVENT_TAU_S * fs)) / fs
    kernel = HR_EVENT_BPM * (s / HR_EVENT_TAU_S) * np.exp(1.0 - s / HR_EVENT_TAU_S)
    return np.convolve(imp, kernel)[: t.size]


def _eda(sid, p, t, drive, aversive, withdrawn, stress, stress_eda, stress_onsets, resp_t, resp_sal, duration,
         scenario, seed, latent_p, shift=None) -> SimStream:
    man, dev, fs, step, noise_sd = EDA_DEVICES[p.eda]
    rng = _rng(seed, "eda", p.id)
    ts = np.arange(int(np.floor(duration * fs)) + 1) / fs
    ts = ts[ts < duration]
    # tonic: level + slow part of the drive + an own slow drift
    slow = uniform_filter1d(drive, int(20 * GRID_HZ), mode="nearest")  # 20 s moving average
    drift = np.cumsum(rng.standard_normal(t.size)) / np.sqrt(t.size)  # a random walk spanning the session
    tonic = (p.eda_us * (1.0 + 0.06 * slow + 0.08 * drive + 0.15 * drift) + 1.2 * aversive
             - 0.3 * withdrawn * p.eda_us / 4 + stress_eda)
    if shift is not None:
        tonic = tonic + AROUSAL_SHIFT_EDA * p.eda_us * shift
    tonic = np.maximum(tonic, 0.2 * p.eda_us)
    # SCRs: spontaneous (rate follows the drive) + responses to moments (shared and own, see _responses)
    rate = (SCR_RATE_PER_MIN / 60.0 * np.exp(0.6 * drive) * (1.0 + 3.0 * aversive) * (1.0 - 0.75 * withdrawn)
            * (1 + stress))
    if shift is not None:
        rate = rate * np.exp(AROUSAL_SHIFT_RATE * shift)
    spont = _poisson_times(rng, t, rate)
    stress_scr = np.array([on + rng.uniform(1.0, 3.0) for on in stress_onsets])
    onsets = np.concatenate([spont, resp_t, stress_scr])
    amps = np.concatenate([rng.lognormal(np.log(0.25), 0.5, spont.size), SCR_EVENT_US * resp_sal,
                           rng.lognormal(np.log(1.0), 0.3, stress_scr.size)])
    amps *= np.interp(onsets, t, 1.0 - 0.5 * withdrawn) * p.eda_us / 4.0
    decays = rng.uniform(5.0, 9.0, onsets.size)
    order = np.argsort(onsets, kind="stable")
    onsets, amps, decays = onsets[order], amps[order], decays[order]
    latent_p.update(scr_onsets_s=onsets, scr_amps_us=amps, scr_decay_s=decays, eda_tonic_us=tonic)
    x = np.interp(ts, t, tonic)
    for on, a, tau in zip(onsets, amps, decays):
        i0, i1 = np.searchsorted(ts, [on, on + 8 * tau])
        x[i0:i1] += a * _scr_kernel(ts[i0:i1] - on, SCR_TAU_RISE, tau)
    # motion: sharp spikes (electrodes shift)
    for on, off, c in _windows(scenario.confounds, "motion", p.id, duration):
        for at in np.sort(rng.uniform(on, off, int(c.options.get("count", 5)))):
            width = rng.uniform(0.2, 0.5)
            x += rng.uniform(1.0, 3.0) * np.clip(1.0 - np.abs(ts - at) / width, 0.0, None)
    x += (noise_sd * p.noise) * rng.standard_normal(ts.size)
    keep = np.ones(ts.size, bool)
    for on, off, c in _windows(scenario.confounds, "electrode_loss", p.id, duration):
        m = (ts >= on) & (ts < off)
        if c.options.get("mode", "zero") == "gap":
            keep &= ~m
        else:
            x[m] = np.abs(0.004 * rng.standard_normal(int(m.sum())))
    x = np.round(np.maximum(x, 0.0) / step) * step
    return _make(sid, "eda", p.id, man, dev, "microsiemens", fs, ts[keep], x[keep])


def _ecg(sid, pid, beats, duration, f_resp, t, dropout, scenario, seed, noise=1.0) -> SimStream:
    rng = _rng(seed, "ecg", pid)
    ts = np.arange(int(np.floor(duration * ECG_HZ)) + 1) / ECG_HZ
    ts = ts[ts < duration]
    rr = np.diff(beats, prepend=beats[0] - (beats[1] - beats[0]) if beats.size > 1 else beats[0] - 1.0)
    amp_scale = rng.uniform(0.8, 1.3)
    # (offset s, amplitude uV, width s); T offset scales with sqrt(RR) (Bazett)
    waves = [(-0.20, 120.0, 0.025), (-0.035, -150.0, 0.010), (0.0, 1200.0, 0.011), (0.035, -320.0, 0.011),
             (None, 300.0, 0.055)]
    x = np.zeros(ts.size)
    nxt = np.searchsorted(beats, ts)
    for shift in (-2, -1, 0, 1):
        k = np.clip(nxt + shift, 0, beats.size - 1)
        dt = ts - beats[k]
        for off, a, w in waves:
            mu = 0.30 * np.sqrt(rr[k]) if off is None else off
            x += a * np.exp(-0.5 * ((dt - mu) / w) ** 2)
    x *= amp_scale
    resp_phase = 2 * np.pi * np.cumsum(f_resp) / GRID_HZ
    x += 120.0 * np.sin(np.interp(ts, t, resp_phase)) + 60.0 * np.interp(ts, t,
                                                                         band_noise(rng, t.size, GRID_HZ, 0.01, 0.1))
    x += (12.0 * noise) * rng.standard_normal(ts.size)
    for on, off, c in _windows(scenario.confounds, "motion", pid, duration):
        for at in rng.uniform(on, off, int(c.options.get("count", 5))):
            m = (ts >= at) & (ts < at + rng.uniform(0.5, 1.5))
            x[m] += 400.0 * rng.standard_normal(int(m.sum())) + rng.uniform(-1500, 1500)
    x = np.clip(np.round(x), -32768, 32767)  # 16-bit microvolt ADC
    keep = ~_in_any(ts, dropout)
    return _make(sid, "ecg", pid, "Polar", "H10", "uV", ECG_HZ, ts[keep], x[keep])


def _ppg(sid, pid, beats, duration, resp_phase, t, dropout, scenario, seed, noise=1.0) -> SimStream:
    rng = _rng(seed, "ppg", pid)
    ts = np.arange(int(np.floor(duration * PPG_HZ)) + 1) / PPG_HZ
    ts = ts[ts < duration]
    rr = np.diff(beats, prepend=beats[0] - 1.0)
    ptt = rng.uniform(0.18, 0.26)  # pulse transit time to the wrist
    x = np.zeros(ts.size)
    nxt = np.searchsorted(beats + ptt, ts)
    for shift in (-2, -1, 0):
        k = np.clip(nxt + shift, 0, beats.size - 1)
        dt = ts - beats[k] - ptt
        x += (np.exp(-0.5 * ((dt - 0.10) / 0.08) ** 2)
              + 0.3 * np.exp(-0.5 * ((dt - 0.10 - 0.25 * np.sqrt(rr[k])) / 0.10) ** 2))
    rp = np.interp(ts, t, resp_phase)
    x = 60.0 * x * (1.0 + 0.15 * np.sin(rp)) + 25.0 * np.sin(rp + 1.0)
    x += (30.0 * np.interp(ts, t, band_noise(rng, t.size, GRID_HZ, 0.01, 0.08))
          + (1.5 * noise) * rng.standard_normal(ts.size))
    x -= x.mean()
    for on, off, c in _windows(scenario.confounds, "motion", pid, duration):
        for at in rng.uniform(on, off, int(c.options.get("count", 5))):
            m = (ts >= at) & (ts < at + rng.uniform(0.5, 1.5))
            x[m] += 150.0 * rng.standard_normal(int(m.sum()))
    x = np.round(x, 2)
    keep = ~_in_any(ts, dropout)
    return _make(sid, "ppg", pid, "Empatica", "E4", "au", PPG_HZ, ts[keep], x[keep])


def _truth(scenario: Scenario, seed: int, duration: float, ruptures, latent) -> dict:
    ids = scenario.ids
    rup = []
    for r, m in ruptures:
        rep = m["repair_s"]
        offset = min(r.onset_s + r.duration_s, duration)
        pairs = [sorted([r.who, q], key=ids.index) for q in ids if q != r.who]
        item = {"onset_s": r.onset_s, "offset_s": offset, "repair_s": min(offset + rep, duration),
                "who": r.who, "style": r.style, "pairs": pairs, "family": m["family"]}
        if m["family"] not in LEGACY_FAMILIES:
            # the family is the style evaluate breaks recall down by; what was drawn for it beside
            item["style"] = m["family"]
            item["params"] = {k: m[k] for k in ("depth", "rise_s", "repair_s", "arousal", "arousal_scale")}
        rup.append(item)
    conf = []
    for c in scenario.confounds:
        if c.onset_s >= duration:
            continue
        item = {"kind": c.kind, "participants": list(c.participants), "onset_s": c.onset_s,
                "offset_s": min(c.onset_s + c.duration_s, duration)}
        if c.kind == "ectopic":
            item["times_s"] = sorted(x for q in c.participants for x in latent[q]["ectopic_s"]
                                     if c.onset_s <= x < item["offset_s"])
        if c.kind == "electrode_loss":
            item["mode"] = c.options.get("mode", "zero")
        conf.append(item)
    return {"schema": "attune.truth/1", "scenario": scenario.name, "seed": int(seed), "duration_s": duration,
            "participants": ids, "ruptures": rup, "confounds": conf, "coupling": scenario.mean_coupling}
