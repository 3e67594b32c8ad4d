"""Write XDF 1.0 files the way LabRecorder does.

One writer serves the simulator (``attune simulate --out``) and the live
recorder. The layout follows the XDF 1.0 specification
(https://github.com/sccn/xdf/wiki/Specifications):

* magic ``XDF:``;
* then chunks ``[NumLengthBytes][Length][Tag u16][Content]``, where ``Length``
  counts the tag and the content and is stored as a *variable-length integer*
  (1, 4 or 8 little-endian bytes announced by the first byte);
* tag 1 FileHeader (XML: version and, for a live recording, the wall-clock ``datetime`` of the start, as
  LabRecorder writes it), tag 2 StreamHeader (u32 stream id + the stream's
  ``<info>`` XML), tag 3 Samples (u32 stream id, varlen sample count, per
  sample a timestamp byte, 8 = a float64 LSL timestamp follows, 0 = deduced,
  then the values), tag 4 ClockOffset (u32 stream id, float64
  collection_time, float64 offset_value), tag 5 Boundary (a fixed 16-byte
  UUID, so a reader can resynchronise after a damaged chunk), tag 6
  StreamFooter (u32 stream id + XML with first/last timestamp, sample count
  and the clock offsets).

Crash safety: every chunk is handed to the operating system with one
``os.write`` as soon as it is written (there is no user-space buffer), so a
``kill -9`` of the writing process loses nothing already written; with
``fsync=True`` the data also reach the disk at least every ``flush_interval``
seconds. A failed write is cut back to the last complete chunk, so the file
written so far stays readable by pyxdf.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import xml.etree.ElementTree as ET
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attune_monitor.errors import AttuneError

__all__ = [
    "BOUNDARY_UUID", "CHANNEL_FORMATS", "BOUNDARY_INTERVAL", "file_header_xml", "TAG_FILE_HEADER", "TAG_STREAM_HEADER",
    "TAG_SAMPLES", "TAG_CLOCK_OFFSET", "TAG_BOUNDARY", "TAG_STREAM_FOOTER", "XdfWriteError", "varlen_int",
    "info_to_xml", "stream_header_xml", "desc_element", "XdfWriter"
]

logger = logging.getLogger(__name__)

#: The Boundary chunk's UUID (from the XDF specification).
BOUNDARY_UUID = bytes(
    [0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4]
)

#: XDF channel formats and the little-endian numpy dtype of each numeric one.
CHANNEL_FORMATS = {
    "float32": np.dtype("<f4"),
    "double64": np.dtype("<f8"),
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "string": None,
}

#: Seconds of data (or of wall-clock time) between Boundary chunks, as LabRecorder does.
BOUNDARY_INTERVAL = 10.0

def file_header_xml(when: float | None = None, fields: dict | None = None) -> str:
    """The FileHeader XML: version 1.0 and the wall-clock ``datetime`` of the start, as LabRecorder writes them.

    Parameters
    ----------
    when : float | None
        Unix time of the start, written in local time with its UTC offset (``2025-04-28T10:26:37+0200``,
        LabRecorder's layout); ``None``: no ``datetime`` (a simulated session has no wall-clock start, and its
        file stays the same byte for byte).
    fields : dict | None
        More elements of the header (text, or nested dicts).

    Returns
    -------
    xml : str
    """
    root = ET.Element("info")
    ET.SubElement(root, "version").text = "1.0"
    if when is not None:
        ET.SubElement(root, "datetime").text = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))
    _add_fields(root, fields or {})
    return '<?xml version="1.0"?>' + ET.tostring(root, encoding="unicode")


def _add_fields(parent: ET.Element, fields: dict) -> None:
    for key, value in fields.items():
        if value is None:
            continue
        el = ET.SubElement(parent, key)
        if isinstance(value, dict):
            _add_fields(el, value)
        else:
            el.text = str(value)

TAG_FILE_HEADER, TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET, TAG_BOUNDARY, TAG_STREAM_FOOTER = range(1, 7)


class XdfWriteError(OSError, AttuneError):
    """Writing an XDF file failed; the message names the file and how to fix the problem."""


def varlen_int(n: int) -> bytes:
    """Encode ``n`` as an XDF variable-length integer (1, 4 or 8 bytes after a length byte)."""
    if n < 0:
        raise ValueError(f"Invalid value for 'n': expected a non-negative integer, but got {n}.")
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def _chunk(tag: int, content: bytes) -> bytes:
    return varlen_int(len(content) + 2) + struct.pack("<H", tag) + content


def info_to_xml(info: dict) -> str:
    """The ``<info>`` XML of a stream from the nested ``info`` dict pyxdf returns.

    Parameters
    ----------
    info : dict
        ``stream["info"]`` from :func:`pyxdf.load_xdf` (values are lists of
        strings / dicts); pyxdf's own additions (``stream_id``,
        ``effective_srate``, ``segments`` ...) are left out.

    Returns
    -------
    xml : str
    """
    from .convention import dict_to_xml

    return ET.tostring(dict_to_xml(info), encoding="unicode")


def _fmt(x: float) -> str:
    return repr(float(x))


def stream_header_xml(*, name: str, type: str, channel_count: int, nominal_srate: float,
                      channel_format: str = "float32", source_id: str = "", desc=None,
                      extra: dict | None = None) -> str:
    """Build a stream's ``<info>`` XML in the layout ``pylsl.StreamInfo.as_xml()`` uses.

    Parameters
    ----------
    name, type, source_id : str
        The LSL identity of the stream.
    channel_count : int
    nominal_srate : float
        Hz; 0 for an irregular stream (RR: one sample per beat).
    channel_format : str
        One of :data:`CHANNEL_FORMATS`.
    desc : str | xml.etree.ElementTree.Element | dict | None
        The ``<desc>`` element: XML (kept verbatim), an Element, or a dict in
        the form :func:`attune_monitor.acquisition.convention.desc_fields` returns (its
        ``type`` key is the stream type and is not repeated in the desc).
    extra : dict | None
        More top-level fields (``created_at``, ``hostname``, ``uid`` ...).

    Returns
    -------
    xml : str
    """
    _check_format(channel_format)
    root = ET.Element("info")
    for tag, value in (("name", name), ("type", type), ("channel_count", str(int(channel_count))),
                       ("nominal_srate", _fmt(nominal_srate)), ("channel_format", channel_format),
                       ("source_id", source_id)):
        ET.SubElement(root, tag).text = value
    for tag, value in (extra or {}).items():
        ET.SubElement(root, tag).text = str(value)
    root.append(desc_element(desc))
    return '<?xml version="1.0"?>' + ET.tostring(root, encoding="unicode")


def desc_element(desc) -> ET.Element:
    """A ``<desc>`` Element from XML text, an Element, a convention dict or ``None``."""
    if desc is None:
        return ET.Element("desc")
    if isinstance(desc, ET.Element):
        return desc
    if isinstance(desc, str):
        el = ET.fromstring(desc)
        if el.tag != "desc":
            wrapper = ET.Element("desc")
            wrapper.append(el)
            return wrapper
        return el
    if isinstance(desc, dict):
        el = ET.Element("desc")
        for key, value in desc.items():
            if key == "type":
                continue
            if key == "channels":
                chans = ET.SubElement(el, "channels")
                for ch in value:
                    c = ET.SubElement(chans, "channel")
                    for k, v in ch.items():
                        if v is not None:
                            ET.SubElement(c, k).text = str(v)
            elif value is not None:
                ET.SubElement(el, key).text = str(value)
        return el
    raise TypeError(f"Invalid type for 'desc': expected XML text, an Element or a dict, but got {type(desc).__name__}.")


def _check_format(channel_format: str) -> None:
    if channel_format not in CHANNEL_FORMATS:
        raise ValueError(
            f"Invalid value for 'channel_format': expected one of {', '.join(CHANNEL_FORMATS)}, "
            f"but got {channel_format!r}."
        )


@dataclass
class _Stream:
    stream_id: int
    channel_count: int
    channel_format: str
    srate: float
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    sample_count: int = 0
    #: every ClockOffset written, flat ``[time, value, time, value, ...]`` (16 bytes each: the footer lists them
    #: all, and a recording of 8 hours writes thousands; tuples of floats took ~7x the memory)
    clock_offsets: array = field(default_factory=lambda: array("d"))
    closed: bool = False


class XdfWriter:
    """Write an XDF 1.0 file, stream by stream, chunk by chunk.

    Parameters
    ----------
    path : str | Path
        The file to create (truncated if it exists, unless ``exclusive``).
    flush_interval : float
        Seconds; with ``fsync=True`` the data are forced to disk at least
        this often. Data are handed to the OS at every write regardless.
    fsync : bool
        Call ``os.fsync`` every ``flush_interval`` seconds and on close.
    mode : int
        Permission bits of a newly created file (recordings are personal data).
    header : dict | None
        More elements of the file header, next to ``version`` and ``datetime`` (see :func:`file_header_xml`).
    started_at : float | None
        Unix time written as the header's ``datetime`` (a live recording: when it began); ``None`` writes none.
    exclusive : bool
        Create the file only if nothing is at ``path`` (``O_CREAT | O_EXCL | O_NOFOLLOW``, in one system call):
        an existing file is never overwritten and a symbolic link is never followed, whatever appeared at the
        path since it was checked (a live recording: see :class:`attune_monitor.acquisition.recorder.SessionRecorder`).
        The file gets exactly ``mode``, whatever the umask.

    Raises
    ------
    XdfWriteError
        When the file cannot be created; the message names the file and how to fix the problem (with
        ``exclusive``: that something is already at the path, and what it is).

    Examples
    --------
    >>> with XdfWriter("session.xdf") as w:                       # doctest: +SKIP
    ...     sid = w.add_stream(dict(name="P1 H10 RR", type="RR", channel_count=1,
    ...                             nominal_srate=0, channel_format="float32"))
    ...     w.write_samples(sid, [10.0, 10.8], [[800.0], [790.0]])
    """

    def __init__(self, path, *, flush_interval: float = 1.0, fsync: bool = True, mode: int = 0o600,
                 header: dict | None = None, started_at: float | None = None, exclusive: bool = False):
        self.path = Path(path)
        self.flush_interval = float(flush_interval)
        self.fsync = bool(fsync)
        self._streams: dict[int, _Stream] = {}
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._failed: XdfWriteError | None = None
        self._offset = 0
        self._last_sync = time.monotonic()
        self._last_boundary_wall = time.monotonic()
        self._last_boundary_ts: float | None = None
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
        # exclusive: one atomic call that neither follows a symlink planted at the path nor opens an existing file
        flags |= (os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)) if exclusive else os.O_TRUNC
        try:
            self._fd = os.open(self.path, flags, mode)
        except OSError as exc:
            raise self._error(exc, "create") from exc
        if exclusive:
            try:  # our own new file: its mode is exactly ``mode``, whatever the umask
                os.fchmod(self._fd, mode)
            except (OSError, AttributeError):  # pragma: no cover - no fchmod (Windows): the umask'd mode stays
                pass
        self._write(b"XDF:" + _chunk(TAG_FILE_HEADER, file_header_xml(started_at, header).encode("utf-8")))

    # -- context manager -------------------------------------------------
    def __enter__(self) -> XdfWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once the file is closed."""
        return self._fd is None

    # -- low level -------------------------------------------------------
    def _error(self, exc: OSError, action: str) -> XdfWriteError:
        import errno

        if exc.errno in (errno.EEXIST, errno.ELOOP) and action == "create":
            # exclusive creation: something appeared at the path (a file, or a symlink pointing elsewhere)
            if os.path.islink(self.path) or exc.errno == errno.ELOOP:
                what = "a symbolic link"
            elif os.path.isdir(self.path):
                what = "a folder"
            else:
                what = "a file"
            err = XdfWriteError(exc.errno, f"Cannot create XDF file '{self.path}': {what} is already there "
                                f"(recordings are never written over an existing file nor through a link); "
                                "choose another name (or a folder, for a timestamped name), or remove it.")
            err.filename = str(self.path)
            return err
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free some disk space or record to another drive"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "choose a folder you can write to (check its permissions)"
        elif exc.errno == errno.ENOENT:
            fix = "create the folder first or choose an existing one"
        elif exc.errno == errno.EISDIR:
            fix = "give a file name, not a folder"
        else:
            fix = "check the path and the disk"
        done = f"; the {self._offset} bytes written before stay readable" if self._offset else ""
        err = XdfWriteError(exc.errno or 0, f"Cannot {action} XDF file '{self.path}': "
                            f"{exc.strerror or exc}; {fix}{done}.")
        err.filename = str(self.path)
        return err

    def _write(self, data: bytes) -> None:
        """Hand ``data`` (whole chunks) to the OS; on failure cut back to the last whole chunk."""
        if self._failed is not None:
            raise self._failed
        if self._fd is None:
            raise XdfWriteError(0, f"XDF file '{self.path}' is closed; open a new XdfWriter to write more.")
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            err = self._error(exc, "write to")
            self._failed = err
            try:  # keep the file readable: drop the partial chunk
                os.ftruncate(self._fd, self._offset)
            except OSError:
                pass
            raise err from exc
        self._offset += written
        now = time.monotonic()
        if self.fsync and now - self._last_sync >= self.flush_interval:
            self._sync()

    def _sync(self) -> None:
        self._last_sync = time.monotonic()
        if self._fd is None:  # closed
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:  # fsync not supported (pipes, some filesystems): data are still with the OS
            logger.debug("fsync of %s failed: %s", self.path, exc)

    def flush(self) -> None:
        """Force written data to disk now."""
        with self._lock:
            if self._fd is not None:
                self._sync()

    # -- public API ------------------------------------------------------
    def add_stream(self, header, *, stream_id: int | None = None) -> int:
        """Declare a stream and write its StreamHeader chunk.

        Parameters
        ----------
        header : str | dict
            Either the full ``<info>`` XML (``pylsl.StreamInfo.as_xml()``, an
            XDF stream header; written verbatim, desc included) or a dict with
            ``name``, ``type``, ``channel_count``, ``nominal_srate``,
            ``channel_format``, optional ``source_id`` and ``desc`` (see
            :func:`stream_header_xml`).
        stream_id : int | None
            The XDF stream id (u32); by default 1, 2, 3 ...

        Returns
        -------
        stream_id : int
        """
        if isinstance(header, dict):
            fields = dict(header)
            xml = stream_header_xml(
                name=str(fields.pop("name", "")), type=str(fields.pop("type", "")),
                channel_count=int(fields.pop("channel_count", 1)),
                nominal_srate=float(fields.pop("nominal_srate", 0.0)),
                channel_format=str(fields.pop("channel_format", "float32")),
                source_id=str(fields.pop("source_id", "")), desc=fields.pop("desc", None), extra=fields)
        elif isinstance(header, str):
            xml = header
        else:
            raise TypeError(f"Invalid type for 'header': expected XML text or a dict, but got {type(header).__name__}.")
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as exc:
            raise ValueError(f"Invalid stream header XML ({exc}); pass a complete <info>...</info> document.") from None
        if root.tag != "info":
            raise ValueError(f"Invalid stream header: expected an <info> root element, but got <{root.tag}>.")
        fmt = (root.findtext("channel_format") or "float32").strip()
        _check_format(fmt)
        try:
            nch = int(float(root.findtext("channel_count") or 1))
            srate = float(root.findtext("nominal_srate") or 0.0)
        except ValueError as exc:
            raise ValueError(f"Invalid stream header: channel_count / nominal_srate are not numbers ({exc}).") from None
        if nch < 1:
            raise ValueError(f"Invalid value for 'channel_count': expected at least 1, but got {nch}.")
        with self._lock:
            if stream_id is None:
                stream_id = max(self._streams, default=0) + 1
            stream_id = int(stream_id)
            if not 0 <= stream_id < 2**32:
                raise ValueError(f"Invalid value for 'stream_id': expected 0 .. 2**32-1, but got {stream_id}.")
            if stream_id in self._streams:
                raise ValueError(f"Invalid value for 'stream_id': stream {stream_id} already exists in this file.")
            self._write(_chunk(TAG_STREAM_HEADER, struct.pack("<I", stream_id) + xml.encode("utf-8")))
            self._streams[stream_id] = _Stream(stream_id, nch, fmt, srate)
        return stream_id

    def _stream(self, stream_id: int) -> _Stream:
        s = self._streams.get(stream_id)
        if s is None:
            raise ValueError(f"Invalid value for 'stream_id': expected one of {sorted(self._streams)}, "
                             f"but got {stream_id!r}; call add_stream() first.")
        if s.closed:
            raise ValueError(f"Stream {stream_id} was already closed (its footer is written).")
        return s

    def write_samples(self, stream_id: int, timestamps, values) -> None:
        """Write one Samples chunk (every sample with its explicit timestamp).

        Parameters
        ----------
        stream_id : int
        timestamps : array-like, shape (n_samples,)
            LSL timestamps in seconds.
        values : array-like, shape (n_samples, n_channels)
            Numbers (cast to the stream's format) or, for a string stream,
            a list of lists of ``str``. A 1-D array is taken as one channel.
        """
        ts = np.ascontiguousarray(timestamps, dtype="<f8").reshape(-1)
        n = ts.size
        with self._lock:
            s = self._stream(stream_id)
            if s.channel_format == "string":
                rows = [[v] if isinstance(v, str) else list(v) for v in values]
                if len(rows) != n or any(len(r) != s.channel_count for r in rows):
                    raise ValueError(f"Invalid shape for 'values': expected {n} samples of {s.channel_count} "
                                     f"strings, got {len(rows)} samples.")
                if n == 0:
                    return
                parts = [struct.pack("<I", stream_id), varlen_int(n)]
                for t, row in zip(ts.tolist(), rows):
                    parts.append(b"\x08" + struct.pack("<d", t))
                    for v in row:
                        b = str(v).encode("utf-8")
                        parts.append(varlen_int(len(b)) + b)
                payload = b"".join(parts)
            else:
                dtype = CHANNEL_FORMATS[s.channel_format]
                v = np.asarray(values)
                if v.ndim == 1 and s.channel_count == 1:
                    v = v.reshape(-1, 1)
                if v.shape != (n, s.channel_count):
                    raise ValueError(f"Invalid shape for 'values': expected ({n}, {s.channel_count}) to match "
                                     f"the timestamps and the stream, but got {v.shape}.")
                if n == 0:
                    return
                rec = np.empty(n, dtype=np.dtype([("tag", "u1"), ("t", "<f8"), ("v", dtype, (s.channel_count,))]))
                rec["tag"] = 8
                rec["t"] = ts
                rec["v"] = v
                payload = struct.pack("<I", stream_id) + varlen_int(n) + rec.tobytes()
            data = _chunk(TAG_SAMPLES, payload)
            t_last = float(ts[-1])
            if self._boundary_due(t_last):
                data = _chunk(TAG_BOUNDARY, BOUNDARY_UUID) + data
            self._write(data)
            if s.first_timestamp is None:
                s.first_timestamp = float(ts[0])
            s.last_timestamp = t_last
            s.sample_count += n

    def _boundary_due(self, t_last: float) -> bool:
        now = time.monotonic()
        if self._last_boundary_ts is None:
            self._last_boundary_ts = t_last
            return False
        if t_last - self._last_boundary_ts >= BOUNDARY_INTERVAL or now - self._last_boundary_wall >= BOUNDARY_INTERVAL:
            self._last_boundary_ts = t_last
            self._last_boundary_wall = now
            return True
        return False

    def write_clock_offset(self, stream_id: int, collection_time: float, offset: float) -> None:
        """Write a ClockOffset chunk: at local time ``collection_time`` the stream's clock was ``offset`` s off."""
        with self._lock:
            s = self._stream(stream_id)
            self._write(_chunk(TAG_CLOCK_OFFSET, struct.pack("<Idd", stream_id, collection_time, offset)))
            s.clock_offsets.extend((float(collection_time), float(offset)))

    def _footer(self, s: _Stream) -> bytes:
        root = ET.Element("info")
        first = s.first_timestamp if s.first_timestamp is not None else 0.0
        last = s.last_timestamp if s.last_timestamp is not None else 0.0
        ET.SubElement(root, "first_timestamp").text = _fmt(first)
        ET.SubElement(root, "last_timestamp").text = _fmt(last)
        ET.SubElement(root, "sample_count").text = str(s.sample_count)
        offs = ET.SubElement(root, "clock_offsets")
        for t, v in zip(s.clock_offsets[0::2], s.clock_offsets[1::2]):
            o = ET.SubElement(offs, "offset")
            ET.SubElement(o, "time").text = _fmt(t)
            ET.SubElement(o, "value").text = _fmt(v)
        xml = '<?xml version="1.0"?>' + ET.tostring(root, encoding="unicode")
        return _chunk(TAG_STREAM_FOOTER, struct.pack("<I", s.stream_id) + xml.encode("utf-8"))

    def close_stream(self, stream_id: int) -> None:
        """Write the footer of one stream (e.g. when it was lost for good); no more samples after."""
        with self._lock:
            s = self._stream(stream_id)
            self._write(self._footer(s))
            s.closed = True

    def close(self) -> None:
        """Write a boundary and the footers of open streams, sync and close. Safe to call twice."""
        with self._lock:
            if self._fd is None:
                return
            try:
                if self._failed is None:
                    open_streams = [s for s in self._streams.values() if not s.closed]
                    if open_streams:
                        self._write(_chunk(TAG_BOUNDARY, BOUNDARY_UUID)
                                    + b"".join(self._footer(s) for s in open_streams))
                    for s in open_streams:
                        s.closed = True
                    if self.fsync:
                        self._sync()
            finally:
                fd, self._fd = self._fd, None
                try:
                    os.close(fd)
                except OSError as exc:
                    logger.warning("closing %s failed: %s", self.path, exc)

    def __del__(self):  # pragma: no cover - best effort only
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
