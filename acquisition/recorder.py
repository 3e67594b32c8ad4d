"""Record a live session to XDF 1.0, the way LabRecorder does, plus Attune's derived streams.

:class:`SessionRecorder` writes one XDF file (through
:class:`attune_monitor.acquisition.xdf_writer.XdfWriter`) holding

* every **raw** stream of the session, as LabRecorder records it: the full
  header of the device (``inlet.info().as_xml()``, desc included), all
  channels, the LSL timestamps as sent (no post-processing) and a ClockOffset
  chunk every ``clock_interval`` seconds (the offset ``inlet.time_correction()``
  gives, measured by :class:`attune_monitor.acquisition.lsl.ClockOffset`), so
  that pyxdf, MNE-based tools and EEGLAB synchronise the clocks themselves;
  the recorder opens **its own inlets** (liblsl serves many inlets per outlet)
  so that the recording does not depend on what the monitor keeps of a stream;
* the **derived synchrony** of every pair, one numeric stream per modality
  (type ``Synchrony``, one channel per pair, rate ``1 / step_s``);
* the detector's **state changes and episodes** (type ``AttuneEvents``, a
  string stream of JSON payloads: each event's
  :meth:`attune_monitor.dsp.events.Event.to_dict`);
* other apps' **event / marker streams** seen by the session (type
  ``Markers`` and the like, or any string stream: an experiment's triggers,
  a button box), recorded like the raw streams;
* the facilitator's **markers** (type ``Markers``, JSON payloads of
  :meth:`attune_monitor.ui.model.SessionModel.add_marker`: free text, rupture types of the
  taxonomy, ``repair`` ...);
* the session's **roster** (``Attune roster``, type ``AttuneRoster``, a
  string stream): who wore which stream, with the kinds and the unit
  overrides in force, as roster TOML
  (:func:`attune_monitor.acquisition.roster.recorded_roster`), written when recording starts
  and again whenever the assignment changes; :func:`attune_monitor.acquisition.files.load_recording`
  applies the last one, so ``analyze``, ``replay`` and ``export`` name the
  people as the live session did without ``--roster``.

The file header carries the wall-clock ``datetime`` of the start (as
LabRecorder's does), and every derived stream carries clock offsets (zero:
it is stamped on the recording computer's own LSL clock), so that pyxdf
synchronises it without a warning.

Derived streams are stamped ``origin + session time`` (the LSL time base of the
session), so they line up with the raw streams in any XDF reader.

Crash safety
------------
Chunks are handed to the OS as they are written (every ``poll_interval``
seconds for raw streams, every pipeline tick for derived ones) and forced to
disk at least every ``flush_interval`` seconds, so after ``kill -9`` the file
loads with pyxdf up to about a second before the kill. When a write fails
(disk full, the folder vanished), the recording stops, what was written stays
readable, the error is kept in :attr:`SessionRecorder.error` and handed to
``model.message`` — the live session carries on.

Files are created with mode 0600 (physiological data are health data), exclusively, when recording begins
(:class:`SessionRecorder` is made): ``O_CREAT | O_EXCL | O_NOFOLLOW`` in one system call, so a file or a symbolic
link that appeared at the path after ``attune monitor`` checked it (during the wait for streams) is refused with
a clear error, never overwritten nor followed.

Bursts and losses
-----------------
The recorder's own inlets buffer a stream by *samples*, not by the rate its header claims: at least
:data:`MIN_BUFFER_SAMPLES` (a burst of 100,000 samples into a 4 Hz stream fits), at most
:data:`MAX_BUFFER_SAMPLES` and :data:`MAX_BUFFER_BYTES` per stream, so a burst is recorded whole when its sender
kept it. When samples are lost all the same — the recorder's buffer overflowed, or a burst arrived larger than an
LSL sender keeps by default (360 s of data) with holes in its timestamps, running ahead of the sender's clock or
ending long before it arrived (liblsl stamps a chunk from its first sample) — the loss is written into the file (an
``Attune recording log`` string stream, type ``AttuneRecordingLog``, JSON entries that
:func:`attune_monitor.acquisition.files.load_recording` lists among a recording's problems) and said to the user
(``model.message``). A stream whose header claims an impossible rate (over :data:`MAX_BUFFER_SAMPLES` Hz, whose
LSL buffer alone would take gigabytes) or more than :data:`MAX_RECORDED_CHANNELS` channels is not recorded, and
the log says so.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .roster import RECORDED_ROSTER_NAME, RECORDED_ROSTER_TYPE, recorded_roster
from .xdf_writer import XdfWriteError, XdfWriter

if TYPE_CHECKING:
    from attune_monitor.dsp.events import Event

__all__ = [
    "DEFAULT_FOLDER", "SYNC_STREAM_TYPE", "EVENTS_STREAM_NAME", "EVENTS_STREAM_TYPE", "MARKERS_STREAM_NAME",
    "MARKERS_STREAM_TYPE", "LOG_STREAM_NAME", "LOG_STREAM_TYPE", "MIN_BUFFER_SAMPLES", "MAX_BUFFER_SAMPLES",
    "MAX_BUFFER_BYTES", "MAX_RECORDED_CHANNELS", "SENDER_BUFFER_S", "LOSS_NOTE_INTERVAL_S", "check_label",
    "default_recording_path", "event_payload", "inlet_buffer", "unrecordable", "STEADY_FAST_SENDER_S",
    "SessionRecorder", "record_session"
]

logger = logging.getLogger(__name__)

#: Default folder of recordings (relative to the working directory).
DEFAULT_FOLDER = Path("recordings")

_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")

#: Names and types of the derived streams in a recording.
SYNC_STREAM_TYPE = "Synchrony"
EVENTS_STREAM_NAME = "Attune events"
EVENTS_STREAM_TYPE = "AttuneEvents"
MARKERS_STREAM_NAME = "Attune markers"
MARKERS_STREAM_TYPE = "Markers"
#: The recording's own log (samples lost, streams not recorded): JSON entries, written only when there is one.
LOG_STREAM_NAME = "Attune recording log"
LOG_STREAM_TYPE = "AttuneRecordingLog"

#: Samples the recorder's own LSL inlet keeps of a stream, at least (a burst of 100,000 samples into a 4 Hz stream
#: fits; liblsl's default, 360 s x the nominal rate, is 1,440 samples) ...
MIN_BUFFER_SAMPLES = 2**17
#: ... and at most (liblsl reserves ~17 bytes per place when the inlet opens: 2**19 places = 9 MB) ...
MAX_BUFFER_SAMPLES = 2**19
#: ... and at most this many bytes of samples held (per stream), whatever the channel count.
MAX_BUFFER_BYTES = 64 * 2**20
#: Bytes liblsl spends per buffered sample besides its values (queue place + sample object), for the byte cap.
_SAMPLE_OVERHEAD = 64
#: More channels than this in a header is not a physiological stream (a 4096-channel pull alone is 32 kB a sample).
MAX_RECORDED_CHANNELS = 4096
#: Bytes of the array one pull writes into (rows = this / bytes per sample, at most 1024).
_PULL_BYTES = 8 * 2**20
#: Seconds of data an LSL sender keeps for each receiver by default (``pylsl.StreamOutlet(max_buffered=360)``;
#: liblsl counts x 100 samples for an irregular stream). A burst larger than that may have lost samples at the
#: sender, before any receiver could take them.
SENDER_BUFFER_S = 360.0
_IRREGULAR_SAMPLES_PER_S = 100
#: Seconds between two log entries about one stream (a flood is noted, not written down pull by pull).
LOSS_NOTE_INTERVAL_S = 10.0


def check_label(label: str | None) -> str | None:
    """Validate a pseudonymous session label (letters, digits, ``-``, ``_``, ``.``; at most 40).

    Raises
    ------
    ValueError
        With a message that says how to fix the label.
    """
    if label is None or label == "":
        return None
    if not _LABEL_RE.match(label):
        raise ValueError(
            f"Invalid value for 'label': expected a short pseudonymous code of letters, digits, '-', '_' or '.' "
            f"(at most 40, e.g. couple-07), but got {label!r}. Never use people's real names."
        )
    return label


def default_recording_path(folder=DEFAULT_FOLDER, label: str | None = None, when: float | None = None) -> Path:
    """``folder/session-YYYYmmdd-HHMMSS[-label].xdf``, never an existing file (``-2``, ``-3`` ... appended).

    The folder is created (mode 0700) when missing.
    """
    label = check_label(label)
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    base = f"session-{stamp}" + (f"-{label}" if label else "")
    path = folder / f"{base}.xdf"
    n = 2
    while os.path.lexists(path):  # a dangling symlink is taken too (the file is created exclusively anyway)
        path = folder / f"{base}-{n}.xdf"
        n += 1
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    return str(o)


def event_payload(ev: Event) -> tuple[float, str]:
    """A pipeline event as ``(session time, JSON text)`` for the events stream.

    The text is the event's wire form (:meth:`attune_monitor.dsp.events.Event.to_dict`), keys sorted; the time is
    its ``t`` (a lost signal's onset, a returned signal's offset), 0 when not finite.
    """
    t = float(ev.t)
    return (t if math.isfinite(t) else 0.0), json.dumps(ev.to_dict(), default=_json_default, sort_keys=True)


def inlet_buffer(srate: float, channel_count: int, channel_format: str) -> tuple[int, int]:
    """The ``max_buflen`` to give ``pylsl.StreamInlet`` for a recorder's inlet, and the samples it then holds.

    liblsl sizes an inlet's queue as ``max_buflen`` x the nominal rate (x 100 for an irregular stream): 360 s of a
    4 Hz stream is 1,440 samples, and a burst of 100,000 is cut to its last 1,440. Here the queue holds 360 s of
    data but at least :data:`MIN_BUFFER_SAMPLES`, at most :data:`MAX_BUFFER_SAMPLES` samples and
    :data:`MAX_BUFFER_BYTES` bytes: sized by samples and bytes, never by what a header claims alone.

    Parameters
    ----------
    srate : float
        The header's nominal rate (Hz); 0 for an irregular stream. At most :data:`MAX_BUFFER_SAMPLES`
        (see :func:`unrecordable`).
    channel_count : int
    channel_format : str
        ``float32``, ``double64``, ``int16``, ``string`` ...

    Returns
    -------
    max_buflen : int
        Seconds (regular stream) or hundreds of samples (irregular), as liblsl takes it.
    capacity : int
        Samples the queue then holds.
    """
    value_bytes = {"double64": 8, "int64": 8, "float32": 4, "int32": 4, "int16": 2, "int8": 1}.get(channel_format, 32)
    per_sample = _SAMPLE_OVERHEAD + max(1, int(channel_count)) * value_bytes
    usual = SENDER_BUFFER_S * (srate if srate > 0 else _IRREGULAR_SAMPLES_PER_S)
    target = int(min(max(usual, MIN_BUFFER_SAMPLES), MAX_BUFFER_SAMPLES, max(1, MAX_BUFFER_BYTES // per_sample)))
    if srate > 0:
        max_buflen = max(1, int(target // srate))
        return max_buflen, max(1, int(srate * max_buflen))
    max_buflen = max(1, target // _IRREGULAR_SAMPLES_PER_S)
    return max_buflen, max_buflen * _IRREGULAR_SAMPLES_PER_S


def unrecordable(srate: float, channel_count: int) -> str | None:
    """Why a stream whose header claims ``srate`` Hz and ``channel_count`` channels is not recorded, or ``None``.

    liblsl reserves room for at least one second of a stream when an inlet opens: a header claiming 1e8 Hz would
    take gigabytes before sending anything.
    """
    if not math.isfinite(srate) or srate < 0 or srate > MAX_BUFFER_SAMPLES:
        return (f"its header claims {srate:g} Hz, which no device sends (at most {MAX_BUFFER_SAMPLES} Hz are "
                "recorded)")
    if not 1 <= channel_count <= MAX_RECORDED_CHANNELS:
        return f"its header claims {channel_count} channels (at most {MAX_RECORDED_CHANNELS} are recorded)"
    return None


@dataclass
class _Burst:
    """Samples of one stream that arrived faster than its rate, over consecutive pulls."""

    n: int = 0
    t_min: float = math.inf
    t_max: float = -math.inf
    ahead_s: float = -math.inf   # how far the latest stamp ran ahead of the sender's clock (s; -inf: unknown)
    lag_s: float = -math.inf     # how far the burst's last stamp was behind the sender's clock when it arrived
    overflowed: bool = False     # the recorder's own queue was full
    max_pull: int = 0            # the most samples one round of pulls brought
    wall_first: float = math.inf   # monotonic time of the burst's first pull
    wall_last: float = -math.inf   # ... and of its last


#: A "burst" that keeps arriving for longer than this (wall seconds) with no hole in its timestamps is a sender
#: running faster than its nominal rate on purpose (``attune simulate --speed 4``, a replay published at 8x): its
#: stamps run ahead of the clock by design, and nothing was lost. A real burst (data sent at once) arrives within
#: a few pulls.
STEADY_FAST_SENDER_S = 10.0


@dataclass
class _Inlet:
    key: str
    name: str
    inlet: Any  # pylsl.StreamInlet
    stream_id: int
    string: bool
    next_offset: float
    dest: np.ndarray | None
    uid: str = ""  # the outlet run this inlet reads (a restarted stream is followed to its new run)
    srate: float = 0.0
    max_buflen: int = 360        # as given to pylsl.StreamInlet (see inlet_buffer)
    capacity: int = 0            # samples the inlet's queue holds
    offset: float | None = None  # the last clock offset measured (the sender's stamp + offset = local time)
    clock: Any = None            # the ClockOffset of the run read now (measured beside the inlet, in bounded memory)
    last_pull: float = 0.0       # time.monotonic() of the last pull
    burst: _Burst = field(default_factory=_Burst)
    last_note: float = -math.inf  # time.monotonic() of the last log entry about this stream
    unsaid: int = 0              # losses noted since then and not yet written


class SessionRecorder:
    """Write one session to an XDF file, incrementally and crash-safe.

    Parameters
    ----------
    path : str | Path
        The file to create (see :func:`default_recording_path`).
    flush_interval : float
        Seconds; data are forced to disk at least this often.
    clock_interval : float
        Seconds between clock-offset chunks of each raw stream.
    poll_interval : float
        Seconds between pulls of the recorder's inlets.
    label : str | None
        Pseudonymous session label, written into the derived streams' desc.

    Raises
    ------
    XdfWriteError
        When the file cannot be created (something is already at ``path``: a file or a symbolic link is never
        written over nor followed; the folder is missing or read-only); the message says how to fix it.

    Examples
    --------
    >>> rec = SessionRecorder(default_recording_path(label="couple-07"))   # doctest: +SKIP
    >>> rec.follow(live_session); rec.attach(runner); rec.start()
    >>> ...
    >>> rec.close()
    """

    def __init__(self, path, *, flush_interval: float = 1.0, clock_interval: float = 5.0,
                 poll_interval: float = 0.1, label: str | None = None):
        self.path = Path(path)
        self.label = check_label(label)
        self.clock_interval = float(clock_interval)
        self.poll_interval = float(poll_interval)
        self.started_at = time.time()
        self.writer = XdfWriter(self.path, flush_interval=flush_interval, fsync=True, mode=0o600,
                                started_at=self.started_at, exclusive=True)
        self.error: str | None = None
        self._lock = threading.RLock()
        self._inlets: dict[str, _Inlet] = {}
        self._pending_infos: list = []
        self._session = None
        self._model = None
        self._runner = None
        self._origin = 0.0
        self._sync_ids: dict[str, int] = {}
        self._events_id: int | None = None
        self._markers_id: int | None = None
        self._roster_id: int | None = None
        self._roster_text: str | None = None
        self._log_id: int | None = None
        self._refused: set[str] = set()   # keys of streams that cannot be recorded (said once, in the log)
        #: what the recording log holds, in words (samples lost, streams not recorded)
        self.problems: list[str] = []
        self._derived_ids: list[int] = []   # streams stamped on this computer's clock: zero clock offsets
        self._next_derived_offset = 0.0
        self._offset_times: dict[int, float] = {}   # derived stream id -> its last clock offset's time
        self._last_stamp: float | None = None
        self._raw_ids: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._followed_at = 0.0
        self.n_samples = 0

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        """True while the recording is being written (not closed, no write error)."""
        return self.error is None and not self.writer.closed

    def status(self) -> dict:
        """``{path, active, error, seconds, bytes, streams, samples}`` for views."""
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        return {"path": str(self.path), "active": self.active, "error": self.error,
                "seconds": time.time() - self.started_at, "bytes": size,
                "streams": len(self.writer._streams), "samples": self.n_samples}

    def _fail(self, exc: Exception) -> None:
        """A write failed: stop recording, keep what was written, tell the user; the session goes on."""
        with self._lock:
            if self.error is not None:
                return
            self.error = str(exc)
        logger.error("recording stopped: %s", exc)
        self._stop.set()
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - the file is already as readable as it can be
            pass
        if self._model is not None:
            self._model.message(f"Recording stopped: {exc} The session goes on without recording.")
            self._publish_status()

    def _write(self, fn, *args) -> bool:
        if self.error is not None or self.writer.closed:
            return False
        try:
            fn(*args)
            return True
        except XdfWriteError as exc:
            self._fail(exc)
        except OSError as exc:  # pragma: no cover - the writer wraps OS errors
            self._fail(XdfWriteError(exc.errno or 0, f"Cannot write XDF file '{self.path}': {exc}."))
        return False

    def _publish_status(self) -> None:
        if self._model is not None:
            self._model.recording = self.status()

    # ------------------------------------------------------------------ raw streams
    def add_raw_stream(self, header) -> int | None:
        """Declare a raw stream written by the caller (:meth:`write_raw`); ``header`` is XML or a dict.

        Returns the XDF stream id, or ``None`` when recording has stopped.
        """
        with self._lock:
            return self._add_stream(header)

    def _add_stream(self, header) -> int | None:
        """Declare a stream in the file: its XDF stream id, or ``None`` when writing has stopped (lock held)."""
        ids: list[int] = []
        if self._write(lambda: ids.append(self.writer.add_stream(header))):
            return ids[0]
        return None

    def write_raw(self, stream_id: int, timestamps, values) -> None:
        """Write samples of a raw stream: ``timestamps`` (n,), ``values`` (n, n_channels) or strings."""
        if self._write(self.writer.write_samples, stream_id, timestamps, values):
            self.n_samples += len(timestamps)

    def add_lsl_stream(self, info, key: str | None = None) -> None:
        """Record an LSL stream (a resolved ``pylsl.StreamInfo``) with the recorder's own inlet.

        The inlet is opened by the recorder thread (bounded waits), which then
        pulls it every ``poll_interval`` seconds.
        """
        key = key or info.source_id() or info.uid()
        with self._lock:
            if key in self._inlets or key in self._refused or any(k == key for k, _ in self._pending_infos):
                return
            self._pending_infos.append((key, info))

    def follow(self, session) -> None:
        """Record every stream a live session receives, and its event / marker streams, as they appear.

        Every stream a :class:`attune_monitor.acquisition.live.LiveSession` receives, and the event / marker streams
        it sees (:meth:`~attune_monitor.acquisition.live.LiveSession.marker_streams`), as they appear.
        """
        self._session = session

    def _open_pending(self) -> None:
        from .lsl import ClockOffset, pylsl, stream_xml

        with self._lock:
            pending, self._pending_infos = self._pending_infos, []
        formats = {pylsl.cf_float32: "float32", pylsl.cf_double64: "double64", pylsl.cf_string: "string",
                   pylsl.cf_int32: "int32", pylsl.cf_int16: "int16", pylsl.cf_int8: "int8"}
        for key, info in pending:
            if self._stop.is_set():
                return
            srate, n_ch = float(info.nominal_srate()), int(info.channel_count())
            why = unrecordable(srate, n_ch)
            if why is not None:  # an impossible header: it never gets to take the recording's memory
                with self._lock:
                    self._refused.add(key)
                self._note(None, f"stream {info.name()!r} (source_id {info.source_id()!r}) is not recorded: {why}.",
                           what="not_recorded", stream=info.name(), source_id=info.source_id())
                continue
            max_buflen, capacity = inlet_buffer(srate, n_ch, formats.get(info.channel_format(), "string"))
            try:
                inlet = pylsl.StreamInlet(info, max_buflen=max_buflen, recover=False, processing_flags=0)
                full = inlet.info(2.0)
                inlet.open_stream(2.0)
            except Exception as exc:  # TimeoutError / LostError: try again on the next round
                logger.info("recorder: cannot open %r yet (%s)", info.name(), exc)
                with self._lock:
                    self._pending_infos.append((key, info))
                continue
            with self._lock:
                stream_id = self._add_stream(stream_xml(full))
                if stream_id is None:
                    inlet.close_stream()
                    return
                string = full.channel_format() == pylsl.cf_string
                dtype = np.dtype(inlet.np_dtype or np.float64)
                rows = max(1, min(1024, _PULL_BYTES // max(1, n_ch * dtype.itemsize)))
                dest = None if string else np.empty((rows, full.channel_count()), dtype=dtype)
                rec = _Inlet(key, full.name(), inlet, stream_id, string, 0.0, dest, srate=srate, max_buflen=max_buflen,
                             capacity=capacity, last_pull=time.monotonic())
                rec.uid = full.uid()
                rec.clock = ClockOffset(info)
                self._inlets[key] = rec
            logger.info("recording %r as XDF stream %d", full.name(), stream_id)
            self._clock_offset(rec, pylsl, timeout=2.0)
        self._publish_status()

    def _clock_offset(self, rec: _Inlet, pylsl, timeout: float = 0.5) -> None:
        offset = rec.clock.measure(timeout)
        if offset is None:  # not measured yet: the next round tries again
            logger.debug("no clock offset of %r yet", rec.name)
            rec.next_offset = time.monotonic() + 1.0
            return
        rec.offset = offset
        self._write(self.writer.write_clock_offset, rec.stream_id, pylsl.local_clock(), offset)
        rec.next_offset = time.monotonic() + self.clock_interval

    def _follow_session(self) -> None:
        if self._session is None or time.monotonic() - self._followed_at < 1.0:
            return
        self._followed_at = time.monotonic()
        self._record_roster()
        # The session's receivers decide which run of a stream is the stream (restarts, duplicates, impostors;
        # LiveSession.stream_info): the recorder follows them, with inlets opened recover=False. liblsl's own
        # recovery would run an endless resolve per lost inlet, each binding ports of the 32 that restarted
        # outlets need (issue 18: with 5 streams lost, 4 never came back).
        markers = self._session.marker_streams() if hasattr(self._session, "marker_streams") else {}
        for key in [*self._session.receivers, *markers]:
            info = markers.get(key) or self._session.stream_info(key)
            with self._lock:
                rec = self._inlets.get(key)
                pending = any(k == key for k, _ in self._pending_infos)
            if info is None or pending or key in self._refused:
                continue
            if rec is None:
                self.add_lsl_stream(info, key)
            elif rec.uid and info.uid() != rec.uid:
                self._follow_run(rec, info)

    def _follow_run(self, rec: _Inlet, info) -> None:
        """Go on recording ``rec``'s stream from its new run ``info``.

        The stream restarted, or the session went back to the genuine run: a new inlet into the same XDF stream;
        the old one is drained and closed. Bounded waits; on failure the next round tries again.
        """
        from .lsl import ClockOffset, pylsl

        try:
            inlet = pylsl.StreamInlet(info, max_buflen=rec.max_buflen, recover=False, processing_flags=0)
            inlet.open_stream(2.0)
        except Exception as exc:  # noqa: BLE001 - timeout / lost: the next round tries again
            logger.info("recorder: cannot open the new run of %r yet (%s)", rec.name, exc)
            return
        try:
            self._pull_all()  # what the old run sent last
        finally:
            old, rec.inlet, rec.uid = rec.inlet, inlet, info.uid()
            rec.clock.close()
            rec.clock = ClockOffset(info)
            try:
                old.close_stream()
            except Exception:  # noqa: BLE001 - already gone
                pass
        logger.info("recording %r from its new run (uid %s)", rec.name, rec.uid)
        self._clock_offset(rec, pylsl, timeout=2.0)

    def _pull_all(self, final: bool = False) -> None:
        from .lsl import pylsl

        for rec in list(self._inlets.values()):
            got, t_min, t_max, full = 0, math.inf, -math.inf, False
            try:
                # a queue holding all it can hold has dropped its oldest samples (liblsl makes room that way)
                full = rec.capacity > 0 and rec.inlet.samples_available() >= rec.capacity - 1
                dest = rec.dest  # numeric streams pull into this buffer; string streams have none
                rows = 1024 if dest is None else dest.shape[0]
                while got < max(rec.capacity, rows):  # at most a queue's worth a round: no stream starves the others
                    if rec.string:
                        vals, ts = rec.inlet.pull_chunk(timeout=0.0, max_samples=rows)
                        n = len(ts)
                        if n:
                            self.write_raw(rec.stream_id, ts, [list(v) for v in vals])
                    else:
                        assert dest is not None
                        _, ts = rec.inlet.pull_chunk(timeout=0.0, max_samples=rows, dest_obj=dest)
                        n = len(ts)
                        if n:
                            self.write_raw(rec.stream_id, ts, dest[:n])
                    if n:
                        got += n
                        t_min, t_max = min(t_min, float(np.min(ts))), max(t_max, float(np.max(ts)))
                    if n < rows or self.error is not None:
                        break
            except pylsl.util.LostError:
                self._watch_burst(rec, got, t_min, t_max, full, pylsl.local_clock(), final)
                continue  # this run ended: _follow_session follows the stream to its next run
            self._watch_burst(rec, got, t_min, t_max, full, pylsl.local_clock(), final)
            if time.monotonic() >= rec.next_offset and self.error is None:
                self._clock_offset(rec, pylsl, timeout=0.2)

    # ------------------------------------------------------------------ bursts and losses
    def _watch_burst(self, rec: _Inlet, got: int, t_min: float, t_max: float, full: bool, now: float,
                     final: bool = False) -> None:
        """Follow samples that arrive faster than the stream's rate; when such a burst is over, note what it lost.

        A pull that brings more than twice what the rate allows since the one before (and more than 16 samples)
        belongs to a burst, as does any pull that found the queue full; the burst ends at the first pull that
        does not (or when recording ends, ``final``).
        """
        mono = time.monotonic()
        elapsed = max(mono - rec.last_pull, 1e-3)
        rec.last_pull = mono
        rate = rec.srate if rec.srate > 0 else _IRREGULAR_SAMPLES_PER_S
        b = rec.burst
        if got > max(16.0, 2.0 * rate * elapsed) or full:
            b.n += got
            b.t_min, b.t_max = min(b.t_min, t_min), max(b.t_max, t_max)
            if rec.offset is not None and got:  # the sender's clock now: local time - offset
                b.ahead_s = max(b.ahead_s, t_max - (now - rec.offset))
                b.lag_s = (now - rec.offset) - max(t_max, b.t_max)
            b.overflowed |= full
            b.max_pull = max(b.max_pull, got)
            b.wall_first, b.wall_last = min(b.wall_first, mono), mono
            if not final:
                return
        if b.n == 0 and not b.overflowed:
            return
        rec.burst = _Burst()
        text = self._burst_loss(rec, b)
        if text is not None:
            self._note(rec, text, what="loss", stream=rec.name, source_id=rec.key, received=b.n)
        else:
            logger.info("stream %r: a burst of %d samples recorded whole", rec.name, b.n)

    @staticmethod
    def _burst_loss(rec: _Inlet, b: _Burst) -> str | None:
        """What a finished burst lost, in words, or ``None`` when nothing says it lost anything."""
        if b.overflowed:
            held = f"{rec.capacity} samples" + (f", {rec.capacity / rec.srate:.0f} s" if rec.srate > 0 else "")
            return (f"stream {rec.name!r}: the recorder's buffer ({held}) overflowed during a burst, so its oldest "
                    f"samples were lost ({b.n} samples of the burst were recorded): the stream sent faster than the "
                    "recording could take it.")
        usual = SENDER_BUFFER_S * (rec.srate if rec.srate > 0 else _IRREGULAR_SAMPLES_PER_S)
        if rec.srate <= 0:  # no timestamps to check: only a sender's queue found (nearly) full says it
            if b.max_pull < 0.9 * usual:
                return None
            return (f"stream {rec.name!r}: {b.max_pull} samples arrived at once, about as many as an LSL sender "
                    "keeps for a receiver by default, so older samples may have been lost by the sender (an "
                    f"irregular stream's timestamps cannot tell; {b.n} samples of the burst were recorded).")
        if b.n < 0.9 * usual:  # a sender keeps at least this much by default: nothing can have been dropped there
            return None
        missing = int(round((b.t_max - b.t_min) * rec.srate)) + 1 - b.n
        if missing > max(2, 0.001 * b.n):
            return (f"stream {rec.name!r}: a burst of {b.n} samples arrived at once with holes in its timestamps: "
                    f"at least {missing} samples ({missing / rec.srate:.0f} s at {rec.srate:g} Hz) were lost by the "
                    f"sender, which keeps {SENDER_BUFFER_S:.0f} s by default.")
        if b.wall_last - b.wall_first > STEADY_FAST_SENDER_S:
            return None  # a sender running faster than its rate all along, without a hole: nothing lost
        if b.ahead_s > 5.0:
            return (f"stream {rec.name!r}: a burst of {b.n} samples arrived at once, stamped up to "
                    f"{b.ahead_s:.0f} s ahead of the sender's clock: the sender could not keep the whole burst "
                    f"(an LSL sender keeps {SENDER_BUFFER_S:.0f} s by default), so samples were lost and the rest "
                    "stamped as if they followed on.")
        if b.lag_s > 5.0:
            return (f"stream {rec.name!r}: a burst of {b.n} samples arrived at once, its last sample stamped "
                    f"{b.lag_s:.0f} s before it arrived: about {b.lag_s * rec.srate:.0f} samples "
                    f"({b.lag_s:.0f} s at {rec.srate:g} Hz) were probably lost by the sender, which keeps "
                    f"{SENDER_BUFFER_S:.0f} s by default (unless it sent old data on purpose).")
        return None

    def _note(self, rec: _Inlet | None, text: str, **fields) -> None:
        """Write an entry into the recording log (see the module docstring) and tell the user.

        About one stream (``rec``), at most one entry every :data:`LOSS_NOTE_INTERVAL_S` seconds; the entries
        left out in between are counted in the next one.
        """
        now = time.monotonic()
        if rec is not None:
            if now - rec.last_note < LOSS_NOTE_INTERVAL_S:
                rec.unsaid += 1
                return
            if rec.unsaid:
                text += f" ({rec.unsaid} more such note(s) in the {now - rec.last_note:.0f} s before.)"
            rec.last_note, rec.unsaid = now, 0
        logger.warning("recording: %s", text)
        with self._lock:
            self.problems.append(text)
        if self._model is not None:
            self._model.message(f"Recording: {text}")
        self._write_log(dict(fields, text=text))

    def _write_log(self, entry: dict) -> None:
        """Append ``entry`` (JSON) to the ``Attune recording log`` stream, made when first needed."""
        from .lsl import pylsl

        with self._lock:
            if not self.active:
                return
            if self._log_id is None:
                desc = {"content": "what the recording lost or left out (JSON: what, stream, source_id, text)",
                        "software": "attune", **({"session_label": self.label} if self.label else {}),
                        "channels": [{"label": "json", "type": LOG_STREAM_TYPE}]}
                self._log_id = self.add_raw_stream(dict(
                    name=LOG_STREAM_NAME, type=LOG_STREAM_TYPE, channel_count=1, nominal_srate=0.0,
                    channel_format="string", source_id="attune-recording-log", desc=desc))
                if self._log_id is None:
                    return
                self._derived_ids.append(self._log_id)
            now = pylsl.local_clock()
            self.write_raw(self._log_id, [now], [[json.dumps(entry, default=_json_default, sort_keys=True)]])
            self._derived_clock_offsets(now, force=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow_session()
                if self._pending_infos:
                    self._open_pending()
                self._pull_all()
                self._publish_status()
            except Exception as exc:  # never die silently: say so and stop recording
                logger.exception("recorder thread failed")
                self._fail(XdfWriteError(0, f"Recording failed unexpectedly ({exc}); the file '{self.path}' "
                                            "is readable up to this point."))
                return
            self._stop.wait(self.poll_interval)

    # ------------------------------------------------------------------ roster
    def _record_roster(self) -> None:
        """Write the session's roster (TOML) when it differs from the one written last."""
        session = self._session
        assignment = getattr(session, "assignment", None)
        if assignment is None or not assignment.streams or not self.active:
            return
        user = getattr(session, "roster", None)
        text = recorded_roster(assignment, user).to_toml()
        if text == self._roster_text:
            return
        from .lsl import pylsl

        with self._lock:
            if self._roster_id is None:
                source = getattr(user, "path", None)
                desc = {"content": "who wears which stream (roster TOML; the last sample is the one in force)",
                        "roster_file": Path(source).name if source else None, "software": "attune",
                        **({"session_label": self.label} if self.label else {}),
                        "channels": [{"label": "roster", "type": RECORDED_ROSTER_TYPE}]}
                self._roster_id = self.add_raw_stream(dict(
                    name=RECORDED_ROSTER_NAME, type=RECORDED_ROSTER_TYPE, channel_count=1, nominal_srate=0.0,
                    channel_format="string", source_id="attune-roster", desc=desc))
                if self._roster_id is None:
                    return
                self._derived_ids.append(self._roster_id)
            now = pylsl.local_clock()
            self.write_raw(self._roster_id, [now], [[text]])
            self._roster_text = text
            self._derived_clock_offsets(now, force=True)
        logger.info("recorded the session's roster (%d participants)", len(assignment.participants))

    def _derived_clock_offsets(self, stamp: float, force: bool = False) -> None:
        """A zero ClockOffset for every derived stream every ``clock_interval`` s of session time (and when forced).

        They are stamped on this computer's LSL clock, and pyxdf warns about a stream without offsets.
        """
        if not self._derived_ids or not (force or stamp >= self._next_derived_offset) or not self.active:
            return
        for sid in list(self._derived_ids):
            last = self._offset_times.get(sid)
            if last is not None and stamp <= last:
                continue  # a stream's collection times only move forward (pyxdf reads a step back as a clock reset)
            if not self._write(self.writer.write_clock_offset, sid, stamp, 0.0):
                return
            self._offset_times[sid] = stamp
        self._next_derived_offset = stamp + self.clock_interval

    # ------------------------------------------------------------------ derived streams
    def attach(self, runner) -> None:
        """Record the runner's synchrony, detector events and the facilitator's markers.

        Registers :meth:`on_update` in ``runner.listeners`` and :meth:`on_marker`
        in ``runner.model.marker_sinks``; stamps ``runner.pipeline.origin + t``.
        """
        pipe, model = runner.pipeline, runner.model
        self._runner, self._model = runner, model
        self._origin = float(pipe.origin)
        pairs = [f"{a}-{b}" for a, b in pipe.pairs]
        label = {"session_label": self.label} if self.label else {}
        step_s = float(runner.config.step_s)
        for m in pipe.modalities:
            chans = [{"label": p, "unit": "r", "type": SYNC_STREAM_TYPE} for p in pairs]
            desc = {"modality": m, "step_s": step_s, "window_s": _window_s(runner.config, m),
                    "origin": repr(self._origin), "channels": chans, "software": "attune", **label}
            sid = self.add_raw_stream(dict(name=f"Attune synchrony {m}", type=SYNC_STREAM_TYPE,
                                           channel_count=len(pairs), nominal_srate=1.0 / step_s,
                                           channel_format="float32", source_id=f"attune-sync-{m}", desc=desc))
            if sid is not None:
                self._sync_ids[m] = sid
                self._derived_ids.append(sid)
        for attr, name, typ, what in (
            ("_events_id", EVENTS_STREAM_NAME, EVENTS_STREAM_TYPE, "detector state changes and episodes (JSON)"),
            ("_markers_id", MARKERS_STREAM_NAME, MARKERS_STREAM_TYPE, "facilitator markers (JSON)"),
        ):
            desc = {"content": what, "origin": repr(self._origin), "software": "attune", **label,
                    "channels": [{"label": "json", "type": typ}]}
            setattr(self, attr, self.add_raw_stream(dict(name=name, type=typ, channel_count=1, nominal_srate=0.0,
                                                          channel_format="string",
                                                          source_id=f"attune-{typ.lower()}", desc=desc)))
            if getattr(self, attr) is not None:
                self._derived_ids.append(getattr(self, attr))
        self._derived_clock_offsets(self._origin, force=True)
        runner.listeners.append(self.on_update)
        model.marker_sinks.append(self.on_marker)
        self._publish_status()

    def on_update(self, upd) -> None:
        """Runner listener: write the new synchrony windows and events of one pipeline update."""
        if upd is None or not self.active:
            return
        for m, w in getattr(upd, "windows", {}).items():
            sid = self._sync_ids.get(m)
            t = np.asarray(w.get("t", ()), dtype=float)
            if sid is None or t.size == 0:
                continue
            sync = np.asarray(w["sync"], dtype=float).reshape(-1, t.size)
            self.write_raw(sid, self._origin + t, sync.T)
            self._last_stamp = max(self._last_stamp or -math.inf, float(self._origin + t[-1]))
        if self._events_id is not None and upd.events:
            stamps: list[float] = []
            rows = []
            for ev in upd.events:
                t_ev, text = event_payload(ev)
                stamps.append(self._origin + t_ev)
                rows.append([text])
            self.write_raw(self._events_id, stamps, rows)
            self._last_stamp = max(self._last_stamp or -math.inf, max(stamps))
        if self._last_stamp is not None:
            self._derived_clock_offsets(self._last_stamp)
        self._publish_status()

    def on_marker(self, marker: dict) -> None:
        """``SessionModel.marker_sinks`` entry: write one facilitator marker."""
        if self._markers_id is None or not self.active:
            return
        t = marker.get("t")
        t = float(t) if t is not None else 0.0
        self.write_raw(self._markers_id, [self._origin + t], [[json.dumps(marker, default=_json_default,
                                                                           sort_keys=True)]])

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SessionRecorder:
        """Start the thread that pulls raw LSL streams (not needed for derived streams only)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="attune-recorder", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Pull what is left, write the stream footers and close the file. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self.error is None and not self.writer.closed:
            try:
                self._pull_all(final=True)
                self._record_roster()
            except Exception:  # noqa: BLE001 - closing must still write the footers
                logger.exception("last pull before closing failed")
            if self._last_stamp is not None:
                self._derived_clock_offsets(self._last_stamp, force=True)
        for rec in list(self._inlets.values()):
            if rec.clock is not None:
                rec.clock.close()
            try:
                rec.inlet.close_stream()
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._inlets.clear()
        if self._runner is not None:
            try:
                self._runner.listeners.remove(self.on_update)
            except ValueError:
                pass
        if self._model is not None:
            try:
                self._model.marker_sinks.remove(self.on_marker)
            except ValueError:
                pass
        if self.error is None:
            try:
                self.writer.close()
            except XdfWriteError as exc:
                self._fail(exc)
        self._publish_status()

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _window_s(config, modality: str):
    """The synchrony window (s) of a modality from a PipelineConfig (one value, or per modality)."""
    fn = getattr(config, "window_for", None)
    if callable(fn):
        return fn(modality)
    w = getattr(config, "window_s", None)
    if isinstance(w, dict):
        return w.get(modality)
    if isinstance(w, (tuple, list)):
        return dict(w).get(modality)
    return w


def record_session(path, runner, session=None, *, label: str | None = None, **options) -> SessionRecorder:
    """Create, attach and start a recorder for a running session.

    Parameters
    ----------
    path : str | Path
    runner : ui.runner.Runner (or any object with ``pipeline``, ``model``, ``config``, ``listeners``)
    session : acquisition.live.LiveSession | None
        Whose raw LSL streams to record (``None``: derived streams only).
    label : str | None
    **options
        More :class:`SessionRecorder` options.

    Raises
    ------
    XdfWriteError
        When the file cannot be created.
    """
    rec = SessionRecorder(path, label=label, **options)
    if session is not None:
        rec.follow(session)
    rec.attach(runner)
    return rec.start()

