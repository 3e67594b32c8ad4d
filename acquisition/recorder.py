"""Record a live session to XDF 1.0, the way LabRecorder does, plus Attune's derived streams.

:class:`SessionRecorder` writes one XDF file (through
:class:`acquisition.xdf_writer.XdfWriter`) holding

* every **raw** stream of the session, as LabRecorder records it: the full
  header of the device (``inlet.info().as_xml()``, desc included), all
  channels, the LSL timestamps as sent (no post-processing) and a ClockOffset
  chunk from ``inlet.time_correction()`` every ``clock_interval`` seconds, so
  that pyxdf, MNE-based tools and EEGLAB synchronise the clocks themselves;
  the recorder opens **its own inlets** (liblsl serves many inlets per outlet)
  so that the recording does not depend on what the monitor keeps of a stream;
* the **derived synchrony** of every pair, one numeric stream per modality
  (type ``Synchrony``, one channel per pair, rate ``1 / step_s``);
* the detector's **state changes and episodes** (type ``AttuneEvents``, a
  string stream of JSON payloads);
* other apps' **event / marker streams** seen by the session (type
  ``Markers`` and the like, or any string stream: an experiment's triggers,
  a button box), recorded like the raw streams;
* the facilitator's **markers** (type ``Markers``, JSON payloads of
  :meth:`ui.model.SessionModel.add_marker`: free text, rupture types of the
  taxonomy, ``repair`` ...);
* the session's **roster** (``Attune roster``, type ``AttuneRoster``, a
  string stream): who wore which stream, with the kinds and the unit
  overrides in force, as roster TOML
  (:func:`acquisition.roster.recorded_roster`), written when recording starts
  and again whenever the assignment changes; :func:`acquisition.files.load_recording`
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

Files are created with mode 0600 (physiological data are health data).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .roster import RECORDED_ROSTER_NAME, RECORDED_ROSTER_TYPE, recorded_roster
from .xdf_writer import XdfWriteError, XdfWriter

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
    while path.exists():
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


def event_payload(ev: dict) -> tuple[float, str]:
    """A pipeline event as ``(session time, JSON text)`` for the events stream."""
    d = {}
    for k, v in ev.items():
        if k == "episode" and hasattr(v, "__dataclass_fields__"):
            from dsp.detector import episode_dict

            v = episode_dict(v)
        d[k] = v
    t = ev.get("t")
    if t is None:
        t = ev.get("offset_s") if ev.get("type") == "signal_back" else ev.get("onset_s")
    t = float(t) if t is not None and math.isfinite(float(t)) else 0.0
    return t, json.dumps(d, default=_json_default, sort_keys=True)


@dataclass
class _Inlet:
    key: str
    name: str
    inlet: object
    stream_id: int
    string: bool
    next_offset: float
    dest: np.ndarray | None
    uid: str = ""  # the outlet run this inlet reads (a restarted stream is followed to its new run)


class SessionRecorder:
    """Write one session to an XDF file, incrementally and crash-safe.

    Parameters
    ----------
    path : str | Path
        The file to create (see :func:`default_recording_path`).
    flush_interval : float
        Seconds; data are forced to disk at least this often.
    clock_interval : float
        Seconds between ``time_correction()`` measurements of each raw stream.
    poll_interval : float
        Seconds between pulls of the recorder's inlets.
    label : str | None
        Pseudonymous session label, written into the derived streams' desc.

    Raises
    ------
    XdfWriteError
        When the file cannot be created; the message says how to fix it.

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
                                started_at=self.started_at)
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
            out = []
            if self._write(lambda: out.append(self.writer.add_stream(header))):
                return out[0]
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
            if key in self._inlets or any(k == key for k, _ in self._pending_infos):
                return
            self._pending_infos.append((key, info))

    def follow(self, session) -> None:
        """Record every stream a :class:`acquisition.live.LiveSession` receives, and the event / marker streams
        it sees (:meth:`~acquisition.live.LiveSession.marker_streams`), as they appear."""
        self._session = session

    def _open_pending(self) -> None:
        from .lsl import pylsl

        with self._lock:
            pending, self._pending_infos = self._pending_infos, []
        for key, info in pending:
            if self._stop.is_set():
                return
            try:
                inlet = pylsl.StreamInlet(info, max_buflen=360, recover=False, processing_flags=0)
                full = inlet.info(2.0)
                inlet.open_stream(2.0)
            except Exception as exc:  # TimeoutError / LostError: try again on the next round
                logger.info("recorder: cannot open %r yet (%s)", info.name(), exc)
                with self._lock:
                    self._pending_infos.append((key, info))
                continue
            xml = full.as_xml()
            out = []
            with self._lock:
                if not self._write(lambda: out.append(self.writer.add_stream(xml))):
                    inlet.close_stream()
                    return
                string = full.channel_format() == pylsl.cf_string
                dest = None if string else np.empty((1024, full.channel_count()), dtype=inlet.np_dtype or np.float64)
                rec = _Inlet(key, full.name(), inlet, out[0], string, 0.0, dest)
                rec.uid = full.uid()
                self._inlets[key] = rec
            logger.info("recording %r as XDF stream %d", full.name(), out[0])
            self._clock_offset(rec, pylsl, timeout=2.0)
        self._publish_status()

    def _clock_offset(self, rec: _Inlet, pylsl, timeout: float = 0.5) -> None:
        try:
            offset = rec.inlet.time_correction(timeout)
        except Exception as exc:  # lost or not yet measured: the next round tries again
            logger.debug("time_correction of %r failed: %s", rec.name, exc)
            rec.next_offset = time.monotonic() + 1.0
            return
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
            if info is None or pending:
                continue
            if rec is None:
                self.add_lsl_stream(info, key)
            elif rec.uid and info.uid() != rec.uid:
                self._follow_run(rec, info)

    def _follow_run(self, rec: _Inlet, info) -> None:
        """Go on recording ``rec``'s stream from its new run ``info`` (restarted, or the session went back to the
        genuine run): a new inlet into the same XDF stream; the old one is drained and closed. Bounded waits;
        on failure the next round tries again."""
        from .lsl import pylsl

        try:
            inlet = pylsl.StreamInlet(info, max_buflen=360, recover=False, processing_flags=0)
            inlet.open_stream(2.0)
        except Exception as exc:  # noqa: BLE001 - timeout / lost: the next round tries again
            logger.info("recorder: cannot open the new run of %r yet (%s)", rec.name, exc)
            return
        try:
            self._pull_all()  # what the old run sent last
        finally:
            old, rec.inlet, rec.uid = rec.inlet, inlet, info.uid()
            try:
                old.close_stream()
            except Exception:  # noqa: BLE001 - already gone
                pass
        logger.info("recording %r from its new run (uid %s)", rec.name, rec.uid)
        self._clock_offset(rec, pylsl, timeout=2.0)

    def _pull_all(self) -> None:
        from .lsl import pylsl

        for rec in list(self._inlets.values()):
            try:
                while True:
                    if rec.string:
                        vals, ts = rec.inlet.pull_chunk(timeout=0.0, max_samples=1024)
                        n = len(ts)
                        if n:
                            self.write_raw(rec.stream_id, ts, [list(v) for v in vals])
                    else:
                        _, ts = rec.inlet.pull_chunk(timeout=0.0, max_samples=rec.dest.shape[0], dest_obj=rec.dest)
                        n = len(ts)
                        if n:
                            self.write_raw(rec.stream_id, ts, rec.dest[:n])
                    if n < 1024 or self.error is not None:
                        break
            except pylsl.util.LostError:
                continue  # this run ended: _follow_session follows the stream to its next run
            if time.monotonic() >= rec.next_offset and self.error is None:
                self._clock_offset(rec, pylsl, timeout=0.2)

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
        """A zero ClockOffset for every derived stream every ``clock_interval`` s of session time (and when forced):
        they are stamped on this computer's LSL clock, and pyxdf warns about a stream without offsets."""
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
            ts, rows = [], []
            for ev in upd.events:
                t, text = event_payload(ev)
                ts.append(self._origin + t)
                rows.append([text])
            self.write_raw(self._events_id, ts, rows)
            self._last_stamp = max(self._last_stamp or -math.inf, max(ts))
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
                self._pull_all()
                self._record_roster()
            except Exception:  # noqa: BLE001 - closing must still write the footers
                logger.exception("last pull before closing failed")
            if self._last_stamp is not None:
                self._derived_clock_offsets(self._last_stamp, force=True)
        for rec in list(self._inlets.values()):
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

