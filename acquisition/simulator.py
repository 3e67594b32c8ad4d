"""Publish a simulated session as LSL streams, or write it to an XDF file.

Timing convention (``--speed``)
-------------------------------
Stream timestamps are always **session time**: ``time_origin + t`` where
``t`` is seconds from the first sample, exactly as a real device would stamp
them, so rates, RR intervals and beat times stay consistent. ``speed`` only
changes how fast samples are *pushed*: with ``speed=8`` a 4 Hz EDA stream
delivers 32 samples per wall-clock second, their timestamps 0.25 s apart, and
the timestamps run ahead of ``local_clock()``. A monitor that computes on
timestamps (as it must) therefore sees the same data at any speed, just
sooner; staleness checks must use arrival time, not timestamps. At
``speed=1`` the timestamps equal the local clock at the moment of the push.

The ground-truth times (``session.truth``) are session seconds; add
``time_origin`` to get LSL time.

Instances (``source_id``)
-------------------------
Two simulators of the same session on one machine (two ``attune simulate``
runs) must not publish the same streams: a monitor would take them for
duplicates. Each publishing :class:`Simulator` therefore takes an instance
number, the first free one among this user's simulators of the same
source_ids on this machine, held by an exclusive lock (``flock``) on a file in
the temporary folder for as long as it publishes. Instance 1 publishes the session's source_ids as they
are; instance ``k`` appends ``-run<k>``. The lock dies with the process, so a
simulator restarted after a crash gets instance 1 (its old source_ids) back,
and a running monitor recovers its streams.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from .physiology import Session, simulate_session
from .scenario import Scenario
from .xdf_writer import XdfWriter, desc_element

__all__ = ["XDF_TIME_ORIGIN", "stream_info", "Simulator", "write_session_xdf"]

logger = logging.getLogger(__name__)

#: LSL time of session time 0 in files written by :func:`write_session_xdf` (a fixed origin).
XDF_TIME_ORIGIN = 1000.0


def _append_element(parent, el: ET.Element) -> None:
    """Copy an ElementTree subtree into a pylsl ``XMLElement``."""
    for child in el:
        if len(child) == 0:
            parent.append_child_value(child.tag, child.text or "")
        else:
            _append_element(parent.append_child(child.tag), child)


def stream_info(stream, pylsl):
    """A ``pylsl.StreamInfo`` for a :class:`~attune_monitor.acquisition.physiology.SimStream` (desc: the convention)."""
    info = pylsl.StreamInfo(stream.name, stream.type, 1, stream.srate, stream.channel_format, stream.source_id)
    _append_element(info.desc(), desc_element(stream.desc))
    return info


class Simulator:
    """Push every stream of a :class:`~attune_monitor.acquisition.physiology.Session` to LSL from a background thread.

    Parameters
    ----------
    session : Session
        From :func:`~attune_monitor.acquisition.physiology.simulate_session`.
    speed : float
        Wall-clock speed-up (see the module docstring: timestamps stay in session time).
    chunk_interval : float
        Seconds of wall clock between pushes (50-100 ms like a device bridge).

    Examples
    --------
    >>> sim = Simulator.from_scenario(load_scenario("couple-calm"), seed=1)   # doctest: +SKIP
    >>> sim.start(); ...; sim.stop()
    """

    def __init__(self, session: Session, *, speed: float = 1.0, chunk_interval: float = 0.05):
        if not speed > 0:
            raise ValueError(f"Invalid value for 'speed': expected a positive number, but got {speed}.")
        self.session = session
        self.speed = float(speed)
        self.chunk_interval = float(chunk_interval)
        self.time_origin: float | None = None
        self._outlets: list[Any] = []  # pylsl.StreamOutlet per stream
        self._pos = [0] * len(session.streams)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.instance: int | None = None  # set by open() (see the module docstring)
        self._instance_lock: int | None = None  # file descriptor holding the instance lock

    @classmethod
    def from_scenario(cls, scenario: Scenario, seed: int = 0, duration_s: float | None = None, *,
                      source_prefix: str = "attune-sim", **kwargs) -> Simulator:
        """Generate the session and wrap it (see :func:`simulate_session` for the parameters)."""
        return cls(simulate_session(scenario, seed, duration_s, source_prefix=source_prefix), **kwargs)

    @property
    def running(self) -> bool:
        """True while the pushing thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True once every sample of the session was pushed."""
        return self._done.is_set()

    def session_time(self) -> float:
        """Session seconds pushed so far (0 before :meth:`start`)."""
        from .lsl import pylsl

        if self.time_origin is None:
            return 0.0
        return min((pylsl.local_clock() - self._wall_start) * self.speed, self.session.duration_s)

    def open(self) -> None:
        """Create the outlets (visible on the network, no samples yet).

        Call it before :meth:`start` when consumers must connect first so that
        they receive the session from its very first sample.
        """
        from .lsl import open_outlet, pylsl

        if not self._outlets:
            if self.instance is None:
                self._take_instance()
            self._outlets = [open_outlet(stream_info(s, pylsl), chunk_size=0, max_buffered=360)
                             for s in self.session.streams]

    def _take_instance(self) -> None:
        """Take the first free instance number of this session's source_ids on this machine.

        Take the first free instance number of this session's source_ids on this machine (module docstring);
        instance ``k > 1`` renames every stream's source_id to ``<source_id>-run<k>``.
        """
        ids = "\n".join(sorted(s.source_id for s in self.session.streams))
        tag = hashlib.sha1(ids.encode()).hexdigest()[:16]
        user = os.getuid() if hasattr(os, "getuid") else "user"
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one instance per machine is assumed
            self.instance = 1
            return
        for k in range(1, 1000):
            path = Path(tempfile.gettempdir()) / f"attune-sim-{user}-{tag}-{k}.lock"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except OSError:
                continue  # another user's file, or not a plain file: try the next number
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._instance_lock, self.instance = fd, k
            break
        else:
            self.instance = 1
        if self.instance > 1:
            suffix = f"-run{self.instance}"
            self.session.streams = [dataclasses.replace(s, source_id=s.source_id + suffix)
                                    for s in self.session.streams]
            logger.warning("another simulator publishes these streams on this machine: this one is instance %d, "
                           "its source_ids end in %r", self.instance, suffix)

    def start(self, time_origin: float | None = None) -> float:
        """Start pushing (opening the outlets if needed); returns the LSL time of session time 0.

        Parameters
        ----------
        time_origin : float | None
            LSL time of session time 0; default: now (``local_clock()``).
        """
        from .lsl import pylsl

        if self._thread is not None:
            raise RuntimeError("this Simulator was already started; create a new one to run again")
        self.open()
        self._wall_start = pylsl.local_clock()
        self.time_origin = float(self._wall_start if time_origin is None else time_origin)
        self._thread = threading.Thread(target=self._run, name="attune-simulator", daemon=True)
        self._thread.start()
        return self.time_origin

    def _run(self) -> None:
        from .lsl import pylsl

        try:
            k = 0
            while not self._stop.is_set():
                t_now = min((pylsl.local_clock() - self._wall_start) * self.speed, self.session.duration_s)
                for i, (s, outlet) in enumerate(zip(self.session.streams, self._outlets)):
                    j = int(np.searchsorted(s.timestamps, t_now, side="right"))
                    if j > self._pos[i]:
                        sl = slice(self._pos[i], j)
                        outlet.push_chunk(np.ascontiguousarray(s.values[sl]),
                                          (s.timestamps[sl] + self.time_origin).tolist())
                        self._pos[i] = j
                if t_now >= self.session.duration_s:
                    self._done.set()
                    return
                k += 1
                # sleep to the next tick on the absolute schedule, so sleep errors never accumulate
                delay = self._wall_start + k * self.chunk_interval - pylsl.local_clock()
                if delay > 0:
                    self._stop.wait(delay)
        except BaseException as exc:  # noqa: BLE001 - reported through .error and the log
            self.error = exc
            logger.exception("simulator stopped by an error")
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the session was pushed completely (or ``timeout`` s); return :attr:`finished`."""
        self._done.wait(timeout)
        return self.finished

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pushing and close the outlets. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._outlets = []  # outlets close when released
        fd, self._instance_lock = self._instance_lock, None
        if fd is not None:
            os.close(fd)  # releases the instance number

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def write_session_xdf(session: Session, path, *, time_origin: float = XDF_TIME_ORIGIN,
                      chunk_s: float = 1.0, clock_offset_interval: float = 5.0) -> None:
    """Write a session to an XDF file as LabRecorder would have recorded it (no LSL involved).

    Streams are interleaved in chunks of ``chunk_s`` session seconds; a zero
    ClockOffset is written every ``clock_offset_interval`` s per stream (all
    streams share one clock). Timestamps are ``time_origin + session time``.

    Raises
    ------
    acquisition.xdf_writer.XdfWriteError
        When the file cannot be written (message names the path and the fix).
    """
    with XdfWriter(path, fsync=False) as w:
        ids = [w.add_stream(s.header_xml) for s in session.streams]
        pos = [0] * len(ids)
        edges = np.arange(chunk_s, session.duration_s + chunk_s, chunk_s)
        next_offset = 0.0
        for edge in edges:
            if edge - chunk_s >= next_offset:
                for sid in ids:
                    w.write_clock_offset(sid, time_origin + next_offset, 0.0)
                next_offset += clock_offset_interval
            for i, (s, sid) in enumerate(zip(session.streams, ids)):
                last = edge >= edges[-1]
                j = s.timestamps.size if last else int(np.searchsorted(s.timestamps, edge, side="left"))
                if j > pos[i]:
                    w.write_samples(sid, s.timestamps[pos[i]:j] + time_origin, s.values[pos[i]:j])
                    pos[i] = j
