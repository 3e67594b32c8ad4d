"""Drive a source through the session pipeline into the model, off the GUI thread.

``Runner`` owns one worker thread that, every ``tick_s``, polls the source
(live LSL or a replayed recording), pushes the new samples into
:class:`attune_monitor.dsp.pipeline.SessionPipeline`, advances it, and applies the update to
the Qt-free :class:`attune_monitor.ui.model.SessionModel`. Views read the model at their own
pace. Listeners (the recorder, the headless view) are called from the worker
with every update.

:func:`attune_monitor.analysis.analyze_recording` runs the very same pipeline
(built by :func:`attune_monitor.analysis.make_pipeline`) over a whole
recording at full speed — that is what ``attune analyze`` does, so replaying
a recording live and analysing it give the same episodes. Its names stay
importable from here.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import math
import os
import sys
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager

import numpy as np

from attune_monitor.acquisition.files import is_shared_event, is_shared_kind, marker_words
from attune_monitor.acquisition.protocols import MarkerSource, NewStreamsSource, ReplaySource, SessionSource, Source
from attune_monitor.analysis import Analysis, analyze_recording, feed, make_pipeline  # noqa: F401 - importable here
from attune_monitor.dsp.pipeline import PipelineConfig

from .model import SessionModel
from .words import clock

__all__ = ["Runner", "TickLog", "process_memory", "session_heap_frozen"]

logger = logging.getLogger(__name__)


@contextmanager
def session_heap_frozen():
    """Keep the objects that exist now out of the cyclic garbage collector's scans while the block runs.

    :func:`gc.freeze` on the way in (modules, the session's pipeline and model), :func:`gc.unfreeze` on the way
    out.

    A large group's detector holds thousands of pair machines and tracks for the whole session; a full
    collection visits all of them, and it falls on whichever tick allocated last, the heavy one where a
    synchrony window completes. Frozen, they are left out (they are not garbage until the session ends, and
    unfreezing at its end hands them back). Nothing the pipeline computes changes.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc >= 2.33): every field a ``size_t``."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc_mallinfo2():
    """The ``mallinfo2`` of glibc as a ctypes function, or None (another C library, or a glibc before 2.33)."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    fn.restype, fn.argtypes = _MallInfo2, []
    return fn


_MALLINFO2 = _glibc_mallinfo2() if sys.platform.startswith("linux") else None


def process_memory() -> dict:
    """The memory of the running process now, in MB (a probe for soak measurements; cheap enough for every few seconds).

    Returns
    -------
    memory : dict
        ``rss_mb``: resident set (``/proc/self/statm``; absent where there is none); ``py_blocks``: the Python
        object allocator's blocks in use (:func:`sys.getallocatedblocks`); with glibc's malloc also
        ``heap_in_use_mb`` (bytes malloc has handed out and not had back, its arenas' and its mmapped chunks':
        ``uordblks + hblkhd``) and ``heap_free_mb`` (free space its arenas keep, ``fordblks``). Memory taken and
        not given back shows in ``heap_in_use_mb`` even while the resident set stays level because freed space
        is reused; free space that is never reused shows in ``heap_free_mb``.
    """
    out: dict = {}
    try:
        with open("/proc/self/statm", "rb") as f:
            out["rss_mb"] = round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6, 3)
    except (OSError, ValueError, IndexError):
        pass
    out["py_blocks"] = sys.getallocatedblocks()
    if _MALLINFO2 is not None:
        mi = _MALLINFO2()
        out["heap_in_use_mb"] = round((mi.uordblks + mi.hblkhd) / 1e6, 3)
        out["heap_free_mb"] = round(mi.fordblks / 1e6, 3)
    return out


class Runner:
    """Source -> pipeline -> model, in a worker thread.

    Parameters
    ----------
    source : object
        A source (see :mod:`attune_monitor.acquisition.sources`).
    config : PipelineConfig | None
    tick_s : float
        Worker period (s).
    modalities : iterable of {"hr", "eda"} | None
        Use only these signals (default: every input of the source).
    """

    def __init__(self, source: Source, config: PipelineConfig | None = None, tick_s: float = 0.05, modalities=None):
        if not isinstance(source, Source):
            raise TypeError(f"Runner: {type(source).__name__} is not a source (it needs inputs, origin, poll() and "
                            "close(); see attune_monitor.acquisition.protocols.Source).")
        self.source = source
        #: the source's optional capabilities (None: it has not got them), see attune_monitor.acquisition.protocols
        self.replay: ReplaySource | None = source if isinstance(source, ReplaySource) else None
        self._markers: MarkerSource | None = source if isinstance(source, MarkerSource) else None
        self._new_streams: NewStreamsSource | None = source if isinstance(source, NewStreamsSource) else None
        self._session = source.session if isinstance(source, SessionSource) else None
        self.config = config or PipelineConfig()
        self.tick_s = float(tick_s)
        self.modalities = None if modalities is None else tuple(modalities)
        self.pipeline = make_pipeline(source, self.config, self.modalities)
        self.model = SessionModel(
            self.pipeline.participants, self.pipeline.modalities, self.pipeline.pairs, self.config.fs,
            self.config.step_s, self.config.history_s, preset=self.config.preset,
        )
        for note in getattr(source, "notes", []):
            self.model.message(note)
        #: callables ``listener(update)`` called from the worker thread after every advance
        self.listeners: list = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()
        self._flushed = False
        #: the running :class:`attune_monitor.acquisition.recorder.SessionRecorder`, if any
        self.recorder = None
        self._rec_started = 0.0
        self._next_stream_check = 0.0
        # the facilitator's markers (GUI thread) reach the pipeline (worker thread) through this list
        self._shared_events: list = []
        self._shared_lock = threading.Lock()
        self.model.marker_sinks.append(self._on_marker)
        #: wall durations (s) of the worker's recent ticks, once :meth:`measure_ticks` turned measuring on
        #: (``None``: off, the default); :meth:`take_tick_durations` drains it
        self.tick_durations: deque | None = None
        #: ticks measured but dropped unread because the bounded deque was full
        self.ticks_dropped = 0

    def measure_ticks(self, maxlen: int = 8192) -> None:
        """Keep the wall duration of every worker tick (:meth:`step`, listeners and recorder included).

        Off by default; a probe for soak measurements (``bench/bench_soak.py`` through ``attune monitor``'s
        hidden ``--tick-log``). At most ``maxlen`` durations are kept between two :meth:`take_tick_durations`
        (8192 ticks: ~7 minutes at the default 50-ms tick); older ones are dropped and counted in
        ``ticks_dropped``.
        """
        if maxlen < 1:
            raise ValueError(f"Invalid value for 'maxlen': expected at least 1 tick, but got {maxlen}.")
        self.tick_durations = deque(maxlen=int(maxlen))

    def take_tick_durations(self) -> np.ndarray:
        """The tick durations measured since the last call, oldest first, shape (n_ticks,), in seconds.

        Empty when measuring is off. Safe to call from any thread.
        """
        d = self.tick_durations
        if d is None:
            return np.zeros(0)
        out = []
        while True:
            try:
                out.append(d.popleft())
            except IndexError:
                return np.asarray(out, dtype=float)

    def _on_marker(self, marker: dict) -> None:
        """A facilitator's marker: a note is an event everybody shared (re-baseline); episode reviews are not."""
        if is_shared_kind(marker.get("kind")):
            with self._shared_lock:
                self._shared_events.append((float(marker["t"]), f"{marker.get('kind')}: {marker.get('text') or ''}"))

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> Runner:
        """Start the worker thread (a replayed recording's clock starts now, from where it stands)."""
        if self.replay is not None:  # a view that took seconds to open misses none of the replay
            self.replay.start_clock()
        self._thread = threading.Thread(target=self._loop, name="attune-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker, close the recording (if any) and the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.stop_recording()
        try:
            self.source.close()
        except Exception:  # closing must not hide the session's results
            logger.exception("closing the source failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.step()
            except Exception as exc:  # keep the session (and its recording) alive; show the error
                self.error = exc
                logger.error("pipeline error: %s", "".join(traceback.format_exception(exc)))
                self.model.message(f"Processing error: {exc}")
            ticks = self.tick_durations
            if ticks is not None:
                if len(ticks) == ticks.maxlen:
                    self.ticks_dropped += 1
                ticks.append(time.monotonic() - t0)
            self._stop.wait(max(0.0, self.tick_s - (time.monotonic() - t0)))

    # -- one tick ---------------------------------------------------------------------------------------
    def step(self):
        """Poll, push, advance, apply. Returns the pipeline update (or None)."""
        seek = self.replay.take_seek() if self.replay is not None else None
        if seek is not None:
            self._restart(seek)
            return None
        if self._flushed and self.replay is None:
            return None  # a live source with an end (the demo's simulator) is over: nothing more will come
        chunks, until, status = self.source.poll()
        feed(self.pipeline, chunks)
        with self._shared_lock:
            shared, self._shared_events = self._shared_events, []
        for t, what in shared:
            self.pipeline.note_shared_event(t, what)
        if self._markers is not None:
            new = self._markers.poll_markers()
            if new:  # other apps' markers, live: on the timelines (the recorder records their streams itself)
                self.model.show_external_markers([(t - self.source.origin, name, text) for t, name, text in new])
                for t, _name, text in new:  # and every pair re-baselines at a shared event
                    if is_shared_event(text):
                        self.pipeline.note_shared_event(t - self.source.origin, marker_words(text))
        if self._new_streams is not None and time.monotonic() >= self._next_stream_check:
            self._next_stream_check = time.monotonic() + 2.0
            for name in self._new_streams.new_streams():
                self.model.message(f"New stream {name!r} appeared; it is not in this session's pipeline: "
                                   "restart monitoring to include it.")
            notices = getattr(self._session, "notices", None)  # a LiveSession's; a test's stand-in may have none
            for text in (notices() if notices is not None else ()):
                self.model.message(text)  # e.g. a duplicate of a stream in use appeared and was refused
        upd = None
        if until is not None:
            upd = self.pipeline.advance(until)
            self._publish(upd, status)
        if self.replay is not None and self.replay.finished and not self._flushed:
            upd = self._end_session(self.replay.end, status)
        ended_at = getattr(self.source, "ended_at", None) if self.replay is None else None
        end = ended_at() if ended_at is not None else None
        if end is not None and not self._flushed:  # the simulated session is over: closed as a replay's end is
            self.model.message(f"The simulated session ended at {clock(end - self.source.origin)}; "
                               "what it showed stays on screen.")
            upd = self._end_session(end, status)
            scripted = getattr(self.source, "scripted_words", None)
            if scripted is not None:  # the demo: what was scripted, and whether it was flagged
                for text in scripted(self.model.episode_list()):
                    self.model.message(text)
            if self.recorder is not None:  # the demo's Record button: the recording ends with the session
                self.stop_recording()
        return upd

    def _end_session(self, end: float, status):
        """The source is over at stream time ``end``: flush and finish the pipeline, publish, set :attr:`finished`."""
        upd = self.pipeline.flush(end)
        self.pipeline.finish()
        self._flushed = True
        self._publish(upd, status)
        self.finished.set()
        return upd

    # -- recording ---------------------------------------------------------------------------------
    def start_recording(self, path=None, label: str | None = None):
        """Record this session (raw streams of a live source, synchrony, events, markers) to XDF.

        Parameters
        ----------
        path : str | Path | None
            File, or ``None`` for ``recordings/session-<time>[-label].xdf``.
        label : str | None
            A pseudonymous session label (never a real name needed).

        Raises
        ------
        acquisition.xdf_writer.XdfWriteError
            When the file cannot be created; the session goes on.
        """
        from attune_monitor.acquisition.recorder import default_recording_path, record_session

        if self.recorder is not None and self.recorder.active:
            return self.recorder
        path = path or default_recording_path("recordings", label)
        self.recorder = record_session(path, self, self._session, label=label)
        self._rec_started = time.monotonic()
        self._update_recording_status()
        return self.recorder

    def stop_recording(self) -> dict | None:
        """Close the recording cleanly (footers written); returns its final status."""
        rec, self.recorder = self.recorder, None
        if rec is None:
            return None
        rec.close()
        st = rec.status()
        self.model.recording = None
        self.model.message(f"Recording saved: {st['path']} ({st['bytes'] / 1e6:.2f} MB)")
        return st

    def flush_recording(self) -> None:
        """Make what was recorded so far safe on disk (called before an error dialog)."""
        if self.recorder is not None:
            try:
                self.recorder.writer.flush()
            except Exception:  # the dialog must still show
                logger.exception("flushing the recording failed")

    def _update_recording_status(self) -> None:
        if self.recorder is None:
            return
        st = self.recorder.status()
        st["elapsed_s"] = time.monotonic() - self._rec_started
        self.model.recording = st
        if not st.get("active", True) and st.get("error"):
            self.model.message(f"Recording stopped: {st['error']}")
            self.recorder = None
            self.model.recording = None

    def _publish(self, upd, status) -> None:
        self._update_recording_status()
        st = {}
        for who, d in (status or {}).items():  # only the people and signals the pipeline uses
            if who in self.model.participants:
                st[who] = {m: v for m, v in d.items() if m in self.model.modalities}
        self.model.apply(upd, self.pipeline.detector.pair_table(), st, ties=self.pipeline.detector.person_ties)
        if self.replay is not None:
            self.model.replay = {
                "position_s": self.replay.position_s,
                "duration_s": self.replay.duration_s,
                "speed": self.replay.speed,
                "paused": self.replay.paused,
            }
        for listener in list(self.listeners):
            try:
                listener(upd)
            except Exception as exc:
                logger.exception("listener failed")
                self.model.message(f"{getattr(listener, '__name__', 'listener')} failed: {exc}")

    def _restart(self, target_s: float) -> None:
        """Seek: rebuild the pipeline, reprocess from the start up to ``target_s`` at full speed."""
        self.pipeline = make_pipeline(self.source, self.config, self.modalities)
        self.model.reset()
        self._flushed = False
        self.finished.clear()
        chunks, until, status = self.source.poll(horizon_s=target_s)
        feed(self.pipeline, chunks)
        self._publish(self.pipeline.advance(until), status)

    def preroll(self, min_s: float, max_s: float | None = None, step_s: float = 10.0) -> float:
        """Run the pipeline over a recording's first stretch before the replay clock starts.

        The view then opens on that stretch's signals, synchrony, pair states and episodes, and the replay goes
        on from its end. The source's first ``min_s`` session seconds are handed to the pipeline at full speed
        in steps of ``step_s`` (every step reaches the model, as a fast replay would: chunked == batch); then,
        up to ``max_s``, more steps while any pair is still learning its baseline (state ``calibrating``).

        Parameters
        ----------
        min_s : float
            Session seconds pre-rolled at least (0: none).
        max_s : float | None
            At most this far (default ``min_s``: exactly ``min_s``). Both are clipped to the recording.
        step_s : float
            Session seconds per step (how finely the end is found; results do not depend on it).

        Returns
        -------
        position_s : float
            Session time the replay continues from.

        Raises
        ------
        RuntimeError
            When the worker is already running, or the source cannot be pre-rolled (a live source).
        """
        if self._thread is not None:
            raise RuntimeError("Runner.preroll: the worker is already running; pre-roll before start().")
        if self.replay is None:
            raise RuntimeError("Runner.preroll: only a replayed recording can be pre-rolled (a live source cannot).")
        max_s = min_s if max_s is None else max(min_s, max_s)
        if not (math.isfinite(min_s) and min_s >= 0 and math.isfinite(max_s) and step_s > 0):
            raise ValueError(f"Invalid pre-roll: expected 0 <= min_s <= max_s (finite seconds) and step_s > 0, "
                             f"but got min_s={min_s!r}, max_s={max_s!r}, step_s={step_s!r}.")
        duration = self.replay.duration_s
        min_s, max_s = min(min_s, duration), min(max_s, duration)
        t = self.replay.position_s
        while t < max_s:
            t = min(t + step_s, max_s)
            try:
                chunks, until, status = self.replay.poll(horizon_s=t)
                feed(self.pipeline, chunks)
                self._publish(self.pipeline.advance(until), status)
            except Exception as exc:  # as in the worker: the replay goes on from here, the error shown
                self.error = exc
                logger.error("pipeline error: %s", "".join(traceback.format_exception(exc)))
                self.model.message(f"Processing error: {exc}")
                break
            if t >= min_s and not self.pipeline.detector.any_calibrating():
                break
        return self.replay.position_s

    # -- replay controls (no-ops on live sources) ---------------------------------------------------------
    def seek(self, t_s: float) -> None:
        """Move a replay to session time ``t_s`` (s)."""
        if self.replay is not None:
            self.replay.seek(t_s)

    def set_speed(self, speed: float) -> None:
        """Replay at ``speed`` x real time."""
        if self.replay is not None:
            self.replay.set_speed(speed)

    def pause(self) -> None:
        """Pause a replay."""
        if self.replay is not None:
            self.replay.pause()

    def resume(self) -> None:
        """Resume a paused replay."""
        if self.replay is not None:
            self.replay.resume()


class TickLog:
    """Write a runner's tick durations to a file, one JSON line per interval (a soak-measurement probe).

    Turns on :meth:`Runner.measure_ticks` and, from a daemon thread, every ``interval_s`` seconds (and once
    more at :meth:`close`) appends one line::

        {"monotonic": 1234.5, "session_s": 3601.2, "ticks": 100, "dropped": 0,
         "p50_ms": 3.1, "p99_ms": 19.8, "max_ms": 24.0, "ticks_ms": [3.05, 2.98, ...]}

    ``monotonic`` is :func:`time.monotonic` when the line was written (the same clock in every process on
    Linux, so another process can line its own samples up with it); ``session_s`` is the model's session time
    then; ``ticks_ms`` holds every duration of the interval (ms, oldest first), so percentiles over any span
    can be computed exactly; ``dropped`` counts ticks the runner's bounded buffer lost. Each line also holds
    the process's memory then (:func:`process_memory`: ``rss_mb``, ``py_blocks``, ``heap_in_use_mb``,
    ``heap_free_mb``). Each line is flushed.

    Parameters
    ----------
    runner : Runner
    path : str | Path
        A new file (created exclusively, mode 0600: an existing file or link is never written through).
    interval_s : float
        Seconds between lines.

    Raises
    ------
    OSError
        When the file exists or cannot be created.
    """

    def __init__(self, runner: Runner, path, interval_s: float = 5.0):
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"Invalid value for 'interval_s': expected a positive number of seconds, "
                             f"but got {interval_s}.")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        self._file = os.fdopen(fd, "w", encoding="utf-8")
        self.runner = runner
        self.interval_s = float(interval_s)
        self._dropped = runner.ticks_dropped
        self._stop = threading.Event()
        self._lock = threading.Lock()
        runner.measure_ticks()
        self._thread = threading.Thread(target=self._loop, name="attune-tick-log", daemon=True)

    def start(self) -> TickLog:
        """Start writing (one line every ``interval_s``)."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.write()

    def write(self) -> dict:
        """Drain the runner's tick durations into one line now; returns what was written."""
        with self._lock:
            d = self.runner.take_tick_durations() * 1e3
            dropped = self.runner.ticks_dropped
            line = {"monotonic": round(time.monotonic(), 4), "session_s": round(float(self.runner.model.t_now), 3),
                    "ticks": int(d.size), "dropped": dropped - self._dropped}
            self._dropped = dropped
            if d.size:
                p50, p99 = np.percentile(d, [50, 99])
                line.update(p50_ms=round(float(p50), 3), p99_ms=round(float(p99), 3),
                            max_ms=round(float(d.max()), 3))
            line.update(process_memory())
            line["ticks_ms"] = [round(float(x), 3) for x in d]
            if not self._file.closed:
                self._file.write(json.dumps(line) + "\n")
                self._file.flush()
            return line

    def close(self) -> None:
        """Stop the thread, write the last interval, close the file (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval_s + 1.0)
        if not self._file.closed:
            self.write()
            self._file.close()
