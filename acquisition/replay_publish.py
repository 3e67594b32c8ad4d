"""Re-publish a recording's streams as LSL outlets, on their original timing, for other LSL tools.

:class:`RecordingPublisher` opens one outlet per recorded stream with the
stream's original header (name, type, all channels, rate, format, source_id and
the whole ``<desc>``), then pushes the samples chunk by chunk, each chunk with
**explicit timestamps**: the original timestamps shifted so that the replay
position ``start_s`` is "now". A loop tick is scheduled against
``pylsl.local_clock()`` (``t0 + k * chunk_interval``), not by adding up
sleeps, so the replay does not drift (the mne-lsl ``PlayerLSL._stream``
pattern).

With ``speed != 1`` samples are pushed ``speed`` times faster while their
timestamps keep the recorded spacing (the simulator's convention): a monitor
that computes on timestamps sees the same data, just sooner.
"""

from __future__ import annotations

import logging
import math
import threading
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from .files import Recording
from .xdf_writer import info_to_xml

__all__ = ["header_xml", "stream_info_from_xml", "RecordingPublisher"]

logger = logging.getLogger(__name__)


def header_xml(stream) -> str:
    """The ``<info>`` XML of a :class:`~attune_monitor.acquisition.files.RecordedStream` (pyxdf dict or XML text)."""
    h = stream.header
    if isinstance(h, dict):
        return info_to_xml(h)
    if isinstance(h, str):
        return h
    d = stream.descriptor
    return (f"<info><name>{d.name}</name><type>{d.type}</type><channel_count>{d.channel_count}</channel_count>"
            f"<nominal_srate>{d.srate}</nominal_srate><channel_format>{d.channel_format}</channel_format>"
            f"<source_id>{d.source_id}</source_id><desc/></info>")


def _copy_desc(parent, el: ET.Element) -> None:
    """Copy an ElementTree subtree into a pylsl ``XMLElement`` (leaf elements become child values)."""
    for child in el:
        if len(child) == 0:
            parent.append_child_value(child.tag, child.text or "")
        else:
            _copy_desc(parent.append_child(child.tag), child)


def stream_info_from_xml(xml: str, pylsl, source_suffix: str = ""):
    """A ``pylsl.StreamInfo`` with the header and desc of an ``<info>`` XML document."""
    root = ET.fromstring(xml)
    text = lambda tag, default="": (root.findtext(tag) or default).strip()  # noqa: E731
    fmt = text("channel_format", "float32")
    info = pylsl.StreamInfo(text("name", "untitled") or "untitled", text("type"),
                            int(float(text("channel_count", "1"))), float(text("nominal_srate", "0")), fmt,
                            text("source_id") + source_suffix)
    desc = root.find("desc")
    if desc is not None:
        _copy_desc(info.desc(), desc)
    return info


class RecordingPublisher:
    """Push a recording's streams to LSL outlets on their recorded timing.

    Parameters
    ----------
    recording : Recording
    speed : float
        Session seconds per wall-clock second (> 0).
    start_s : float
        Session time (seconds since the recording's first sample) to start at.
    source_suffix : str
        Appended to every source_id (to publish next to the live devices, or in tests).
    chunk_interval : float
        Seconds between pushes.
    streams : list of str | None
        Names of the streams to publish (default: all with samples).

    Attributes
    ----------
    shift : float
        Added to the recorded timestamps (set by :meth:`start`).
    error : BaseException | None
        What stopped the push thread, if anything did.
    """

    def __init__(self, recording: Recording, speed: float = 1.0, start_s: float = 0.0, *, source_suffix: str = "",
                 chunk_interval: float = 0.02, streams=None):
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"Invalid value for 'speed': expected a positive number, but got {speed!r}.")
        self.recording = recording
        self.speed = float(speed)
        self.origin = recording.origin
        duration = recording.end - self.origin
        if not 0 <= start_s <= duration:
            raise ValueError(f"Invalid value for 'start_s': expected 0 .. {duration:.1f} s, but got {start_s}.")
        self.start_s = float(start_s)
        self.duration_s = duration
        self.source_suffix = source_suffix
        self.chunk_interval = float(chunk_interval)
        chosen = [s for s in recording.streams if len(s.timestamps)]
        if streams is not None:
            chosen = [s for s in chosen if s.descriptor.name in set(streams)]
        self.streams = chosen
        self.shift = 0.0
        self.error: BaseException | None = None
        self._outlets: list[Any] = []  # pylsl.StreamOutlet per stream
        self._cursor: list[int] = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def open(self) -> None:
        """Create the outlets (so that consumers can find them before samples flow)."""
        from .lsl import open_outlet, pylsl

        if self._outlets:
            return
        for s in self.streams:
            info = stream_info_from_xml(header_xml(s), pylsl, self.source_suffix)
            self._outlets.append(open_outlet(info, chunk_size=0, max_buffered=360))
            ts = np.asarray(s.timestamps, dtype=float)
            self._cursor.append(int(np.searchsorted(ts, self.origin + self.start_s, side="left")))

    @property
    def position_s(self) -> float:
        """Session time being pushed now."""
        from .lsl import pylsl

        if not self._t0:
            return self.start_s
        return min(self.duration_s, self.start_s + (pylsl.local_clock() - self._t0) * self.speed)

    @property
    def finished(self) -> bool:
        """True once every sample was pushed (or the push thread stopped)."""
        return self._done.is_set()

    def start(self) -> float:
        """Open the outlets and start pushing; returns :attr:`shift` (recorded time -> LSL time now)."""
        from .lsl import pylsl

        self.open()
        self._t0 = pylsl.local_clock()
        self.shift = self._t0 - (self.origin + self.start_s)
        self._thread = threading.Thread(target=self._run, name="attune-replay-publish", daemon=True)
        self._thread.start()
        return self.shift

    def _run(self) -> None:
        from .lsl import pylsl

        k = 0
        try:
            while not self._stop.is_set():
                now = pylsl.local_clock()
                pos = self.start_s + (now - self._t0) * self.speed
                horizon = self.origin + pos
                left = 0
                for i, (s, outlet) in enumerate(zip(self.streams, self._outlets)):
                    ts = s.timestamps
                    j = int(np.searchsorted(ts, horizon, side="right"))
                    c = self._cursor[i]
                    if j > c:
                        stamps = (np.asarray(ts[c:j], dtype=float) + self.shift).tolist()
                        vals = s.values[c:j]
                        if s.descriptor.channel_format == "string":
                            vals = [[str(x) for x in (v if isinstance(v, (list, tuple)) else [v])] for v in vals]
                        outlet.push_chunk(vals, stamps)
                        self._cursor[i] = j
                    left += len(ts) - self._cursor[i]
                if left == 0:
                    break
                k += 1
                # next tick on an absolute schedule: sleeping never accumulates drift
                wait = self._t0 + k * self.chunk_interval - pylsl.local_clock()
                if wait < -1.0:  # fell far behind (machine busy): re-anchor the tick count, keep the position
                    k = int((pylsl.local_clock() - self._t0) / self.chunk_interval)
                    wait = 0.0
                self._stop.wait(max(0.0, wait))
        except Exception as exc:  # the caller sees it in .error
            logger.exception("re-publishing stopped")
            self.error = exc
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every sample was pushed (True) or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pushing and close the outlets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._outlets = []

    def __enter__(self) -> RecordingPublisher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
