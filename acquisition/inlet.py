"""One live LSL stream pulled by a worker thread into a bounded ring buffer.

:class:`StreamReceiver` owns the inlet of one stream. Its worker thread

* pulls with ``pull_chunk(timeout=0.0, dest_obj=...)`` into a preallocated
  buffer (the mne-lsl pattern), and adds the sender's clock offset measured by a
  :class:`~attune_monitor.acquisition.lsl.ClockOffset` (what liblsl's ``proc_clocksync`` does, without the memory
  an inlet's own clock synchronisation takes as long as it lives); the stamps are then cleaned by a
  :class:`TimestampCleaner`:
  a jump of the sender's clock is re-anchored and said once, regular streams are
  dejittered (irregular ones are not: dejittering event times would move the
  beats), and every stream is monotonized (what liblsl's ``proc_dejitter |
  proc_monotonize`` would do, but after the jumps are undone: liblsl clamps a
  clock set back by a minute into a minute of identical stamps);
* converts the signal channel to :data:`attune_monitor.acquisition.convention.CANONICAL_UNIT`
  (declared unit, or guessed from the first values' magnitude) and stores it
  with its LSL timestamp in a :class:`~attune_monitor.acquisition.ringbuffer.RingBuffer`;
* stores NaN, inf and physiologically absurd values as NaN with quality code
  ``IMPLAUSIBLE``, counts them and keeps a readable last problem (status
  ``noisy``), never raising;
* notices a stream going quiet (``stale`` after ``max(2 s, 3 x expected
  interval)``) or vanishing (``lost``: liblsl's ``LostError``, the inlet is
  opened with ``recover=False`` so the loss is seen), then re-resolves the same
  stream identity (name, type, source_id and hostname) with bounded resolves,
  recreates the inlet (``recovered``) and records the hole as a :class:`Gap`.
  Nothing is interpolated.

Only the stream it started with is adopted again: a publisher whose header
differs (channels, units, rate, participant, device) is refused, and so is
one the session found live beside it (a duplicate, :meth:`StreamReceiver.refuse`)
or one whose outlet was created while the stream was still sending; while
several candidates claim the identity at once, none is adopted. Each refusal is
a problem in the status, never a silent switch of source. A stream that comes
back from a new run is said (a warning: a restart, or another process using its
identity), and when the run given up comes back (it was unreachable, not ended),
it wins over the run adopted meanwhile, which is refused (:meth:`StreamReceiver.return_to`).

A header claiming an implausible rate, or a heart / EDA stream of text, is not
received at all (:func:`attune_monitor.acquisition.convention.unusable_reason`): buffers are sized
by the rate, and liblsl's queue is kept to :data:`LSL_QUEUE_SECONDS`.

Status is a state the user sees: ``connecting``, ``connected``, ``noisy``,
``stale``, ``lost``, ``recovered``, ``closed``, each with the time it began.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attune_monitor.dsp.quality import Quality

from .convention import CANONICAL_UNIT, StreamDescriptor, describe, header_fingerprint, unusable_reason
from .discovery import duplicate_message, resolve_identity
from .lsl import ClockOffset, pylsl, stream_xml
from .ringbuffer import Chunk, RingBuffer

__all__ = [
    "PLAUSIBLE_RANGE", "IRREGULAR_MAX_RATE", "STATES", "LSL_QUEUE_SECONDS", "STALE_MISSES_LOST", "Gap",
    "ReceiverStatus", "processing_flags", "DEJITTER_HALFTIME", "CLOCK_JUMP_BACK_S", "CLOCK_JUMP_FORWARD_S",
    "TimestampCleaner", "StreamReceiver", "RECEIVER_PULLS_PER_S", "MAX_PULL_INTERVAL_S", "pull_interval"
]

logger = logging.getLogger(__name__)

#: Physiologically plausible ranges, in canonical units; values outside are flagged and stored as NaN.
PLAUSIBLE_RANGE = {"rr": (0.25, 2.5), "hr": (25.0, 240.0), "eda": (0.0, 100.0)}

#: Samples per second assumed when sizing the buffer of an irregular stream (RR at 240 bpm is 4 Hz).
IRREGULAR_MAX_RATE = {"rr": 4.0, "hr": 4.0, "eda": 32.0}

STATES = ("connecting", "connected", "noisy", "stale", "lost", "recovered", "closed")

#: Seconds of samples liblsl may queue for a receiver between two pulls (irregular streams: 100 x as many samples).
LSL_QUEUE_SECONDS = 30

#: Consecutive stale checks (2 s apart, each a resolve of up to max(resolve_timeout, 1 s)) that must fail
#: to find a quiet stream before it is reported lost.
STALE_MISSES_LOST = 2

#: Pulls per second that all the receivers of a process make together, at most: each receiver's worker pulls every
#: :func:`pull_interval` seconds. One thread per stream, each waking every 20 ms, cost a 64-person live monitor
#: (144 streams) 83-91 % of one core and its ticks their GIL (p50 4.2-6.1 ms, p99 61-157 ms); pulling every 0.1 s,
#: 34-41 %, p50 2.8-3.2 ms, p99 16-27 ms (docs/validation.md, "Large groups live, over LSL").
RECEIVER_PULLS_PER_S = 800.0
#: The longest wait between two pulls of a receiver (s), however many there are: well under the live source's
#: safety margin (0.5 s, :class:`attune_monitor.acquisition.sources.LiveSource`), so that no sample arrives after
#: the time its stream was declared complete.
MAX_PULL_INTERVAL_S = 0.1


def pull_interval(n_receivers: int, poll_interval: float = 0.02) -> float:
    """Seconds a receiver's worker waits between two pulls when ``n_receivers`` run in this process.

    ``poll_interval`` (a receiver's own) up to :data:`RECEIVER_PULLS_PER_S` pulls per second in all, then longer, up
    to :data:`MAX_PULL_INTERVAL_S` (or ``poll_interval`` when that is longer). 2-16 streams (a dyad, a small
    group): 0.02 s; 32: 0.04 s; 64: 0.08 s; 80 or more: 0.1 s.
    """
    return max(float(poll_interval), min(n_receivers / RECEIVER_PULLS_PER_S, MAX_PULL_INTERVAL_S))


@dataclass(frozen=True)
class Gap:
    """A hole in a stream's data, in LSL time.

    Attributes
    ----------
    start : float
        Timestamp of the last sample before the hole.
    end : float
        Timestamp of the first sample after it.
    reason : str
        ``"lost"`` (the outlet vanished and came back) or ``"stale"`` (no samples arrived).
    """

    start: float
    end: float
    reason: str

    @property
    def duration(self) -> float:
        """Seconds between the samples on either side of the gap."""
        return self.end - self.start


@dataclass(frozen=True)
class ReceiverStatus:
    """A snapshot of one receiver, safe to hand to another thread or the GUI."""

    key: str
    name: str
    source_id: str
    hostname: str
    participant: str | None
    kind: str | None
    modality: str | None
    unit: str | None
    unit_guessed: bool
    state: str
    since: float  # wall-clock time (time.time()) the state began
    last_sample_age: float | None  # seconds since the last sample arrived (local clock)
    n_samples: int
    n_flagged: int
    problems: dict = field(default_factory=dict)
    last_problem: str | None = None
    n_gaps: int = 0
    n_recoveries: int = 0
    history: tuple = ()  # ((wall_time, state), ...) most recent last
    uid: str = ""  # the outlet run received now
    refused: tuple = ()  # ((uid, reason), ...) other publishers claiming this stream's identity, not adopted

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        d = dict(self.__dict__)
        d["problems"] = dict(self.problems)
        d["history"] = [list(h) for h in self.history]
        d["refused"] = [list(r) for r in self.refused]
        return d


def processing_flags(srate: float) -> int:
    """LSL post-processing flags of a receiver's inlet: none.

    The clock offset is added by the receiver from a :class:`~attune_monitor.acquisition.lsl.ClockOffset`: with
    ``proc_clocksync`` liblsl would measure it on the data inlet, whose memory then grows for as long as it lives.
    Monotonizing and dejittering are done by :class:`TimestampCleaner`, after clock jumps are looked for: liblsl
    would clamp a clock set back by 60 s into a minute of identical timestamps (the stream looks lost), and its
    dejitter spreads a jump over minutes, so that neither can be seen nor undone.
    """
    return 0


#: Halving time (s) of the weight of past samples in the dejitter fit (liblsl's SmoothingHalftime default).
DEJITTER_HALFTIME = 90.0
#: A sample stamped this much (s) before the one before it is a clock set back (less is jitter: monotonized).
CLOCK_JUMP_BACK_S = 2.0
#: A sample stamped this much (s) after the one before it, beyond the time between their arrivals, is a clock set
#: forward. (A hole in the data of a sender running faster than real time, as ``attune simulate --speed`` does,
#: also outruns the arrival clock, by the hole's length: holes of up to 10 minutes are not taken for jumps.)
CLOCK_JUMP_FORWARD_S = 600.0


class TimestampCleaner:
    """Clock-jump re-anchoring, dejittering and monotonizing of one stream's timestamps, chunk by chunk.

    Parameters
    ----------
    srate : float
        Nominal rate (Hz); 0 for an irregular stream (not dejittered: event times such as beats must not move).
    halftime : float
        Seconds over which a past sample's weight in the dejitter fit halves.
    gap_s : float
        A step between samples larger than this (s) starts a new dejitter fit (a pause in the data stays a pause).

    Notes
    -----
    *Clock jumps.* A step between consecutive samples is compared with the time between their arrivals (on this
    computer's clock): a step back of more than :data:`CLOCK_JUMP_BACK_S`, or forward by more than the arrival
    gap plus :data:`CLOCK_JUMP_FORWARD_S`, is the sender's clock being set, not time passing. From that sample
    on, an offset is added to the stamps so that the sample follows the one before as time did (by the arrival
    gap, or one sample period). :attr:`jumps` lists the last 100 (:attr:`n_jumps` counts them all); :attr:`offset` is
    the correction in force.

    *Dejitter* (regular streams): the stamps are fitted by a straight line over the sample count, past samples
    weighted ``2 ** (-age / (srate * halftime))`` — the exponentially weighted least squares that liblsl's
    recursive estimate converges to — computed per chunk with :func:`scipy.signal.lfilter` (sums re-centred on the
    chunk, so they stay exact over hours).

    *Monotonize*: a stamp is never before the one before it.
    """

    def __init__(self, srate: float, halftime: float = DEJITTER_HALFTIME, gap_s: float = 2.0):
        self.srate = float(srate) if srate and srate > 0 else 0.0
        self.lam = 2.0 ** (-1.0 / (self.srate * halftime)) if self.srate else 0.0
        self.gap_s = float(gap_s)
        self.offset = 0.0
        self.jumps: list[tuple[float, float]] = []  # the last 100: (corrected stamp where it happened, size in s)
        self.n_jumps = 0
        self._last_raw: float | None = None  # last stamp received, offset-corrected, before dejitter
        self._last_arrival: float | None = None
        self._last_out = -math.inf
        self.reset_fit()

    @property
    def last(self) -> float:
        """The last stamp handed out (``-inf`` before the first)."""
        return self._last_out

    def not_before(self, t: float) -> None:
        """Hand out no stamp before ``t`` (the last stamp of a stream's previous run)."""
        self._last_out = max(self._last_out, float(t))

    def reset_fit(self) -> None:
        """Start a new dejitter fit with the next sample (after a pause: its samples are not on the old grid)."""
        self._t0: float | None = None
        self._n = 0  # samples in the fit so far (the index of the next one)
        self._sums = np.zeros(5)  # S0, S1, S2, St, Sjt with indices relative to _base, t relative to _t0
        self._base = 0

    def process(self, ts, arrival: float) -> np.ndarray:
        """The cleaned stamps of one chunk.

        Parameters
        ----------
        ts : array-like, shape (n,)
            Stamps as received (clock-synchronised), in order of arrival.
        arrival : float
            ``local_clock()`` when the chunk was pulled.

        Returns
        -------
        ts : ndarray, shape (n,)
        """
        raw = np.asarray(ts, dtype=np.float64) + self.offset
        n = raw.size
        if n == 0:
            return raw
        waited = 0.0 if self._last_arrival is None else max(0.0, arrival - self._last_arrival)
        period = 1.0 / self.srate if self.srate else 0.0
        prev = np.concatenate(([self._last_raw if self._last_raw is not None else raw[0]], raw[:-1]))
        step = raw - prev
        allowed = np.full(n, period)
        allowed[0] = max(waited, period)
        jump = (step < -CLOCK_JUMP_BACK_S) | (step > allowed + CLOCK_JUMP_FORWARD_S)
        if self._last_raw is None:
            jump[0] = False
        for i in np.flatnonzero(jump):  # rare: one re-anchoring per jump
            if i > 0 and period:
                target = prev[i] + period  # within a chunk of a regular stream: the next sample on the grid
            else:  # the chunk's last sample arrives as late after its stamp as the samples before the jump did
                lag = (self._last_arrival - self._last_raw
                       if self._last_arrival is not None and self._last_raw is not None else 0.0)
                target = max(raw[i] - (raw[-1] - (arrival - lag)), prev[i] + period)
            size = raw[i] - target
            raw[i:] -= size
            prev[i + 1:] = raw[i:-1] if i + 1 < n else prev[i + 1:]
            self.offset -= size
            self.jumps.append((float(raw[i]), float(size)))
            self.n_jumps += 1
        del self.jumps[:-100]
        self._last_raw, self._last_arrival = float(raw[-1]), float(arrival)
        out = self._dejitter(raw, np.diff(np.concatenate(([prev[0]], raw))) > self.gap_s) if self.srate else raw
        out = np.maximum.accumulate(np.maximum(out, self._last_out))
        self._last_out = float(out[-1])
        return out

    def _dejitter(self, t: np.ndarray, breaks: np.ndarray) -> np.ndarray:
        """Dejitter ``t`` (shape (n,)), starting a new fit at each ``breaks`` (bool, shape (n,)) sample."""
        from scipy.signal import lfilter

        out = np.empty_like(t)
        cuts = [0, *(np.flatnonzero(breaks[1:]) + 1), t.size]
        for a, b in zip(cuts[:-1], cuts[1:]):
            if a > 0 or breaks[0]:
                self.reset_fit()
            seg = t[a:b]
            if self._t0 is None:
                self._t0 = float(seg[0])
            # re-centre the sums on this segment's first index (d samples later than the last centre)
            d = self._n - self._base
            s0, s1, s2, st, sjt = self._sums
            s2, s1, sjt = s2 - 2 * d * s1 + d * d * s0, s1 - d * s0, sjt - d * st
            self._base = self._n
            j = np.arange(seg.size, dtype=np.float64)
            y = seg - self._t0
            lam = self.lam
            x = np.vstack((np.ones_like(j), j, j * j, y, j * y))
            zi = lam * np.array([[s0], [s1], [s2], [st], [sjt]])
            S0, S1, S2, St, Sjt = lfilter([1.0], [1.0, -lam], x, axis=1, zi=zi)[0]
            det = S0 * S2 - S1 * S1
            ok = det > 1e-9 * np.maximum(S0 * S2, 1e-300)
            with np.errstate(divide="ignore", invalid="ignore"):
                w1 = np.where(ok, (S0 * Sjt - S1 * St) / np.where(ok, det, 1.0), 0.0)
                w0 = np.where(ok, (St - w1 * S1) / S0, y)
            out[a:b] = np.where(ok, w0 + w1 * j, y) + self._t0
            self._sums = np.array([S0[-1], S1[-1], S2[-1], St[-1], Sjt[-1]])
            self._n += seg.size
        return out


class StreamReceiver:
    """Pull one LSL stream into a bounded ring buffer, watching its health.

    Parameters
    ----------
    info : pylsl.StreamInfo
        A resolved stream (from :func:`attune_monitor.acquisition.discovery.discover`).
    descriptor : StreamDescriptor | None
        What is known about the stream (with its desc); default: built from the
        inlet's full header when the receiver starts.
    buffer_seconds : float
        Seconds of data kept; fixes the memory (not the session length).
    participant : str | None
        Who wears the device (from the roster); default ``descriptor.participant``.
    poll_interval : float
        Seconds the worker sleeps between non-blocking pulls; longer when many receivers run in the process
        (:func:`pull_interval`: at most :data:`RECEIVER_PULLS_PER_S` pulls per second in all).
    resolve_timeout : float
        Bound on each re-resolve of a lost stream, in seconds.
    stale_after : float | None
        Seconds without samples before the stream is ``stale``; default
        ``max(2, 3 x expected interval)`` (RR: the last beat's interval).
    noisy_hold : float
        Seconds the state stays ``noisy`` after the last flagged sample.
    recovered_hold : float
        Seconds the state stays ``recovered`` before becoming ``connected``.
    finder : callable | None
        ``finder(descriptor) -> list of pylsl.StreamInfo``: the live streams claiming the descriptor's identity,
        asked while the stream is lost. Default: a bounded resolve of its own
        (:func:`attune_monitor.acquisition.discovery.resolve_identity`, a UDP socket per attempt); a
        :class:`~attune_monitor.acquisition.live.LiveSession` passes its continuous resolver's results instead, so
        receivers of lost streams hold no discovery socket (liblsl binds each in the same 32 ports outlets need).
    """

    def __init__(self, info, descriptor: StreamDescriptor | None = None, *, buffer_seconds: float = 300.0,
                 participant: str | None = None, poll_interval: float = 0.02, resolve_timeout: float = 0.5,
                 stale_after: float | None = None, noisy_hold: float = 5.0, recovered_hold: float = 5.0,
                 max_chunk: int = 1024, finder=None):
        if not buffer_seconds > 0:
            raise ValueError(f"Invalid value for 'buffer_seconds': expected seconds > 0, but got {buffer_seconds}.")
        self._info = info
        self.descriptor = descriptor if descriptor is not None else describe(stream_xml(info))
        if info.channel_format() == pylsl.cf_string:
            raise ValueError(unusable_reason(self.descriptor) or
                             f"Stream {self.descriptor.name!r} carries strings (markers), not a signal; "
                             "only numeric streams can be received.")
        why = unusable_reason(self.descriptor)
        if why is not None:  # an implausible claimed rate: buffers sized by it would take the machine's memory
            raise ValueError(why)
        self._participant = participant  # the roster's word; else the header's (see `participant`)
        self.buffer_seconds = float(buffer_seconds)
        self.poll_interval = float(poll_interval)
        self.resolve_timeout = float(resolve_timeout)
        self._finder = finder
        self._stale_misses = 0  # consecutive stale checks that did not find the stream (see STALE_MISSES_LOST)
        self._stale_after = stale_after
        self.noisy_hold = float(noisy_hold)
        self.recovered_hold = float(recovered_hold)
        self.max_chunk = int(max_chunk)
        d = self.descriptor
        rate = d.srate if d.srate > 0 else IRREGULAR_MAX_RATE.get(d.kind or "", 10.0)
        self.buffer = RingBuffer.for_seconds(self.buffer_seconds, rate)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inlet: Any = None  # pylsl.StreamInlet of the run received now
        self._clock_offset: ClockOffset | None = None  # its sender's clock offset to ours
        self._dest: np.ndarray | None = None
        self._gaps: list[Gap] = []
        self._problems: dict[str, int] = {}
        self._last_problem: str | None = None
        self._last_problem_at = -math.inf
        self._n_flagged = 0
        self._n_recoveries = 0
        self._state = "connecting"
        self._since = time.time()
        self._history: list[tuple[float, str]] = [(self._since, "connecting")]
        self._last_arrival: float | None = None  # local_clock() when the last sample arrived
        self._last_ts: float | None = None  # LSL timestamp of the last sample
        self._last_interval = 1.0  # RR: last beat interval (s), the expected time to the next beat
        self._lost_since_last_sample = False
        self._recovered_at = -math.inf
        self._opened_at = -math.inf  # local_clock() when the current inlet opened
        self._dejitter_reset = False  # done for the current stale episode
        self._clock: TimestampCleaner | None = None  # the run received now: re-anchoring, dejitter, monotonize
        self._fingerprint: tuple | None = None  # the header of the stream first received (header_fingerprint)
        self._past_uids: set[str] = set()  # outlet runs this receiver received before (restarts: not duplicates)
        self._ended: set[str] = set()  # of those, the runs whose connection liblsl saw end (never back)
        self._return_to = None  # a pylsl.StreamInfo of a superseded run that came back (see return_to)
        self._run_note: str | None = None  # how the run adopted last came to be adopted (said at recovery)
        self._refused: dict[str, str] = {}  # uid -> why it is not adopted
        self._ambiguous: frozenset = frozenset()  # the last set of uids that claimed the identity at once

    # ------------------------------------------------------------------ public API
    @property
    def key(self) -> str:
        """The stream's identity as one string, stable across restarts of the outlet.

        The stream's identity as one string (name, type, source_id, hostname: see
        :attr:`attune_monitor.acquisition.convention.StreamDescriptor.key`); stable across restarts of the outlet.
        """
        return self.descriptor.key

    @property
    def uid(self) -> str:
        """The uid of the outlet run received now (a restarted outlet has a new one)."""
        return self.descriptor.uid

    @property
    def info(self):
        """The resolved ``pylsl.StreamInfo`` of the run received now (after a recovery: the new run's).

        Open another inlet on it to follow exactly this run (a recorder), never a duplicate or another publisher.
        """
        return self._info

    @property
    def past_uids(self) -> frozenset:
        """Uids of the outlet runs received before this one (the same stream, restarted)."""
        with self._lock:
            return frozenset(self._past_uids | self._ended)

    @property
    def returnable(self) -> frozenset:
        """Uids of earlier runs that were given up without liblsl seeing them end.

        Uids of runs received before that were given up without liblsl seeing them end (a network outage, a
        stopped process): if one is live again it is the genuine stream, and the run received since is not.
        """
        with self._lock:
            return frozenset(self._past_uids - self._ended - set(self._refused))

    def return_to(self, info) -> None:
        """Go back to ``info``, a run of :attr:`returnable` live again.

        The run received now (adopted while the genuine one was unreachable) is refused from then on. Done by the worker
        thread.
        """
        with self._lock:
            if info.uid() in self._past_uids - self._ended and info.uid() != self.descriptor.uid:
                self._return_to = info

    @property
    def refused(self) -> dict:
        """``{uid: reason}`` of publishers claiming this stream's identity that were not adopted (a copy)."""
        with self._lock:
            return dict(self._refused)

    def refuse(self, uid: str, reason: str) -> bool:
        """Never adopt the outlet run ``uid`` (a duplicate or a different publisher claiming this identity).

        Counted as a ``duplicate`` problem with ``reason`` as the last problem, once per uid; the receiver keeps
        the run it receives now. Returns False when ``uid`` was already refused or is that run.
        """
        with self._lock:
            if uid in self._refused or uid == self.descriptor.uid or not uid:
                return False
            self._refused[uid] = reason
            del_keys = list(self._refused)[:-100]  # bounded: a flood of impostors cannot grow it without end
            for k in del_keys:
                del self._refused[k]
        self._flag("duplicate", reason, 0)  # logged there (INFO); a LiveSession reports it to the user once
        return True

    @property
    def participant(self) -> str | None:
        """Who wears the device: as assigned (roster), else the header's ``participant`` element."""
        return self._participant if self._participant is not None else self.descriptor.participant

    @participant.setter
    def participant(self, value: str | None) -> None:
        self._participant = value

    @property
    def state(self) -> str:
        """Current state (one of :data:`STATES`)."""
        with self._lock:
            return self._state

    #: Receivers whose worker runs in this process (for :func:`pull_interval`).
    _n_running = 0
    _running_lock = threading.Lock()

    @classmethod
    def running(cls) -> int:
        """How many receivers' workers run in this process now."""
        return cls._n_running

    def start(self) -> StreamReceiver:
        """Start the worker thread (returns ``self``)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run_counted, name=f"attune-recv-{self.descriptor.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run_counted(self) -> None:
        """:meth:`_run`, counted in :meth:`running` while it runs."""
        with StreamReceiver._running_lock:
            StreamReceiver._n_running += 1
        try:
            self._run()
        finally:
            with StreamReceiver._running_lock:
                StreamReceiver._n_running -= 1

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker and close the inlet (bounded by ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_inlet()
        self._set_state("closed")

    def __enter__(self) -> StreamReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def get_window(self, seconds: float, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the last ``seconds`` of ``(timestamps (n,), values (n,))`` in canonical units."""
        return self.buffer.get_window(seconds, now)

    def read_new(self, cursor: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Samples since ``cursor`` for the pipeline: ``(timestamps (n,), values (n,), new_cursor)``.

        As :meth:`RingBuffer.read_new`, except that a heart rate or RR sample flagged ``IMPLAUSIBLE`` (NaN in the
        buffer) is handed over as 0: a value the pipeline's own plausibility check refuses, so the signal loss
        it reports says "implausible", not "no data" (a NaN is what a missing sample looks like to it).
        """
        chunk = self.buffer.read(cursor)
        values = chunk.values
        if self.descriptor.kind in ("rr", "hr"):
            flagged = chunk.codes == Quality.IMPLAUSIBLE
            if flagged.any():
                values[flagged] = 0.0  # (a copy: the buffer keeps its NaN)
        return chunk.timestamps, values, chunk.cursor

    def read(self, cursor: int = 0) -> Chunk:
        """Samples since ``cursor`` with quality codes and the overflow count (:class:`Chunk`)."""
        return self.buffer.read(cursor)

    @property
    def gaps(self) -> list[Gap]:
        """Holes in the data so far (copies), oldest first."""
        with self._lock:
            return list(self._gaps)

    def status(self) -> ReceiverStatus:
        """A thread-safe snapshot of this receiver's health."""
        now = pylsl.local_clock()
        self._update_timers(now)
        d = self.descriptor
        with self._lock:
            age = None if self._last_arrival is None else now - self._last_arrival
            return ReceiverStatus(
                key=self.key, name=d.name, source_id=d.source_id, hostname=d.hostname,
                participant=self.participant, kind=d.kind, modality=d.modality, unit=d.unit,
                unit_guessed=d.unit_guessed, state=self._state, since=self._since, last_sample_age=age,
                n_samples=self.buffer.n_written, n_flagged=self._n_flagged, problems=dict(self._problems),
                last_problem=self._last_problem, n_gaps=len(self._gaps), n_recoveries=self._n_recoveries,
                history=tuple(self._history[-20:]), uid=d.uid, refused=tuple(self._refused.items()),
            )

    @property
    def stale_after(self) -> float:
        """Seconds without samples after which the stream counts as stale."""
        if self._stale_after is not None:
            return float(self._stale_after)
        d = self.descriptor
        if d.srate > 0:
            expected = 1.0 / d.srate
        elif d.kind == "rr":
            expected = self._last_interval
        else:
            expected = 1.0
        return max(2.0, 3.0 * expected)

    # ------------------------------------------------------------------ state
    def _set_state(self, state: str) -> None:
        with self._lock:
            if state == self._state:
                return
            old, self._state, self._since = self._state, state, time.time()
            self._history.append((self._since, state))
            if state != "stale":
                self._stale_misses = 0
            del self._history[:-50]
        level = logging.WARNING if state in ("lost", "stale") else logging.INFO
        logger.log(level, "stream %r (%s): %s -> %s", self.descriptor.name, self.key, old, state)

    def _flag(self, what: str, detail: str, count: int) -> None:
        """Count a problem (``count`` flagged samples; 0 for a header problem) and make it the last one.

        A problem with the data or the header makes the state ``noisy`` for ``noisy_hold`` s; a ``duplicate``
        (another publisher refused) or a ``new_run`` (the stream came back from another run) does not: the data
        received is this stream's.
        """
        with self._lock:
            self._problems[what] = self._problems.get(what, 0) + max(count, 1)
            self._n_flagged += count
            self._last_problem = detail
            if what not in ("duplicate", "new_run"):
                self._last_problem_at = pylsl.local_clock()
        logger.info("stream %r: %s", self.descriptor.name, detail)

    def _update_timers(self, now: float) -> None:
        """Time-driven transitions: stale, noisy and recovered wearing off."""
        with self._lock:
            state, arrival = self._state, self._last_arrival
            problem_at, recovered_at = self._last_problem_at, self._recovered_at
        if state in ("lost", "closed", "connecting"):
            return
        ref = max(arrival if arrival is not None else -math.inf, self._opened_at)
        if math.isfinite(ref) and now - ref > self.stale_after:
            self._set_state("stale")
            return
        if state == "stale":
            return  # only a new sample ends staleness (see _ingest)
        if now - problem_at < self.noisy_hold:
            self._set_state("noisy")
        elif state == "recovered" and now - recovered_at < self.recovered_hold:
            pass
        else:
            self._set_state("connected")

    # ------------------------------------------------------------------ worker
    def _open(self, info) -> bool:
        """Create and open an inlet for ``info``; refresh the header.

        False if it did not open in time, or when ``info`` is a publisher that is refused (see :meth:`refuse`) or whose
        header is not the stream's.
        """
        with self._lock:
            if info.uid() in self._refused:
                return False
        # liblsl's queue only bridges the worker's pauses (it pulls every poll_interval): a few seconds are plenty,
        # and its size (max_buflen x the claimed rate) never follows a session-long buffer_seconds
        inlet = pylsl.StreamInlet(info, max_buflen=LSL_QUEUE_SECONDS, recover=False,
                                  processing_flags=processing_flags(info.nominal_srate()))
        try:
            full = inlet.info(max(self.resolve_timeout, 1.0))
            inlet.open_stream(max(self.resolve_timeout, 1.0))
        except Exception as exc:  # TimeoutError / LostError: try again later
            logger.info("could not open stream %r yet: %s", self.descriptor.name, exc)
            inlet.close_stream()
            del inlet
            return False
        clock = ClockOffset(info)
        clock.measure(max(self.resolve_timeout, 1.0))  # the first estimate takes ~0.6 s; _drain waits for it
        new = describe(stream_xml(full))
        why = self._different_publisher(new)
        old_uid = self.descriptor.uid
        self._run_note = None
        if why is None and old_uid and new.uid != old_uid and new.uid not in self._past_uids:
            why = self._created_while_received(clock, full)
        if why is not None:
            inlet.close_stream()
            del inlet
            clock.close()
            self.refuse(new.uid, why)
            return False
        self._check_header(new)
        if old_uid and old_uid != new.uid:
            with self._lock:
                self._past_uids.add(old_uid)
        self._inlet = inlet
        self._clock_offset = clock
        self._opened_at = pylsl.local_clock()
        # a new run has its own clock: jumps are looked for within a run; stamps stay monotonic across runs
        prev = self._clock
        self._clock = TimestampCleaner(new.srate, gap_s=self.stale_after)
        if prev is not None:
            self._clock.not_before(prev.last)
        self._dest = np.empty((self.max_chunk, new.channel_count), dtype=inlet.np_dtype or np.float64)
        return True

    def _created_while_received(self, clock: ClockOffset, full) -> str | None:
        """Why a new run claiming this stream cannot be its restart, else ``None``.

        Why a new run claiming this stream cannot be its restart, else ``None`` (and :attr:`_run_note` says when
        it was created): its outlet was made while this stream was still sending from the run received then.
        """
        with self._lock:
            last = self._last_arrival  # local_clock() of the last sample of the run lost
        if last is None:
            return None
        offset = clock.offset  # its clock -> ours
        if offset is None:  # not measured in time: cannot tell
            return None
        created = full.created_at() + offset
        if created < last - 1.0:
            return (f"another publisher claims to be this stream (uid {full.uid()}): its outlet was created "
                    f"{last - created:.1f} s before the stream stopped sending, while Attune still received it from "
                    f"uid {self.descriptor.uid}; a restarted stream is created after that. Not adopted.")
        self._run_note = f"; its outlet was created {created - last:.1f} s after the stream stopped"
        return None

    def _different_publisher(self, new: StreamDescriptor) -> str | None:
        """Why ``new`` (a full header claiming this stream's identity) is not the stream first received, else None.

        The first full header received fixes the fingerprint
        (:func:`~attune_monitor.acquisition.convention.header_fingerprint`);
        a restarted outlet of the same stream repeats it.
        """
        fp = header_fingerprint(new)
        if self._fingerprint is None:
            self._fingerprint = fp
            return None
        if fp == self._fingerprint:
            return None
        names = ("channel count", "channel format", "nominal rate", "channels", "participant", "manufacturer",
                 "device")
        diff = "; ".join(f"{n} {b!r}, was {a!r}" for n, a, b in zip(names, self._fingerprint, fp) if a != b)
        return (f"another publisher claims to be this stream (uid {new.uid}) with a different header ({diff}): not "
                "adopted. If the device was reconfigured, restart monitoring.")

    def _check_header(self, new: StreamDescriptor) -> None:
        """Take the refreshed header, keeping what the caller decided; flag channel mismatches.

        Take the refreshed header, keeping what the caller decided (the roster's kind and unit, a unit
        guessed earlier); flag channel mismatches.
        """
        old = self.descriptor

        def keep_unit() -> None:
            new.unit, new.scale = old.unit, old.scale
            new.unit_guessed, new.reciprocal = old.unit_guessed, old.reciprocal
            new.declared_unit = old.declared_unit

        if old.kind is not None and new.kind != old.kind:
            # The roster told us the kind (and so the unit's meaning) of a stream whose header says another or none.
            new.kind, new.channel_index = old.kind, old.channel_index
            keep_unit()
        elif old.kind is not None and old.channels:
            # Decided on this stream's full header (a roster unit override, a unit guessed from the first values):
            # the same stream repeats its header, the decision stands.
            new.channel_index = old.channel_index
            if old.scale is not None:
                keep_unit()
        elif old.scale is not None and new.scale is None and new.kind == old.kind:
            keep_unit()
        if not new.channels and old.channels:
            new.channels, new.channel_index = old.channels, old.channel_index
        if new.participant is None:
            new.participant = old.participant
        if new.channel_count != old.channel_count and old.channel_count:
            self._flag("channel_count", f"channel count changed from {old.channel_count} to {new.channel_count} "
                       "after the stream restarted", 0)
        if new.channels and len(new.channels) != new.channel_count:
            self._flag("channel_count", f"header declares {new.channel_count} channel(s) but describes "
                       f"{len(new.channels)}; using channel {new.channel_index}", 0)
        self.descriptor = new

    def _close_inlet(self) -> None:
        clock, self._clock_offset = self._clock_offset, None
        if clock is not None:
            clock.close()
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception:  # already gone: nothing to close
                pass
            del inlet

    def _run(self) -> None:
        info = self._info
        try:
            while not self._stop.is_set():
                with self._lock:
                    back, self._return_to = self._return_to, None
                if back is not None:
                    self._go_back(back)
                    info = None if self._inlet is None else self._info
                if self._inlet is None:
                    if info is None:
                        info = self._resolve_again()
                        if info is None:
                            continue
                    before = self.uid
                    if not self._open(info):
                        info = None
                        self._stop.wait(self.poll_interval * 5)
                        continue
                    self._info = info
                    if self.state == "lost":
                        with self._lock:
                            self._n_recoveries += 1
                            self._recovered_at = pylsl.local_clock()
                        self._set_state("recovered")
                        if self.uid != before:
                            self._new_run_notice(before)
                    elif self.state == "connecting":
                        self._set_state("connected")
                try:
                    self._drain()
                except pylsl.util.LostError:
                    with self._lock:  # liblsl saw this run end: a resolver still listing it is out of date
                        self._ended.add(self.descriptor.uid)
                    self._mark_lost("the outlet is gone (liblsl LostError)")
                    info = None
                    continue
                self._update_timers(pylsl.local_clock())
                if self.state == "stale" and self._stale_check_due():
                    # A quiet stream may have vanished without liblsl noticing (network gone): look for it (this
                    # run of it: its uid). One missed answer is not enough: on a busy machine a resolve can time out
                    # although the stream is there, and closing its inlet would drop the samples it sends meanwhile.
                    if self._still_listed():
                        self._stale_misses = 0
                    else:
                        self._stale_misses += 1
                        if self._stale_misses >= STALE_MISSES_LOST:
                            self._stale_misses = 0
                            self._mark_lost("stale and no longer found on the network")
                            info = None
                            continue
                self._stop.wait(pull_interval(StreamReceiver._n_running, self.poll_interval))
        except Exception:  # never die silently: the status says what happened
            logger.exception("receiver for %r stopped on an unexpected error", self.descriptor.name)
            self._flag("internal", "receiver stopped on an unexpected error (see log)", 0)
            self._set_state("lost")

    def _new_run_notice(self, before: str) -> None:
        """Say that the stream came back from another outlet run than the one lost (a warning, once per run)."""
        text = (f"came back from a new run (uid {self.uid}, was {before}{self._run_note or ''}): its device or app "
                "restarted, or another process now publishes under its name, type, source_id and host. If nobody "
                "restarted it, check who publishes on this computer; if the original run comes back, Attune goes "
                "back to it.")
        self._flag("new_run", text, 0)
        logger.warning("stream %r %s", self.descriptor.name, text)

    def _go_back(self, info) -> None:
        """Leave the run received now for ``info``, the genuine run live again (see :meth:`return_to`)."""
        impostor = self.uid
        self._close_inlet()
        if not self._open(info):
            self._mark_lost("the original run came back but could not be opened")  # resolves again
            return
        self._info = info
        why = (f"the original run of this stream (uid {info.uid()}) is back: the run received meanwhile (uid "
               f"{impostor}) is another publisher using its identity and is refused")
        self.refuse(impostor, why)
        logger.warning("stream %r: %s", self.descriptor.name, why)

    def _still_listed(self) -> bool:
        """Whether the run received now is still found on the network.

        In the session's continuous resolver (the finder; no socket of its own), else by one bounded resolve of its uid.
        """
        if self._finder is not None:
            return any(i.uid() == self.uid for i in self._finder(self.descriptor))
        return bool(pylsl.resolve_byprop("uid", self.uid, 1, max(self.resolve_timeout, 1.0)))

    def _stale_check_due(self) -> bool:
        now = time.monotonic()
        last = getattr(self, "_last_stale_check", 0.0)
        if now - last < 2.0:
            return False
        self._last_stale_check = now
        return True

    def _mark_lost(self, why: str) -> None:
        self._close_inlet()
        with self._lock:
            self._lost_since_last_sample = True
        logger.warning("stream %r (%s) lost: %s", self.descriptor.name, self.key, why)
        self._set_state("lost")

    def _resolve_again(self):
        """One bounded resolve of this stream's identity (the worker calls it repeatedly while lost).

        Returns the one publisher claiming the identity that is not refused; ``None`` when there is none, or
        when several claim it at once (a duplicate: which one is the stream cannot be told, so none is adopted
        and the status says so).
        """
        with self._lock:
            skip = set(self._refused) | self._ended  # refused publishers; runs that ended
            genuine = (self._past_uids - self._ended) | {self.descriptor.uid}  # runs of this stream given up
        if self._finder is not None:
            found = self._finder(self.descriptor)
            cands = [i for i in found if i.uid() not in skip]
            if len(cands) > 1:  # a continuous resolver lists a vanished run for a few seconds: ask the network
                found = resolve_identity(self.descriptor, self.resolve_timeout)
        else:
            found = resolve_identity(self.descriptor, self.resolve_timeout)
        cands = [i for i in found if i.uid() not in skip]
        back = [i for i in cands if i.uid() in genuine]
        if back:  # a run given up (unreachable, not ended) is live again: it is the stream, whoever else claims it
            self._ambiguous = frozenset()
            return back[0]
        if len(cands) == 1:
            self._ambiguous = frozenset()
            return cands[0]
        if len(cands) > 1:
            uids = frozenset(i.uid() for i in cands)
            if uids != self._ambiguous:  # say it once per set of claimants, not on every resolve
                self._ambiguous = uids
                self._flag("duplicate", duplicate_message(self.descriptor, len(cands), "none is adopted until "
                                                          "only one is left"), 0)
        self._stop.wait(min(self.resolve_timeout, 0.5 if found else 0.2))
        return None

    def _reset_dejitter(self) -> None:
        """Restart the dejitter fit (:meth:`TimestampCleaner.reset_fit`).

        Dejitter fits timestamps to the sample count, so after a pause in a
        regular stream it would squeeze the samples that follow onto the old
        grid and hide the gap. Called once per stale episode, before the
        resumed samples are pulled.
        """
        if self._clock is not None:
            self._clock.reset_fit()
            logger.debug("stream %r: dejitter reset after a pause", self.descriptor.name)

    def _drain(self) -> None:
        """Pull everything available now (non-blocking) into the ring buffer."""
        if self.state == "stale" and not self._dejitter_reset:
            self._reset_dejitter()
            self._dejitter_reset = True
        inlet, dest, sync = self._inlet, self._dest, self._clock_offset
        assert inlet is not None and dest is not None and sync is not None, "drained before a stream was opened"
        offset = sync.measure()
        if offset is None:  # the sender's clock not measured yet: its samples wait in the inlet's queue
            return
        while True:
            _, ts = inlet.pull_chunk(timeout=0.0, max_samples=self.max_chunk, dest_obj=dest, as_numpy=True)
            n = len(ts)
            if n == 0:
                return
            clock = self._clock
            assert clock is not None  # opened with the inlet
            before = clock.n_jumps
            ts = clock.process(np.asarray(ts, dtype=np.float64) + offset, pylsl.local_clock())
            for _, size in clock.jumps[len(clock.jumps) - min(clock.n_jumps - before, len(clock.jumps)):]:
                self._clock_jumped(size, clock.offset)
            self._ingest(ts, dest[:n])
            if n < self.max_chunk:
                return

    def _clock_jumped(self, size: float, offset: float) -> None:
        """Report a jump of the sender's clock (:class:`TimestampCleaner`): the first as a warning, each counted."""
        with self._lock:
            first = "clock_jump" not in self._problems
        text = (f"the sender's clock jumped {size:+.1f} s (timestamps {'ahead' if size > 0 else 'back'} by that much "
                f"from one sample to the next): Attune re-anchors them so the data stays in line with the other "
                f"streams (correction now {offset:+.1f} s). Check the clock of the computer or device that sends it.")
        self._flag("clock_jump", text, 0)
        if first:
            logger.warning("stream %r: %s", self.descriptor.name, text)

    def _ingest(self, ts: np.ndarray, block: np.ndarray) -> None:
        """Convert, check and store one chunk: ``ts`` shape (n,), ``block`` shape (n, channel_count)."""
        d = self.descriptor
        n = ts.shape[0]
        ch = d.channel_index
        if ch >= block.shape[1]:
            raw = np.full(n, np.nan)
            self._flag("channel_count", f"signal channel {ch} missing: the stream has {block.shape[1]} channel(s)", n)
        else:
            raw = block[:, ch].astype(np.float64)
        if d.scale is None and d.kind is not None:
            if d.guess_scale(raw) is not None:
                logger.warning("stream %r declares no unit Attune can read: guessed %s from the values' magnitude "
                               "(put a <unit> in its desc to be sure)", d.name, d.unit)
        values = d.to_canonical(raw)
        codes = np.zeros(n, np.uint8)
        bad = ~np.isfinite(values)
        with np.errstate(invalid="ignore"):
            # a skin resistance of 0 or below has no conductance (a shorted electrode, a sensor fault)
            no_conductance = np.isfinite(raw) & (raw <= 0) if d.reciprocal else np.zeros(n, bool)
        if no_conductance.any():
            self._flag("out_of_range", f"{int(no_conductance.sum())} skin resistance value(s) of 0 or below "
                       f"(e.g. {raw[no_conductance][0]:g} {d.unit})", int(no_conductance.sum()))
        non_finite = bad & ~no_conductance
        if non_finite.any() and ch < block.shape[1]:  # a missing channel was flagged above, once
            self._flag("non_finite", f"{int(non_finite.sum())} non-finite value(s) (NaN/inf) received",
                       int(non_finite.sum()))
        lo_hi = PLAUSIBLE_RANGE.get(d.kind or "")
        if lo_hi is not None:
            with np.errstate(invalid="ignore"):
                out = ~bad & ((values < lo_hi[0]) | (values > lo_hi[1]))
            if out.any():
                unit = CANONICAL_UNIT.get(d.kind or "", "")
                example = values[out][0]
                self._flag("out_of_range", f"{int(out.sum())} {(d.kind or '').upper()} value(s) outside "
                           f"{lo_hi[0]:g}..{lo_hi[1]:g} {unit} (e.g. {example:g} {unit})", int(out.sum()))
                bad |= out
        values[bad] = np.nan
        codes[bad] = Quality.IMPLAUSIBLE
        if d.kind == "rr":
            good = values[~bad]
            if good.size:
                self._last_interval = float(good[-1])
        now = pylsl.local_clock()
        with self._lock:
            prev_ts, lost, stale = self._last_ts, self._lost_since_last_sample, self._state == "stale"
        # A hole is known from the arrival times (stale / lost), not from the timestamps alone: liblsl's
        # dejitter fits timestamps to the sample count and smooths a pause in a regular stream away.
        if prev_ts is not None and (lost or stale or ts[0] - prev_ts > self.stale_after):
            gap = Gap(prev_ts, float(ts[0]), "lost" if lost else "stale")
            with self._lock:
                self._gaps.append(gap)
                del self._gaps[:-1000]
            logger.warning("stream %r: %.1f s gap in the data (%s)", d.name, gap.duration, gap.reason)
        self.buffer.push(ts, values, codes)
        with self._lock:
            self._last_ts = float(ts[-1])
            self._last_arrival = now
            self._lost_since_last_sample = False
        if self.state == "stale":
            self._set_state("connected")
        self._dejitter_reset = False
