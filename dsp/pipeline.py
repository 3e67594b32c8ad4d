"""The session pipeline: raw samples of every stream -> grid -> synchrony -> episodes.

One causal pipeline serves live monitoring, replay and offline analysis, so
that they give the same episodes: whoever owns the samples (LSL inlets, an XDF
file, an E4 export) calls :meth:`SessionPipeline.push` with each stream's new
samples and :meth:`SessionPipeline.advance` with the time up to which data has
arrived. Every stage is chunk-invariant (see ``dsp.heart``, ``dsp.eda``,
``dsp.engine``, ``dsp.detector``), so the outputs do not depend on how the
samples were chunked or how often ``advance`` was called.

Times
-----
Stream timestamps are in the streams' time base (LSL seconds). ``origin`` (in
that time base) is grid sample 0; every time the pipeline reports is
*session time*: seconds since ``origin``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .detector import DetectorConfig, RuptureDetector, SignalLossTracker, arousal_trend, get_preset
from .divergence import AROUSAL_STATES, ArousalDivergence, ArousalTracker, SharedShift
from .divergence import FEATURES as _AROUSAL_FEATURES
from .eda import EdaPreprocessor
from .events import EpisodeEvent, Event, SharedEvent, SignalBack
from .grid import GridBlock
from .iir import one_pole
from .limits import (
    DEFAULT_PRESET,
    DEFAULT_WINDOW_S,
    PRESET_NAMES,
    WINDOW_RANGE_S,
    Limit,
    check_fields,
    check_flag,
    config_error,
)
from .quality import Quality
from .stream_bank import STREAM_BANK_MIN_STREAMS, bank_key
from .stream_bank import available as stream_bank_available
from .synchrony import fisher_mean, single_session_index

__all__ = [
    "DETECTOR_METRICS", "DEFAULT_DETECTOR_METRIC", "detector_metric", "EDA_KINDS", "Slot", "PipelineConfig",
    "engine_config", "Update", "SessionPipeline", "CHANCE_OF", "windows_of", "ChanceLevel", "mean_fisher",
    "ssi",
]

if TYPE_CHECKING:  # imported where used, like the engine itself
    from .engine import EngineConfig

logger = logging.getLogger(__name__)

#: Engine metric the rupture detector follows (and the views show as "synchrony"), per modality. Heart rate:
#: plain windowed Pearson r. Skin conductance: *phasic* synchrony, the best r over lags of +-3 s between the
#: partners' sample-to-sample changes (co-occurring skin-conductance responses, a second or two apart; see
#: ``dsp.engine.EngineConfig``), so that slow shared trends of the levels (a task that arouses both) do not
#: count as being in tune. Each was chosen against the alternatives on simulated sessions (docs/validation.md).
DETECTOR_METRICS = {"hr": "pearson", "eda": "phasic"}
#: The metric followed for a modality not in :data:`DETECTOR_METRICS`.
DEFAULT_DETECTOR_METRIC = "pearson"


def detector_metric(modality: str) -> str:
    """The engine metric the detector follows for ``modality`` (see :data:`DETECTOR_METRICS`)."""
    return DETECTOR_METRICS.get(modality, DEFAULT_DETECTOR_METRIC)

#: Stream kinds that feed the skin-conductance modality (every other kind feeds heart rate).
EDA_KINDS = ("eda",)


@dataclass(frozen=True)
class Slot:
    """One input stream of the pipeline.

    Attributes
    ----------
    participant : str
    kind : {"rr", "hr", "ecg", "ppg", "eda"}
    srate : float
        Nominal rate (0 for irregular streams such as RR).
    name : str
        Stream name, for messages.
    averaging_s : float
        Device HR (``kind="hr"``): seconds each value averages over; its samples are dated back by half of
        it (:class:`attune_monitor.dsp.heart.HeartPreprocessor`). 0 for every other kind.
    """

    participant: str
    kind: str
    srate: float = 0.0
    name: str = ""
    averaging_s: float = 0.0

    @property
    def modality(self) -> str:
        """``"hr"`` or ``"eda"``."""
        return "eda" if self.kind in EDA_KINDS else "hr"


@dataclass(frozen=True)
class PipelineConfig:
    """Pipeline parameters. Windows and steps in seconds.

    Attributes
    ----------
    fs : float
        Common grid rate (Hz).
    window_s : float
        Synchrony window (all modalities).
    step_s : float
        Step between synchrony windows (also the detector's tick).
    max_lag_s : float
        Lag search of the windowed cross-correlation.
    preset : str | dsp.detector.DetectorConfig
        Detector sensitivity preset (a name of :data:`attune_monitor.dsp.detector.PRESETS`), or a config of its own.
    history_s : float
        How much grid and synchrony history is kept for displays (bounded memory).
    arousal : bool
        Feed person-level arousal divergence (:mod:`attune_monitor.dsp.divergence`) to the detector as well as
        synchrony.
    wcc_step_s : float
        Step of the windowed cross-correlation (lead-lag) windows. Neither the detector nor the views use
        them every second, and a 1 s step would cost a sizeable share of the pipeline's time (docs/validation.md).
    """

    fs: float = 4.0
    window_s: float = DEFAULT_WINDOW_S
    step_s: float = 1.0
    max_lag_s: float = 5.0
    preset: str | DetectorConfig = DEFAULT_PRESET
    history_s: float = 600.0
    arousal: bool = True
    wcc_step_s: float = 5.0

    def __post_init__(self) -> None:
        """Check every field (:class:`attune_monitor.errors.ConfigError` naming the field, its range and a fix)."""
        check_fields(self, {
            "fs": Limit(0, None, low_open=True, what="a grid rate in Hz"),
            "window_s": Limit(*WINDOW_RANGE_S, what="seconds"),
            "step_s": Limit(0, self.window_s, low_open=True, what="seconds", bound="window_s"),
            "max_lag_s": Limit(0, None, what="seconds"),  # and short enough for the window: below
            "history_s": Limit(self.window_s, None, what="seconds", bound="window_s"),
            "wcc_step_s": Limit(0, None, low_open=True, what="seconds"),
        })
        # the lead-lag search needs 3 samples per lagged segment of a window (as the engine checks)
        room = round(self.window_s * self.fs) - 3
        if round(self.max_lag_s * self.fs) > room:
            longest = max(room, 0) / self.fs
            raise config_error(self, "max_lag_s", f"seconds that leave 3 grid samples per lagged segment of the "
                               f"{self.window_s:g} s window at {self.fs:g} Hz (at most {longest:g}; or a longer "
                               "window)", self.max_lag_s, example=longest)
        check_flag(self, "arousal")
        named = isinstance(self.preset, str) and self.preset in PRESET_NAMES
        if not (named or isinstance(self.preset, DetectorConfig)):
            raise config_error(self, "preset", f"one of {', '.join(PRESET_NAMES)} (or a DetectorConfig)", self.preset)


def engine_config(config: PipelineConfig, modalities) -> EngineConfig:
    """The synchrony engine's configuration in the pipeline.

    The pipeline's windows, lead-lag windows every ``wcc_step_s``, and only the chance levels of the metrics the
    detector follows (:func:`detector_metric`): plain r's for heart rate, phasic synchrony (with its own) for skin
    conductance.
    """
    from .engine import RING_CHANCE_OF, EngineConfig

    modalities = tuple(modalities)
    return EngineConfig(
        window_s=config.window_s, step_s=config.step_s, wcc_window_s=config.window_s, wcc_step_s=config.wcc_step_s,
        max_lag_s=config.max_lag_s, modalities=modalities,
        chance_of=tuple(sorted({detector_metric(m) for m in modalities} & set(RING_CHANCE_OF))),
        chance_modalities=tuple(m for m in modalities if detector_metric(m) in RING_CHANCE_OF),
        phasic_modalities=tuple(m for m in modalities if detector_metric(m) == "phasic"))


@dataclass
class Update:
    """What one :meth:`SessionPipeline.advance` produced.

    Attributes
    ----------
    grid_start : int
        Index of the first new grid sample (session time ``grid_start / fs``).
    grid : dict
        ``modality -> (n_people, n_new)`` values (NaN where missing).
    quality : dict
        ``modality -> (n_people, n_new)`` uint8 quality codes.
    windows : dict
        ``modality -> {"t": (n_win,), "sync": (n_pairs, n_win), "chance": (n_pairs, n_win), ...}``.
    events : list of Event
        Detector state changes, episode events, signal-loss events and shared events
        (:mod:`attune_monitor.dsp.events`), in time order (a signal's return at the onset of its loss).
    arousal_t : ndarray, shape (n_sec,)
        Session times of the new person-level arousal values.
    arousal : ndarray, shape (n_people, n_sec)
        Log-likelihood ratio "in a rupture" vs "in tune" per person (see :mod:`attune_monitor.dsp.divergence`; NaN:
        unknown).
    arousal_div : ndarray, shape (n_people, len(dsp.divergence.FEATURES), n_sec)
        The divergence features behind ``arousal`` (person's standard units; NaN: unknown), for views that
        say *how* a person moved away (climbing or flattening).
    arousal_smooth, arousal_state : ndarray, shape (n_people, n_sec)
        The same read as the detector reads it (:class:`attune_monitor.dsp.divergence.ArousalTracker`: ``smooth_s``
        mean, the preset's ``arousal_k``, the couple rule): smoothed ratio and codes into
        :data:`attune_monitor.dsp.divergence.AROUSAL_STATES`.
    arousal_reading : tuple
        The :attr:`~attune_monitor.dsp.divergence.ArousalTracker.reading` of the tracker behind ``arousal_smooth``
        and ``arousal_state`` (empty: none), so that a view model with the same tracker can take them as they are.
    """

    grid_start: int = 0
    grid: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    windows: dict = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    arousal_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    arousal: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    arousal_div: np.ndarray = field(default_factory=lambda: np.zeros((0, len(_AROUSAL_FEATURES), 0)))
    arousal_smooth: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    arousal_state: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    arousal_reading: tuple = ()

    @property
    def n_new(self) -> int:
        """Number of new grid samples."""
        return next((v.shape[1] for v in self.grid.values()), 0)

#: From this many people a live window tick leaves the detector's steps to the next tick
#: (:attr:`SessionPipeline.stagger_min_people`): below it a tick's whole work fits its budget.
STAGGER_MIN_PEOPLE = 32


class SessionPipeline:
    """Causal all-participants pipeline.

    Parameters
    ----------
    slots : list of Slot
        The input streams; at most one heart and one EDA stream per participant.
    origin : float
        Time (stream time base) of grid sample 0.
    config : PipelineConfig
    participants : list of str | None
        Participant order (default: order of first appearance in ``slots``).

    Attributes
    ----------
    scalar_pulls : bool
        Take a stream's grid sample of a live tick as Python scalars
        (:meth:`attune_monitor.dsp.grid.GridPreprocessor.pull_scalar`) and every person's of a modality into the
        grid with one array call; False: as blocks (``pull``), a row at a time. The same updates bit for bit.
    stagger_min_people : int | None
        From this many people, a tick that completes synchrony windows leaves the detector's steps of that tick
        to the next :meth:`advance` (the engine's window work and the detector's per-pair work then fall on two
        ticks instead of one; the detector's flags and states come one tick later). The detector receives the very
        same calls in the same order, so its episodes and states are the same bit for bit; ``None``: never.
    """

    scalar_pulls: bool = True
    #: Fewest streams of one kind and parameter set whose live pulls a bank makes at once
    #: (:mod:`attune_monitor.dsp.stream_bank`, with numba; the same grid bit for bit); ``None``: never.
    stream_bank_min: int | None = STREAM_BANK_MIN_STREAMS
    stagger_min_people: int | None = STAGGER_MIN_PEOPLE

    def __init__(self, slots, origin: float, config: PipelineConfig | None = None, participants=None):
        from .engine import SynchronyEngine
        from .heart import HeartPreprocessor

        self.cfg = config or PipelineConfig()
        if isinstance(self.cfg.preset, str):
            get_preset(self.cfg.preset)  # validate early
        self.slots = list(slots)
        self.origin = float(origin)
        self.participants = (list(participants) if participants
                             else list(dict.fromkeys(s.participant for s in self.slots)))
        if len(self.participants) < 2:
            raise ValueError(
                f"Synchrony needs at least 2 participants, but the streams belong to {len(self.participants)} "
                f"({', '.join(self.participants) or 'none'}). Check the roster: each person's streams need a "
                "participant."
            )
        seen: dict[tuple[str, str], int] = {}
        for i, s in enumerate(self.slots):
            key = (s.participant, s.modality)
            if key in seen:
                raise ValueError(
                    f"Participant {s.participant!r} has two {s.modality} streams ({self.slots[seen[key]].name!r} and "
                    f"{s.name!r}); pick one in the roster."
                )
            if s.participant not in self.participants:
                raise ValueError(f"Stream {s.name!r} belongs to {s.participant!r}, who is not in {self.participants}.")
            seen[key] = i
        self.modalities = tuple(m for m in ("hr", "eda") if any(s.modality == m for s in self.slots))
        fs = self.cfg.fs
        self.fs = fs
        self._pre: list[EdaPreprocessor | HeartPreprocessor] = []
        for s in self.slots:
            if s.modality == "eda":
                self._pre.append(EdaPreprocessor(fs=fs, origin=self.origin, srate=s.srate or None))
            else:
                self._pre.append(HeartPreprocessor(kind=s.kind, fs=fs, origin=self.origin, srate=s.srate or None,
                                                   averaging_s=s.averaging_s))
        # large groups: the live pulls of the streams of each kind in one compiled call (dsp.stream_bank)
        self._banks: list = []                     # (bank, the slot of each of its rows)
        self._bank_of: dict[int, tuple] = {}       # slot -> (bank, row)
        self._loose = list(range(len(self.slots)))  # slots pulled one by one
        self._make_banks()
        # (modality, person index) -> slot index
        self._slot_of = {(s.modality, self.participants.index(s.participant)): i for i, s in enumerate(self.slots)}
        n = len(self.participants)
        # modality -> each person's slot, when every person has a stream of it (else absent)
        self._slot_rows = {m: [self._slot_of[(m, p)] for p in range(n)] for m in self.modalities
                           if all((m, p) in self._slot_of for p in range(n))}
        # modality -> (bank index, each person's row) when one bank holds every person's stream of it; then a tick
        # where each of its rows gave one grid sample keeps them as the bank's arrays (_fresh) instead of _pending
        self._bank_rows: dict[str, tuple[int, np.ndarray]] = {}
        for m, row_slots in self._slot_rows.items():
            owner = self._bank_of.get(row_slots[0], (None, 0))[0]
            if owner is not None and all(self._bank_of.get(i, (None, 0))[0] is owner for i in row_slots):
                b = next(j for j, (bank, _) in enumerate(self._banks) if bank is owner)
                self._bank_rows[m] = (b, np.array([self._bank_of[i][1] for i in row_slots], np.int64))
        self._fresh_bank = {b for b, _ in self._bank_rows.values()}
        # bank index -> its pulls' (grid index, (n_rows,) values, (n_rows,) codes), oldest first, not in _pending
        self._fresh: dict[int, list] = {}
        self._pending: list[list] = [[] for _ in self.slots]  # emitted-but-not-consumed grid blocks per slot
        self._emitted = [0] * len(self.slots)     # grid index emitted so far per slot
        self.k = 0                                 # grid samples consumed so far (all people, all modalities)
        self.engine = SynchronyEngine(n, fs, engine_config(self.cfg, self.modalities))
        n_pairs = n * (n - 1) // 2
        self._chance = {m: ChanceLevel(n_pairs, self.cfg.step_s) for m in self.modalities}
        self.arousal = ArousalDivergence(n, fs, self.modalities) if self.cfg.arousal else None
        self._shared_shift = SharedShift(n)
        self.detector = RuptureDetector(self.participants, self.modalities, self.cfg.step_s, self.cfg.preset,
                                        window_s=self.cfg.window_s, arousal=self.arousal is not None)
        self.loss = SignalLossTracker(fs)
        hist = int(self.cfg.history_s * fs)
        # the last history_s seconds of each person's grid values per modality, a ring: grid sample k in column
        # k % hist (see _levels)
        self._level_hist = {m: np.full((n, hist), np.nan) for m in self.modalities}
        dcfg = self.detector.cfg
        self._reading = ArousalTracker(n, dcfg.arousal_k, dcfg.smooth_s, self.cfg.step_s) if self.arousal else None
        # the last history_s seconds of each person's arousal state (for episode contexts)
        hist_sec = int(self.cfg.history_s / self.cfg.step_s)
        self._ar_t = np.full(hist_sec, np.nan)
        self._ar_state = np.zeros((n, hist_sec), np.uint8)
        self.pairs = self.detector.pairs
        # the detector's calls of a window tick left to the next advance (stagger_min_people): (method, args), in order
        self._detector_calls: list[tuple] = []
        self.last_time = 0.0

    def _make_banks(self) -> None:
        """Banks for the kinds of stream with at least ``stream_bank_min`` preprocessors of one parameter set."""
        if self.stream_bank_min is None:
            return
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(self._pre):
            key = bank_key(p)
            if key is not None:
                groups.setdefault(key, []).append(i)
        big = [g for g in groups.values() if len(g) >= max(self.stream_bank_min, 1)]
        if not big or not stream_bank_available():
            return
        from .stream_bank import EdaBank, HeartRateBank

        for g in big:
            pres = [self._pre[i] for i in g]
            bank = EdaBank(pres) if isinstance(pres[0], EdaPreprocessor) else HeartRateBank(pres)
            self._banks.append((bank, g))
            for r, i in enumerate(g):
                self._bank_of[i] = (bank, r)
        self._loose = [i for i in range(len(self.slots)) if i not in self._bank_of]

    def _drop_banks(self) -> None:
        """Hand every banked stream back to its preprocessor object, for good."""
        self._spill_fresh()
        self._fresh_bank.clear()
        self._bank_rows.clear()
        for bank, _ in self._banks:
            for r in np.flatnonzero(bank.inside).tolist():
                bank.release(r)
        self._banks, self._bank_of, self._loose = [], {}, list(range(len(self.slots)))

    # -- input ------------------------------------------------------------------------------
    def push(self, slot: int, timestamps: np.ndarray, values: np.ndarray) -> None:
        """Give the pipeline new raw samples of one stream.

        Parameters
        ----------
        slot : int
            Index into ``slots``.
        timestamps : ndarray, shape (n,)
            Stream-time stamps, increasing.
        values : ndarray, shape (n,)
            Values in canonical units (RR s, HR bpm, ECG mV, PPG au, EDA uS); NaN for rejected samples.
        """
        ts = np.asarray(timestamps, dtype=float).ravel()
        vs = np.asarray(values, dtype=float).ravel()
        if ts.size:
            banked = self._bank_of.get(slot)
            if banked is not None:
                bank, r = banked
                if bank.held[r]:
                    if bank.push(r, ts, vs):
                        return
                    bank.release(r)  # (timestamps to drop, a burst): the object takes it
            self._pre[slot].push(ts, vs)

    def note_shared_event(self, t: float, what: str = "marker") -> None:
        """Something everybody shared happened at session time ``t`` (s): a marker, a task or phase switch.

        Every pair is re-baselined when the detector reaches ``t`` (:meth:`attune_monitor.dsp.detector.RuptureDetector.
        note_shared_event`). Note events known in advance (a recording's markers) before processing.
        """
        if self._detector_calls:  # behind the detector's steps still waiting (a staggered tick)
            self._detector_calls.append((self.detector.note_shared_event, (t, what)))
        else:
            self.detector.note_shared_event(t, what)

    # -- processing ----------------------------------------------------------------------------
    def advance(self, until: float, end: float | None = None) -> Update:
        """Process everything that can be processed with data up to ``until``.

        Parameters
        ----------
        until : float
            Stream-time up to which every stream's samples have been pushed.
        end : float | None
            The session's end (stream time) when it is over: no grid sample
            after it is produced. Use :meth:`flush` for that.

        Returns
        -------
        update : Update
        """
        self._pull_streams(until)
        ready = min(self._emitted) if self._emitted else self.k
        if end is not None:
            ready = min(ready, int(math.floor((end - self.origin) * self.fs)) + 1)
        upd = Update(grid_start=self.k)
        if self._detector_calls:
            # the last tick's detector steps (stagger_min_people), before anything of this tick moves: the level and
            # arousal histories its episodes' contexts read are as that tick left them
            waiting, self._detector_calls = self._detector_calls, []
            self._run_detector_calls(waiting, upd)
        if ready <= self.k:
            upd.events.sort(key=_time_order)
            return upd
        n_new = ready - self.k
        n = len(self.participants)
        calls: list[tuple] = []  # this tick's detector steps, in order (see _run_detector_calls)
        for m in self.modalities:
            one = self._take_scalars(m) if n_new == 1 else None
            if one is not None:
                vals, qual = one
            else:
                if self._fresh:
                    self._spill_fresh(m)
                vals = np.full((n, n_new), np.nan)
                qual = np.full((n, n_new), Quality.NO_DATA, dtype=np.uint8)
                for person in range(n):
                    slot = self._slot_of.get((m, person))
                    if slot is None:
                        continue
                    v, q = self._take(slot, n_new)
                    vals[person], qual[person] = v, q
            upd.grid[m], upd.quality[m] = vals, qual
            for ev in self.loss.update_rows(self.participants, m, self.k, qual):
                # known once the run reached the tracker's minimum length: the same for any chunking
                calls.append((self.detector.note_signal_loss,
                              (ev.participant, ev.onset_s, ev.onset_s + self.loss.min_n / self.fs, ev.offset_s)))
                upd.events.append(ev)
            self._remember_levels(m, vals)
        res = self.engine.push(upd.grid)
        if self.arousal is not None:
            assert self._reading is not None  # made together with self.arousal
            upd.arousal_t, upd.arousal, upd.arousal_div = self.arousal.push(upd.grid)
            for te in self._shared_shift.push(upd.arousal_t, self.arousal.last_relative):
                # everybody's arousal moved at once (a task switch, a shared stressor): re-baseline, don't flag
                calls.append((self.detector.note_shared_event, (te, "everybody's arousal moved at once")))
                upd.events.append(SharedEvent(t=te, what="everybody's arousal moved at once"))
            upd.arousal_smooth, upd.arousal_state = self._reading.push(upd.arousal, upd.arousal_div)
            upd.arousal_reading = self._reading.reading
            if upd.arousal_t.size:
                self._remember_arousal(upd.arousal_t, upd.arousal_state)
        for m in self.modalities:
            w = upd.windows[m] = windows_of(res[m], len(self.detector.pairs), m)
            w["chance_level"] = self._chance[m].update(w["chance"])
        self.k = ready
        self.last_time = ready / self.fs
        windowed = False
        for m in self.modalities:
            w = upd.windows[m]
            if w["t"].size:
                windowed = True
                calls.append((self.detector.update, (m, w["t"], w["sync"], w["chance"], w["chance_sd"])))
        if self.arousal is not None and upd.arousal_t.size:
            calls.append((self.detector.update_arousal, (upd.arousal_t, upd.arousal, upd.arousal_div)))
        if windowed and end is None and self.stagger_min_people is not None and n >= self.stagger_min_people:
            self._detector_calls = calls  # the engine's window work was this tick's: the detector's is the next's
        else:
            self._run_detector_calls(calls, upd)
        upd.events.sort(key=_time_order)
        return upd

    def _run_detector_calls(self, calls: list[tuple], upd: Update) -> None:
        """Make the detector's ``calls`` (``(method, args)``, in order) and add what they raise to ``upd.events``."""
        for method, args in calls:
            evs = method(*args)
            for dev in evs or ():
                if isinstance(dev, EpisodeEvent):
                    self._set_context(dev.episode, dev.t)
                upd.events.append(dev)

    def _pull_streams(self, until: float) -> None:
        """Pull every stream's preprocessor up to ``until``; what they emit goes to ``_pending``."""
        scalar = self.scalar_pulls
        if self._banks and not scalar:
            self._drop_banks()
        if self._banks:
            until = float(until)
            if not math.isfinite(until):
                raise ValueError(f"Invalid value for 'until': expected a finite time in seconds, but got {until!r}.")
            pending, emitted = self._pending, self._emitted
            for b, (bank, slots) in enumerate(self._banks):
                K = bank.K  # its kernels' module (numba is loaded once a bank exists): statuses, columns
                ONE, NOTHING = K.ONE, K.NOTHING
                st = bank.pull(until)
                if b in self._fresh_bank and bank.rows.shape[0] == len(slots) and (st == ONE).all():
                    nxt_all = bank.IN[:, K.I_NEXT]
                    k1 = int(nxt_all[0])
                    # (while a bank has samples kept as arrays, none of its streams has any in _pending)
                    if (nxt_all == k1).all() and (b in self._fresh or not any(pending[i] for i in slots)):
                        # the live tick: every row gave grid sample k1 - 1, kept as arrays for _take_scalars
                        self._fresh.setdefault(b, []).append((k1 - 1, bank.vals.copy(), bank.quals.copy()))
                        for i in slots:
                            emitted[i] = k1
                        continue
                if b in self._fresh:
                    self._spill_fresh(bank=b)
                status = st.tolist()
                inside = bank.inside.tolist()
                vals, quals, nxt = bank.vals.tolist(), bank.quals.tolist(), bank.IN[:, K.I_NEXT].tolist()
                for r, i in enumerate(slots):
                    if inside[r]:
                        st = status[r]
                        if st == ONE:  # one grid sample: pending as (index, value, code)
                            pending[i].append((nxt[r] - 1, vals[r], quals[r]))
                            emitted[i] = nxt[r]
                            continue
                        if st == NOTHING:
                            continue
                        bank.release(r)  # off the scalar path: the object pulls it
                    if type(self._pull_one(i, until, True)) is tuple:
                        bank.adopt(r)  # a plain pull again: back into the bank
        for i in self._loose:
            self._pull_one(i, until, scalar)

    def _pull_one(self, i: int, until: float, scalar: bool):
        """Pull slot ``i``'s preprocessor up to ``until`` (``pull_scalar`` when ``scalar``); returns what it gave."""
        p = self._pre[i]
        block = p.pull_scalar(until) if scalar else p.pull(until)
        if isinstance(block, tuple):  # one grid sample, (value, code): pending as (index, value, code)
            self._pending[i].append((p.next_index - 1, *block))
            self._emitted[i] = p.next_index
        elif block.values.size:
            self._pending[i].append(block)
            self._emitted[i] = block.start + block.values.size
        return block

    def _spill_fresh(self, modality: str | None = None, bank: int | None = None) -> None:
        """Put the grid samples kept as banks' arrays (``_fresh``) into ``_pending`` as scalars, as pulled one by one.

        Only those of ``modality``'s banks, or of bank number ``bank``, when given.
        """
        pending = self._pending
        for b in list(self._fresh):
            slots = self._banks[b][1]
            if (modality is not None and self.slots[slots[0]].modality != modality) or bank not in (None, b):
                continue
            for k, vals, quals in self._fresh.pop(b):
                for i, v, q in zip(slots, vals.tolist(), quals.tolist()):
                    pending[i].append((k, v, q))

    def _take_scalars(self, m: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Take the next grid sample of every person in modality ``m`` when each is pending as scalars (a live tick).

        Returns
        -------
        (vals, qual) : ndarray, shape (n_people, 1), float64 and uint8 | None
            None (nothing taken) when a person has no stream of ``m`` or their next sample is in a block.
        """
        if self._fresh:
            b, rows = self._bank_rows.get(m, (-1, None))
            queue = self._fresh.get(b)
            if queue and queue[0][0] == self.k:  # every person's sample k, from one bank's pull
                _, vals, quals = queue.pop(0)
                if not queue:
                    del self._fresh[b]
                return vals[rows].reshape(-1, 1), quals[rows].reshape(-1, 1)
            self._spill_fresh(m)
        slots = self._slot_rows.get(m)
        if slots is None:
            return None
        pending = self._pending
        heads = [pending[s][0] for s in slots]
        if not all(type(h) is tuple for h in heads):
            return None
        for s in slots:
            del pending[s][0]
        _, v, q = zip(*heads)
        return np.array(v, np.float64).reshape(-1, 1), np.array(q, np.uint8).reshape(-1, 1)

    def _take(self, i: int, n_new: int) -> tuple[np.ndarray, np.ndarray]:
        """Take the next ``n_new`` grid samples of slot ``i`` from its pending blocks (or scalar samples)."""
        blocks = self._pending[i]
        b = _as_block(blocks, 0)
        if b.values.shape[0] == n_new:  # the live case: the one block pulled since (copied by the caller)
            blocks.pop(0)
            return b.values, b.quality
        vals, quals, need = [], [], n_new
        while need > 0:
            b = _as_block(blocks, 0)
            take = min(need, b.values.size)
            vals.append(b.values[:take])
            quals.append(b.quality[:take])
            if take == b.values.size:
                blocks.pop(0)
            else:
                blocks[0] = _Block(b.start + take, b.values[take:], b.quality[take:])
            need -= take
        return np.concatenate(vals), np.concatenate(quals).astype(np.uint8)

    def _remember_levels(self, m: str, vals: np.ndarray) -> None:
        """Write the new grid values (n_people, n_new) of grid samples ``k ..`` into the ring of modality ``m``."""
        h = self._level_hist[m]
        hist = h.shape[1]
        n_new = vals.shape[1]
        k0 = self.k
        if n_new > hist:  # only the last hist samples stay
            vals, k0, n_new = vals[:, -hist:], k0 + n_new - hist, hist
        a = k0 % hist
        first = min(n_new, hist - a)
        h[:, a:a + first] = vals[:, :first]
        h[:, :n_new - first] = vals[:, first:]

    def _remember_arousal(self, t: np.ndarray, state: np.ndarray) -> None:
        """Keep the new seconds' times (n_sec,) and arousal state codes (n_people, n_sec) for episode contexts."""
        keep = self._ar_t.size
        self._ar_t = np.concatenate([self._ar_t, t])[-keep:]
        self._ar_state = np.concatenate([self._ar_state, state], axis=1)[:, -keep:]

    def _levels(self, m: str, person: int) -> np.ndarray:
        """Grid values of ``person`` in modality ``m`` over the last history_s seconds, oldest first.

        Returns
        -------
        levels : ndarray, shape (hist,)
            Grid samples ``self.k - hist .. self.k - 1`` (NaN before the session's start).
        """
        h = self._level_hist[m][person]
        a = self.k % h.shape[0]
        return np.concatenate([h[a:], h[:a]])

    def _set_context(self, ep, at: float) -> None:
        """Arousal context (rising / falling / steady) of each person of the pair in the episode, as known at ``at``.

        A person whose arousal was moving away from the others during the episode (see :meth:`_moved_away`)
        is "rising" when it climbed (aversive) and "falling" when it flattened (withdrawn); for the others,
        the trend of their standardised heart-rate / skin-conductance level over the episode.
        """
        hist_n = next(iter(self._level_hist.values())).shape[1]
        t = (self.k - hist_n + np.arange(hist_n)) / self.fs
        end = ep.nadir_s if ep.offset_s is None else ep.offset_s
        # the episode may have moved on within this advance (chunk-dependent): only what was known at ``at``
        end = min(max(end, ep.flagged_s), at)
        moved = self._moved_away(ep, end)
        for person in ep.pair:
            if person in moved:
                ep.context[person] = moved[person]
                continue
            pi = self.participants.index(person)
            zs = []
            for m in self.modalities:
                # only samples up to the episode's end: what arrived later depends on the chunking
                x = np.where(t <= end, self._levels(m, pi), np.nan)
                ok = np.isfinite(x)
                if ok.sum() < 8:
                    continue
                sd = np.nanstd(x)
                zs.append((x - np.nanmean(x)) / (sd if sd > 0 else 1.0))
            if not zs:
                ep.context[person] = "steady"
                continue
            stack = np.vstack(zs)
            n_ok = np.isfinite(stack).sum(axis=0)
            level = np.where(n_ok > 0, np.nansum(stack, axis=0) / np.maximum(n_ok, 1), np.nan)
            ep.context[person] = arousal_trend(t, level, ep.onset_s, end)

    def _moved_away(self, ep, end: float) -> dict:
        """``{person: "rising" | "falling"}`` for members of the episode's pair whose arousal moved away.

        Moving away: the person's arousal state (:class:`attune_monitor.dsp.divergence.ArousalTracker`, as the views
        show it) was climbing or flattening at some second between 10 s before the onset and ``end``; "rising" when
        climbing was the more frequent of the two, else "falling".
        """
        if self.arousal is None:
            return {}
        sel = np.isfinite(self._ar_t) & (self._ar_t >= ep.onset_s - 10.0) & (self._ar_t <= end + 1e-9)
        climbing, flattening = AROUSAL_STATES.index("climbing"), AROUSAL_STATES.index("flattening")
        out = {}
        for p in ep.pair:
            codes = self._ar_state[self.participants.index(p), sel]
            up, down = int((codes == climbing).sum()), int((codes == flattening).sum())
            if up or down:
                out[p] = "rising" if up >= down else "falling"
        return out

    def flush(self, end: float) -> Update:
        """The session is over at stream time ``end``: process what is left up to it."""
        horizon = end + max(p.latency for p in self._pre) + 1.0 / self.fs
        return self.advance(horizon, end=end)

    def finish(self) -> list:
        """End of session: returns all episodes (open ones stay unrepaired)."""
        if self._detector_calls:  # a staggered last tick (without flush): its detector steps first
            self._run_detector_calls(self._detector_calls, Update(grid_start=self.k))
            self._detector_calls = []
        return self.detector.finish(self.last_time)


@dataclass
class _Block:
    start: int
    values: np.ndarray
    quality: np.ndarray


def _as_block(pending: list, j: int) -> _Block | GridBlock:
    """Entry ``j`` of a slot's pending list as a block.

    A sample pending as ``(index, value, code)`` becomes the block ``pull`` would have given (replaced in the list).
    """
    b = pending[j]
    if type(b) is tuple:
        k, v, q = b
        b = pending[j] = _Block(k, np.array([v]), np.array([q], np.uint8))
    return b


#: Engine metric holding the surrogate (chance) level of each detector metric.
CHANCE_OF = {"synchrony": ("surrogate_mean", "surrogate_sd"),
             "pearson": ("surrogate_pearson_mean", "surrogate_pearson_sd"),
             "phasic": ("surrogate_phasic_mean", "surrogate_phasic_sd")}


def _time_order(ev: Event) -> float:
    """Where an event goes in an update's time order: at ``t``, a signal's return at the onset of its loss."""
    return ev.onset_s if isinstance(ev, SignalBack) else ev.t


def windows_of(metrics: dict, n_pairs: int, modality: str = "hr") -> dict:
    """The engine's metrics of one modality for one push as plain arrays.

    Returns
    -------
    windows : dict
        ``"t"`` (n_win,) session time of each synchrony window's last sample;
        ``"sync"`` (n_pairs, n_win) the windowed synchrony the detector follows
        (:func:`detector_metric` of ``modality``) and ``"chance"`` / ``"chance_sd"`` the
        surrogate (time-shifted partner) level *of that same metric*; and every
        engine metric by name (``"synchrony"`` = detrended r, ``"pearson"``,
        ``"wcc_lag_s"``, ``"concordance"`` ..., each (n_pairs, n_win') with
        its own ``"<name>_t"``).
    """
    followed = detector_metric(modality)
    main = metrics.get(followed)
    if main is None:
        return {"t": np.zeros(0), "sync": np.zeros((n_pairs, 0)), "chance": np.zeros((n_pairs, 0)),
                "chance_sd": np.zeros((n_pairs, 0))}
    mean_key, sd_key = CHANCE_OF[followed]
    if mean_key not in metrics:  # engine without that surrogate: fall back to the detrended one
        mean_key, sd_key = CHANCE_OF["synchrony"]
    out = {"t": main.end_s - 1.0 / main.fs, "sync": main.values, "chance": metrics[mean_key].values,
           "chance_sd": metrics[sd_key].values}
    for name, m in metrics.items():
        out[name] = m.values
        out[f"{name}_t"] = m.end_s - 1.0 / m.fs
    return out


class ChanceLevel:
    """Causal running chance level per pair: exponentially weighted mean of the per-window surrogate.

    One window's surrogate (a handful of time-shifted partners) is too noisy to
    draw or to compare against; this is the level views show. State is explicit
    (``level``), so chunked == batch.

    Parameters
    ----------
    n_pairs : int
    step_s : float
        Seconds between windows.
    halflife_s : float
    """

    def __init__(self, n_pairs: int, step_s: float, halflife_s: float = 60.0):
        self.alpha = 1.0 - 0.5 ** (step_s / halflife_s)
        self.level = np.full(n_pairs, np.nan)

    def update(self, chance: np.ndarray) -> np.ndarray:
        """Feed (n_pairs, n_win) surrogate means; return the running level after each window, same shape."""
        chance = np.asarray(chance, dtype=float)
        if chance.shape[1] and np.isfinite(chance).all() and np.isfinite(self.level).all():
            # the usual case: one first-order IIR filter per pair, state carried in zi
            a = self.alpha
            out = one_pole(a, chance, self.level)  # scipy.signal.lfilter's one-pole recursion, bitwise
            self.level = out[:, -1].copy()
            return out
        out = np.empty_like(chance)
        for j in range(chance.shape[1]):  # NaN or first windows: skip missing values per pair
            c = chance[:, j]
            ok = np.isfinite(c)
            first = ok & ~np.isfinite(self.level)
            self.level[first] = c[first]
            upd = ok & ~first
            self.level[upd] += self.alpha * (c[upd] - self.level[upd])
            out[:, j] = self.level
        return out


def mean_fisher(r: np.ndarray, axis=-1) -> np.ndarray:
    """Mean of correlations through Fisher z along ``axis`` (NaN ignored; all-NaN gives NaN)."""
    return fisher_mean(r, axis=axis)


def ssi(r: np.ndarray) -> float:
    """Single Session Index of one pair's windowed r (NaN when undefined or infinite: JSON-safe)."""
    v = float(single_session_index(np.asarray(r, dtype=float).ravel()))
    return v if math.isfinite(v) else math.nan
