"""Sample sources for the session pipeline: a recording replayed on a clock.

A *source* hands out new samples of the streams that feed the pipeline and
says up to which time every stream is complete. Its interface, shared with
the live LSL source (:class:`attune_monitor.acquisition.live.LiveSource`)::

    source.inputs      -> list of InputSpec (participant, kind, srate, name, averaging_s), one per pipeline slot
    source.origin      -> float, time base value of session time 0
    source.poll()      -> (chunks, until, status)
        chunks : list of (slot index, timestamps (n,), values (n,) canonical units)
        until  : float | None, every slot is complete up to this time
        status : {participant: {modality: "ok" | "noisy" | "lost" | "recovered" | "connecting"}}
    source.close()

and, optionally (the live source), ``source.poll_markers()`` -> new ``(timestamp, stream name, text)`` of
other apps' marker streams.

:class:`RecordingSource` replays a :class:`~attune_monitor.acquisition.files.Recording` at a
speed (``math.inf`` = as fast as possible), with pause, resume and seek.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from .convention import KIND_MODALITY
from .files import Recording, RecordingError
from .roster import KIND_PREFERENCE

__all__ = ["HEART_PREFERENCE", "InputSpec", "choose_inputs", "RecordingSource", "LiveSource"]

#: Heart stream kinds, most precise first: which one feeds a person's HR (the roster's order).
HEART_PREFERENCE = tuple(sorted(("rr", "ecg", "hr", "ppg"), key=KIND_PREFERENCE.__getitem__))


@dataclass(frozen=True)
class InputSpec:
    """One pipeline input: a participant's heart or EDA stream.

    ``averaging_s``: seconds each value averages over (device HR, see
    :attr:`attune_monitor.acquisition.convention.StreamDescriptor.hr_averaging_s`); 0 for beat-by-beat and raw signals.
    """

    participant: str
    kind: str
    srate: float
    name: str
    averaging_s: float = 0.0

    @classmethod
    def of(cls, participant: str, d) -> InputSpec:
        """The input of ``participant``'s stream described by ``d``.

        ``d`` is a :class:`~attune_monitor.acquisition.convention.StreamDescriptor`.
        """
        return cls(participant, d.kind, float(d.srate), d.name, d.hr_averaging_s)

    @property
    def modality(self) -> str:
        """``"hr"`` or ``"eda"``."""
        return KIND_MODALITY[self.kind]


def choose_inputs(streams, assign=None) -> tuple[list, list]:
    """Pick one heart and one EDA stream per participant.

    Parameters
    ----------
    streams : list of RecordedStream (or objects with ``descriptor``)
    assign : callable | None
        ``assign(descriptor) -> participant | None`` (e.g. from a roster); by
        default the descriptor's ``participant`` element, else the stream's
        device (hostname + name) — one participant per device.

    Returns
    -------
    chosen : list of (InputSpec, stream)
    notes : list of str
        What was chosen over what, for the user.
    """
    by_person: dict[str, dict[str, list]] = {}
    notes = []
    for s in streams:
        d = s.descriptor
        if d.kind is None:
            continue
        who = assign(d) if assign else None
        who = who or d.participant or _device_participant(d)
        by_person.setdefault(who, {}).setdefault(d.modality, []).append(s)
    chosen = []
    for who in sorted(by_person):
        for modality in ("hr", "eda"):
            cands = by_person[who].get(modality, [])
            if not cands:
                continue
            cands.sort(key=lambda s: (HEART_PREFERENCE.index(s.descriptor.kind) if modality == "hr" else 0,
                                      -len(s.timestamps)))
            best = cands[0]
            if len(cands) > 1:
                notes.append(
                    f"{who}: {modality} from {best.descriptor.name!r} ({best.descriptor.kind}); not used: "
                    + ", ".join(repr(c.descriptor.name) for c in cands[1:])
                )
            d = best.descriptor
            chosen.append((InputSpec.of(who, d), best))
    return chosen, notes


def _device_participant(d) -> str:
    base = d.name or d.source_id or "device"
    for suffix in ("_ecg", "_rr", "_hr", "_eda", " ECG", " RR", " HR", " EDA", " PPG", " BVP"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return f"{d.hostname}:{base}" if d.hostname else base


class RecordingSource:
    """Replay a recording's heart and EDA streams on a clock.

    Parameters
    ----------
    recording : Recording
    speed : float
        Session seconds per wall-clock second; ``math.inf`` hands out
        everything at once (offline analysis).
    start_s : float
        Session time to start from.
    assign : callable | None
        Participant assignment, see :func:`choose_inputs`.
    """

    def __init__(self, recording: Recording, speed: float = 1.0, start_s: float = 0.0, assign=None):
        chosen, self.notes = choose_inputs(recording.physio_streams(), assign)
        if len({spec.participant for spec, _ in chosen}) < 2:
            people = sorted({spec.participant for spec, _ in chosen})
            raise RecordingError(
                f"{recording.path}: synchrony needs heart or EDA streams of at least 2 participants, "
                f"found {len(people)} ({', '.join(people) or 'none'}); "
                "a roster (--roster) can assign streams to people."
            )
        self.recording = recording
        self.assign = assign  # kept so a view can analyse the same recording with the same people
        self.inputs = [spec for spec, _ in chosen]
        self._data = [(s.timestamps, s.signal) for _, s in chosen]
        self.origin = min(ts[0] for ts, _ in self._data)
        self.duration_s = max(ts[-1] for ts, _ in self._data) - self.origin
        self._lock = threading.Lock()
        self._cursor = [0] * len(self._data)
        self._speed = float(speed)
        self._paused = False
        self._pos = 0.0  # session time handed out so far
        self._wall = time.monotonic()
        self._seek_to = None
        if start_s:
            self.seek(start_s)

    # -- controls (thread-safe) ------------------------------------------------------------------------
    @property
    def position_s(self) -> float:
        """Session time handed out so far."""
        return self._pos

    @property
    def speed(self) -> float:
        """Replay speed, a multiple of real time (``inf``: as fast as possible)."""
        return self._speed

    def set_speed(self, speed: float) -> None:
        """Change the replay speed (0.5x .. 64x in the UI, ``inf`` for offline)."""
        if not speed > 0:
            raise ValueError(f"Invalid value for 'speed': expected a positive number, but got {speed!r}.")
        with self._lock:
            self._advance_clock()
            self._speed = float(speed)

    def pause(self) -> None:
        """Stop the replay clock where it is."""
        with self._lock:
            self._advance_clock()
            self._paused = True

    def resume(self) -> None:
        """Start the paused replay clock again."""
        with self._lock:
            self._wall = time.monotonic()
            self._paused = False

    def start_clock(self) -> None:
        """Start the replay clock now, from the current position (the time a view took to open is not skipped)."""
        with self._lock:
            self._wall = time.monotonic()

    @property
    def paused(self) -> bool:
        """True while the replay clock is paused."""
        return self._paused

    def seek(self, t_s: float) -> None:
        """Restart the replay so that it continues from session time ``t_s``.

        The pipeline is causal, so the runner reprocesses the session from its
        start up to ``t_s`` (fast), then goes on at the replay speed.
        """
        with self._lock:
            self._seek_to = min(max(0.0, float(t_s)), self.duration_s)
            self._cursor = [0] * len(self._data)
            self._pos = 0.0
            self._wall = time.monotonic()

    def take_seek(self) -> float | None:
        """The pending seek target (the runner resets its pipeline when this is not None)."""
        with self._lock:
            t, self._seek_to = self._seek_to, None
            return t

    @property
    def finished(self) -> bool:
        """True once everything has been handed out (the runner then flushes the pipeline)."""
        return self._pos >= self.duration_s

    @property
    def end(self) -> float:
        """Stream time of the last sample."""
        return self.origin + self.duration_s

    def _advance_clock(self) -> None:
        now = time.monotonic()
        if not self._paused:
            if math.isinf(self._speed):
                self._pos = self.duration_s
            else:
                self._pos = min(self.duration_s, self._pos + (now - self._wall) * self._speed)
        self._wall = now

    # -- source interface ---------------------------------------------------------------------------------
    def poll(self, horizon_s: float | None = None):
        """New samples up to the replay clock (or up to ``horizon_s`` when given).

        Returns
        -------
        chunks : list of (int, ndarray (n,), ndarray (n,))
        until : float
            Stream time up to which every slot is complete.
        status : dict
        """
        with self._lock:
            if horizon_s is not None:
                self._pos = min(self.duration_s, max(self._pos, horizon_s))
                self._wall = time.monotonic()
            else:
                self._advance_clock()
            until = self.origin + self._pos
            chunks = []
            for i, (ts, vs) in enumerate(self._data):
                j = int(np.searchsorted(ts, until, side="right"))
                if j > self._cursor[i]:
                    chunks.append((i, ts[self._cursor[i]:j], vs[self._cursor[i]:j]))
                    self._cursor[i] = j
        return chunks, until, {}

    def close(self) -> None:
        """Nothing to release: the recording is in memory."""


#: Receiver states shown to the user, from the inlet layer's states.
#: Inlet state -> the status word the views show (a stream whose inlet is still opening is "connecting", not lost).
_STATUS_WORDS = {"connected": "ok", "connecting": "connecting", "stale": "lost", "lost": "lost",
                 "recovered": "recovered", "noisy": "noisy", "closed": "lost"}


class LiveSource:
    """The live LSL source: a live session's primary streams on the pipeline's slots.

    The session is a :class:`~attune_monitor.acquisition.live.LiveSession`.

    The slots are fixed when the source is made (a stream that appears later is
    announced in ``messages``; restart monitoring to include it). A stream
    that is lost keeps its slot: the pipeline marks the gap as missing and
    picks the stream up again when it recovers.

    Parameters
    ----------
    session : LiveSession
        A started session.
    safety_s : float
        How far behind ``local_clock()`` the source declares the data complete
        (network and chunking delay).
    """

    def __init__(self, session, safety_s: float = 0.5):
        from .lsl import pylsl

        self._clock = pylsl.local_clock
        self.session = session
        self.safety_s = float(safety_s)
        self.inputs = []
        self._receivers = []
        for who in session.participants:
            for modality in ("hr", "eda"):
                r = session.receiver_for(who, modality)
                if r is None:
                    continue
                d = r.descriptor
                self.inputs.append(InputSpec.of(who, d))
                self._receivers.append(r)
        if len({s.participant for s in self.inputs}) < 2:
            people = sorted({s.participant for s in self.inputs})
            raise RecordingError(
                f"synchrony needs heart or EDA streams of at least 2 participants, but found {len(people)} "
                f"({', '.join(people) or 'none'}); start the wearables (or `attune simulate`), or write a roster."
            )
        self._cursors = [0] * len(self._receivers)
        self._last_ts: list = [None] * len(self._receivers)
        self._until = -math.inf
        self.origin = self._clock()
        self.messages: list[str] = []
        self._known_keys = {r.key for r in session.receivers.values()}

    def poll(self):
        """New samples of every slot, and the time up to which every slot is complete.

        That time is ``local_clock() - safety_s``, or later when every stream
        that is flowing has already delivered later samples (a simulator
        replaying faster than real time stamps samples ahead of the clock;
        samples arrive in order, so a stream is complete up to its newest
        timestamp). While any stream is lost or stale, the clock alone decides:
        the session goes on and the missing stream's gap is marked missing.
        """
        chunks = []
        for i, r in enumerate(self._receivers):
            ts, vs, self._cursors[i] = r.read_new(self._cursors[i])
            if len(ts):
                self._last_ts[i] = float(ts[-1])
                keep = ts >= self.origin - 10.0  # samples from before the session began are not ours
                if keep.any():
                    chunks.append((i, ts[keep], vs[keep]))
        status: dict = {}
        flowing = []
        for i, (spec, r) in enumerate(zip(self.inputs, self._receivers)):
            word = _STATUS_WORDS.get(r.state, r.state)
            status.setdefault(spec.participant, {})[spec.modality] = word
            if word in ("ok", "noisy", "recovered") and self._last_ts[i] is not None:
                flowing.append(self._last_ts[i])
        until = self._clock() - self.safety_s
        if flowing and len(flowing) == len(self._receivers):
            until = max(until, min(flowing))
        self._until = max(self._until, until)  # what was complete stays complete
        return chunks, self._until, status

    def poll_markers(self) -> list:
        """New event / marker samples of other apps, ``[(LSL timestamp, stream name, text)]``.

        They come from the session's :meth:`~attune_monitor.acquisition.live.LiveSession.poll_markers`, from this
        source's start on.
        """
        return [m for m in self.session.poll_markers() if m[0] >= self.origin - 10.0]

    def new_streams(self) -> list[str]:
        """Names of streams that appeared after the source was made (not in the pipeline)."""
        out = []
        for key, r in self.session.receivers.items():
            if key not in self._known_keys:
                self._known_keys.add(key)
                out.append(r.descriptor.name)
        return out

    def close(self) -> None:
        """Close the live session: its scan stops and every receiver closes."""
        self.session.close()
