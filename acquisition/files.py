"""Recorded sessions from files: XDF (ours and LabRecorder's), Empatica E4 export folders, CSV.

Everything is turned into a :class:`Recording`: a list of :class:`RecordedStream`
(header, :class:`~attune_monitor.acquisition.convention.StreamDescriptor`, timestamps in
seconds, values) plus a list of *problems* — what could not be read, in words
— so that a damaged file gives what is readable and says what is not.

Supported inputs
----------------
* ``*.xdf`` — read with pyxdf (clock offsets applied). Timestamps stay the
  recorded ones, except in a regular stream whose samples arrived in
  **bursts** (a Polar H10's ECG over LSL: ~73 samples share one stamp every
  ~0.56 s): those are re-stamped by a straight-line fit of time on sample
  index per unbroken segment, the way pyxdf dejitters (see
  :func:`dejitter_bursts`); a real gap in the stream stays a gap.
  The file's chunks are checked first (:func:`scan_xdf`, reading only their
  headers): a chunk cut short at the end of the file, a damaged stretch, a
  header pyxdf cannot use, or a samples chunk claiming more samples than its
  bytes can hold (a 6-kB file claiming 10^9 channels) is left out with a
  problem line, so pyxdf only ever sees whole chunks and its memory and time
  follow the bytes actually in the file.
* An **Empatica E4 export folder** (``EDA.csv``, ``HR.csv``, ``BVP.csv``,
  ``IBI.csv``; standard layout: first row start Unix time, second row rate;
  or the timestamped layout ``,EDA,time`` with wall-clock times).
* A **session folder of E4 exports**: one sub-folder per participant (the
  sub-folder's name is the participant id), each holding E4 exports at any
  depth (e.g. ``round_1/phase1``); segments are joined on their wall-clock
  times, the gaps between them stay gaps.
* **CSV** (``*.csv``) in Attune's tidy layout: columns ``participant, kind,
  timestamp, value`` (kind ``rr|hr|eda|ecg|ppg`` in canonical units: RR in s,
  HR bpm, EDA uS, ECG mV).

Hostile or damaged recordings
-----------------------------
Whatever the format, :func:`load_recording` keeps the session where the data are:

* a few samples stamped far away from all the others (a bridge sending one Unix
  timestamp among session-clock ones, a clock glitch) are left out as **stray
  timestamps** (:func:`drop_stray_timestamps`), so that they cannot stretch the
  session over decades;
* a stream whose header claims an **implausible rate** (over
  :data:`MAX_PLAUSIBLE_SRATE`, e.g. 1e9 Hz) is read at the rate its timestamps
  show, or as an irregular stream (RR, HR, markers), or left out (a raw signal
  whose rate cannot be told);
* losses the live recorder wrote into the file (its ``Attune recording log``:
  a burst that lost samples, a stream it could not record) are listed among the
  problems.

Each of these is one line in :attr:`Recording.problems`.

The roster of a recorded session
--------------------------------
Attune's recordings keep the live session's roster (a string stream ``Attune
roster``, see :mod:`attune_monitor.acquisition.recorder`). :func:`load_recording` applies the
last one recorded: every stream gets the participant, kind and unit it had
live (and streams the roster ignored are left out), so ``analyze``, ``replay``
and ``export`` name the people as the monitor did, without ``--roster``
(:attr:`Recording.roster`). A roster given explicitly (``--roster``) is applied
on top and wins wherever its rules match a stream (the participant, kind and
unit it gives); streams it does not name keep the recorded assignment.
:meth:`Recording.use_roster` puts back the streams as recorded and applies
another roster (or none).
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import json
import logging
import math
import os
import struct
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from attune_monitor.errors import AttuneError

from .convention import KIND_TYPES, StreamDescriptor, describe, is_marker_stream, marker_texts

__all__ = [
    "RecordingError", "RecordedStream", "Recording", "marker_fields", "EPISODE_MARKER_KINDS", "is_shared_kind",
    "is_shared_event", "marker_words", "load_recording", "load_xdf", "MAX_CHANNELS", "XdfScan", "scan_xdf",
    "MAX_PLAUSIBLE_SRATE", "STRAY_GAP_S", "STRAY_SHARE", "OTHER_CLOCK_S", "drop_stray_timestamps", "RECORDING_LOG_TYPE",
    "BURSTY_SHARE", "JITTER_BREAK_S", "dejitter_bursts", "E4_HR_AVERAGING_S", "load_e4_folder", "load_e4_session",
    "CSV_COLUMNS", "load_tidy_csv"
]

logger = logging.getLogger(__name__)


class RecordingError(AttuneError):
    """A recording that cannot be used at all. The message is one line, for the user."""


@dataclass
class RecordedStream:
    """One stream of a recording.

    Attributes
    ----------
    descriptor : StreamDescriptor
    timestamps : ndarray, shape (n_samples,)
        Seconds (LSL time for XDF; Unix time for E4/CSV).
    values : ndarray, shape (n_samples, n_channels) or list of str (marker streams)
        Raw values as recorded.
    header : dict | str | None
        The original header (pyxdf ``info`` dict or XML) for writing back.
    """

    descriptor: StreamDescriptor
    timestamps: np.ndarray
    values: object
    header: object = None

    @property
    def signal(self) -> np.ndarray:
        """The signal channel in canonical units, shape (n_samples,) (NaN where not numeric)."""
        d = self.descriptor
        v = np.asarray(self.values)
        if v.dtype.kind not in "fiu":
            return np.full(len(self.timestamps), np.nan)
        column = min(d.channel_index, max(v.shape[-1] - 1, 0))
        v = v.reshape(len(self.timestamps), -1)[:, column] if v.size else np.zeros(0)
        if d.scale is None:
            d.guess_scale(v[:200])
        return d.to_canonical(v)


@dataclass
class Recording:
    """A recorded session.

    Attributes
    ----------
    path : Path
    streams : list of RecordedStream
    problems : list of str
        What could not be read (one sentence each).
    notes : list of str
        What was done to the data on reading (re-stamped bursts ...), one sentence each.
    roster : acquisition.roster.Roster | None
        The roster applied to the streams' descriptors (participant, kind, unit): the one recorded with the
        session (``roster_source == "recorded"``), one given to :meth:`use_roster`, or ``None``.
    roster_source : str | None
        ``"recorded"`` or what :meth:`use_roster` was told.
    header : dict
        The file header (XDF: pyxdf's ``info`` dict, e.g. ``header["datetime"]``); empty for E4 folders and CSV.
    """

    path: Path
    streams: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    roster: object = None
    roster_source: str | None = None
    header: dict = field(default_factory=dict)
    _as_recorded: list = field(default_factory=list, repr=False)

    @property
    def origin(self) -> float:
        """The earliest timestamp of any stream (session time 0)."""
        firsts = [s.timestamps[0] for s in self.streams if len(s.timestamps)]
        if not firsts:
            raise RecordingError(f"{self.path}: no samples in any stream.")
        return float(min(firsts))

    @property
    def end(self) -> float:
        """The latest timestamp of any stream."""
        lasts = [s.timestamps[-1] for s in self.streams if len(s.timestamps)]
        if not lasts:
            raise RecordingError(f"{self.path}: no samples in any stream.")
        return float(max(lasts))

    @property
    def start_datetime(self) -> datetime | None:
        """The wall-clock time the recording started, timezone-aware, if the file says.

        XDF: the header's ``datetime`` (LabRecorder and Attune write it: when recording began, about the first
        sample); E4 folders and CSV: their timestamps are Unix time, so the time of the first sample (UTC).
        ``None`` when unknown (an XDF without ``datetime``, or timestamps that are not Unix time).
        """
        text = _first_text(self.header.get("datetime")) if self.header else None
        if text:
            try:
                dt = datetime.fromisoformat(text.strip())
            except ValueError:
                return None
            return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
        if self.header or not self.streams:
            return None
        try:
            t0 = self.origin
        except RecordingError:
            return None
        if 946684800 <= t0 <= 4102444800:  # 2000 .. 2100: Unix time, not an LSL clock
            return datetime.fromtimestamp(t0, tz=UTC)
        return None

    def use_roster(self, roster, source: str | None = None) -> list[str]:
        """Put back the streams as recorded, then assign them with ``roster`` (``None``: as recorded, no roster).

        A stream an ``[[ignore]]`` rule matches is left out; a stream a participant's rule matches gets that
        participant and the rule's kind / unit overrides (:func:`attune_monitor.acquisition.roster.apply_rule`).

        Parameters
        ----------
        roster : acquisition.roster.Roster | None
        source : str | None
            Where the roster came from, kept in :attr:`roster_source`.

        Returns
        -------
        notes : list of str
            What the roster changed, in words.
        """
        from .roster import apply_rule

        if self._as_recorded:
            for s, d in self._as_recorded:
                s.descriptor = d
            self.streams = [s for s, _ in self._as_recorded]
        else:
            self._as_recorded = [(s, s.descriptor) for s in self.streams]
        self.roster, self.roster_source = roster, (source if roster is not None else None)
        if roster is None:
            return []
        notes, kept = [], []
        for s in self.streams:
            d = s.descriptor
            if roster.ignored(d):
                notes.append(f"stream {d.name!r} left out (ignored by {source or 'the roster'})")
                continue
            hit = roster.match(d)
            if hit is not None:
                participant, rule = hit
                d = apply_rule(d, rule)
                if d is s.descriptor:
                    d = replace(d, channels=list(d.channels))
                d.participant = participant.id
                s.descriptor = d
            kept.append(s)
        self.streams = kept
        return notes

    def physio_streams(self) -> list:
        """Streams Attune can use (heart or EDA kinds) that hold samples."""
        return [s for s in self.streams if s.descriptor.kind in KIND_TYPES and len(s.timestamps)]

    def markers(self) -> list:
        """Event streams as ``(descriptor, timestamps, list of str)``.

        String streams (markers, Attune's episodes, roster and log) and numeric marker streams, decoded
        (:func:`attune_monitor.acquisition.convention.marker_texts`: an mne-lsl annotation stream's one-hot samples give
        their descriptions).
        """
        out = []
        for s in self.streams:
            d = s.descriptor
            if d.channel_format == "string" or is_marker_stream(d):
                out.append((d, s.timestamps, marker_texts(d, s.values)))
        return out

    def event_markers(self) -> list:
        """Every recorded marker but the live detector's own events, in time order.

        Returns
        -------
        markers : list of (float, str, str)
            ``(timestamp, stream name, text)``: the facilitator's markers (``Attune markers``, JSON) and other
            apps' event / marker streams; not ``Attune events`` (type ``AttuneEvents``: an analysis finds its
            own episodes), the recorded roster (type ``AttuneRoster``) nor the recorder's log (type
            ``AttuneRecordingLog``, see :attr:`Recording.problems`).
        """
        from .roster import RECORDED_ROSTER_TYPE

        out = [(float(t), d.name, str(text)) for d, ts, texts in self.markers()
               if d.type not in ("AttuneEvents", RECORDED_ROSTER_TYPE, RECORDING_LOG_TYPE)
               for t, text in zip(ts, texts)]
        return sorted(out, key=lambda x: x[0])


def marker_fields(text: str) -> tuple[str | None, str, int | None]:
    """``(kind, text, episode)`` of a recorded marker.

    Attune's JSON markers (``{"kind", "text", "episode"}``, as :meth:`attune_monitor.ui.model.SessionModel.add_marker`
    records them) by field; any other marker is ``(None, text, None)``.
    """
    try:
        d = json.loads(text)
    except (ValueError, TypeError):
        return None, str(text), None
    if isinstance(d, dict) and d.get("kind"):
        return str(d["kind"]), str(d.get("text") or ""), d.get("episode")
    return None, str(text), None


#: Attune's own marker kinds that are about an episode, not an event everybody shared (see :func:`is_shared_event`).
EPISODE_MARKER_KINDS = ("rupture_noticed", "repair", "label", "confirm", "dismiss")


def is_shared_kind(kind: str | None) -> bool:
    """Whether a marker of this kind stands for something everybody in the session shared.

    Whether a marker of this kind (None: another app's) stands for something everybody in the session shared
    (re-baseline, don't flag): another app's marker (an experiment's phase or task switch, a stimulus) and the
    facilitator's ``note`` do; Attune's markers about an episode (:data:`EPISODE_MARKER_KINDS`) do not.
    """
    return kind not in EPISODE_MARKER_KINDS


def is_shared_event(text: str) -> bool:
    """:func:`is_shared_kind` of a recorded marker's text."""
    return is_shared_kind(marker_fields(text)[0])


def marker_words(text: str) -> str:
    """A recorded marker in words: ``"label: hit-and-run (episode 1)"`` for Attune's, others as recorded."""
    kind, words, episode = marker_fields(text)
    if kind is None:
        return words
    return kind + (f": {words}" if words else "") + (f" (episode {episode})" if episode is not None else "")


def load_recording(path, *, recorded_roster: bool = True) -> Recording:
    """Load any supported recording (see the module docstring).

    Parameters
    ----------
    path : str | Path
        An XDF file, an E4 export folder (or a folder of them), or a tidy CSV.
    recorded_roster : bool
        Apply the roster recorded with the session, if there is one (see the module docstring); ``False`` gives
        the streams exactly as their headers describe them.

    Raises
    ------
    RecordingError
        When nothing usable can be read; the message says why in one line.
    """
    p = Path(path)
    if not p.exists():
        raise RecordingError(f"{p}: no such file or folder.")
    if p.is_dir():
        if _is_e4_folder(p):
            return _checked(load_e4_folder(p))
        subs = [d for d in sorted(p.iterdir())
                if d.is_dir() and any(_is_e4_folder(x) for x in [d, *d.rglob("*")] if x.is_dir())]
        if subs:
            return _checked(load_e4_session(p))
        raise RecordingError(f"{p}: a folder, but neither an E4 export (EDA.csv, HR.csv ...) nor a folder of them.")
    suffix = p.suffix.lower()
    if suffix == ".xdf" or suffix == ".xdfz":
        rec = load_xdf(p)
        _recording_log(rec)
        _checked(rec)
        if recorded_roster:
            _use_recorded_roster(rec)
        return rec
    if suffix == ".csv":
        return _checked(load_tidy_csv(p))
    raise RecordingError(f"{p}: unknown file type {suffix!r}; expected .xdf, .csv or an E4 export folder.")


# -- XDF ---------------------------------------------------------------------------------------------
def load_xdf(path) -> Recording:
    """Read an XDF file with pyxdf.

    Truncated or partly malformed files give the streams pyxdf could read; the
    problems are listed in ``Recording.problems``.
    """
    import pyxdf

    p = Path(path)
    rec = Recording(p)
    catcher = _LogCatcher()
    pylog = logging.getLogger("pyxdf.pyxdf")
    pylog.addHandler(catcher)
    old_propagate = pylog.propagate
    pylog.propagate = False
    try:
        # numpy warnings from pyxdf's clock fits on a damaged file (overflow ...) are listed, not printed
        # the file is opened here, so that it is closed whatever pyxdf makes of it
        opener = gzip.open if p.suffix.lower() == ".xdfz" or p.suffixes[-2:] == [".xdf", ".gz"] else open
        with opener(p, "rb") as fh, warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            scan = scan_xdf(fh)
            rec.problems.extend(scan.problems)
            fh.seek(0)
            source = fh if scan.whole else io.BufferedReader(_Spliced(fh, scan.chunks), buffer_size=2**20)
            streams, header = pyxdf.load_xdf(source, dejitter_timestamps=False, synchronize_clocks=True,
                                             handle_clock_resets=True)
    except RecordingError:
        raise
    except Exception as exc:  # pyxdf raises many kinds for damaged files
        raise RecordingError(f"{p}: unreadable XDF ({type(exc).__name__}: {_one_line(exc)}).") from None
    finally:
        pylog.removeHandler(catcher)
        pylog.propagate = old_propagate
    # "Segments and clock-segments differ": pyxdf noting a gap in a stream; gaps are marked missing anyway
    rec.problems.extend(sorted({m for m in catcher.messages if "clock-segments differ" not in m}))
    rec.problems.extend(sorted({f"pyxdf: {_one_line(w.message)}" for w in caught}))
    info = header.get("info") if isinstance(header, dict) else None
    rec.header = dict(info) if isinstance(info, dict) else {}
    for s in streams:
        try:
            d = describe(s["info"])
        except Exception as exc:  # header we cannot parse
            rec.problems.append(f"a stream header could not be read ({exc}); stream skipped.")
            continue
        ts = np.asarray(s.get("time_stamps", []), dtype=float)
        vals = s.get("time_series", [])
        if isinstance(vals, np.ndarray):
            if vals.ndim == 1:
                vals = vals[:, None]
            if len(ts) != len(vals):
                rec.problems.append(
                    f"stream {d.name!r}: {len(ts)} timestamps for {len(vals)} samples; cut to the shorter.")
                n = min(len(ts), len(vals))
                ts, vals = ts[:n], vals[:n]
        if len(ts) and d.kind is not None:
            bad = ~np.isfinite(ts)
            if bad.any():
                rec.problems.append(f"stream {d.name!r}: {int(bad.sum())} samples without a valid timestamp dropped.")
                ts, vals = ts[~bad], np.asarray(vals)[~bad]
        rec.streams.append(RecordedStream(d, ts, vals, s["info"]))
    # stray stamps first: they would skew the rate read from the timestamps and break a stream into segments
    drop_stray_timestamps(rec)
    kept = []
    for st in rec.streams:
        d = _plausible_rate(rec, st.descriptor, st.timestamps, st.header)
        if d is None:
            continue
        st.descriptor = d
        kept.append(st)
    rec.streams = kept
    for st in rec.streams:
        d, ts, vals = st.descriptor, st.timestamps, st.values
        if len(ts) and d.srate > 0 and d.channel_format != "string":
            ts, info = dejitter_bursts(ts, d.srate)
            if info is not None:
                rec.notes.append(
                    f"stream {d.name!r}: its samples came in bursts ({info['bursty_share']:.0%} of them stamped "
                    f"with the one before); re-stamped at the fitted rate {info['rate']:.3f} Hz (nominal "
                    f"{d.srate:g} Hz) in {info['segments']} segment(s)"
                    + (f", {info['segments'] - 1} gap(s) over {info['break_s']:.2f} s kept" if info["segments"] > 1
                       else "") + ".")
                logger.info("%s", rec.notes[-1])
        if len(ts) and d.kind is not None:
            order = np.argsort(ts, kind="stable")
            if np.any(np.diff(order) < 0):
                rec.problems.append(f"stream {d.name!r}: samples out of time order were sorted.")
                ts, vals = ts[order], np.asarray(vals)[order]
        st.timestamps, st.values = ts, vals
    if not rec.streams:
        why = f" ({rec.problems[0][:-1] if rec.problems[0].endswith('.') else rec.problems[0]})" if rec.problems else ""
        raise RecordingError(f"{p}: no streams could be read{why}.")
    return rec


# -- XDF chunk scan: whole chunks only, header claims checked against the bytes ----------------------------------
_BOUNDARY = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4])
#: Bytes of one value of each XDF channel format (a string: at least its 2-byte length, when empty).
_VALUE_BYTES = {"int8": 1, "int16": 2, "int32": 4, "int64": 8, "float32": 4, "double64": 8, "string": 2}
#: More channels than this in a stream header is no recording of people (a 10^9-channel claim is refused).
MAX_CHANNELS = 65536


@dataclass
class XdfScan:
    """What :func:`scan_xdf` found.

    Attributes
    ----------
    chunks : list of (int, int)
        Byte ranges ``[start, stop)`` to read, in order: the magic and every whole, usable chunk.
    whole : bool
        True when that is the entire file (nothing to leave out).
    problems : list of str
        What was left out and why, one sentence each.
    """

    chunks: list = field(default_factory=list)
    whole: bool = True
    problems: list = field(default_factory=list)


def scan_xdf(fh) -> XdfScan:
    """Walk an XDF file's chunks, reading only their headers, and say which ones pyxdf may read.

    pyxdf believes what a file says: a samples chunk claiming one sample of 10^9 channels makes it allocate and
    read gigabytes before failing, a chunk cut short at the end or a header without ``channel_count`` makes it give
    up on the whole file. This scan keeps a chunk only when it is whole and usable: a stream header of valid XML
    with an ``<info>`` root, a name, ``channel_count`` 1 .. :data:`MAX_CHANNELS`, a numeric ``nominal_srate`` and a
    known ``channel_format``; a samples chunk of a known stream whose sample count fits its bytes (every sample
    takes at least a timestamp byte and its values); a clock offset of the right size; the file header as valid
    XML; boundaries and footers. A damaged stretch is skipped to the next boundary chunk (as pyxdf does), a chunk
    running past the end of the file ends the scan. Time and memory follow the file's size, never its claims.

    Parameters
    ----------
    fh : binary file object
        Open at any position (seekable; a gzip file works too).

    Returns
    -------
    scan : XdfScan
    """
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    out = XdfScan()
    if fh.read(4) != b"XDF:":
        return out  # not XDF at all: pyxdf says so
    keep = [(0, 4)]
    streams: dict[int, tuple[int, str, str]] = {}  # id -> (channel count, format, name)
    unusable: dict[int, str] = {}                   # id -> why its header was not used
    lies: dict[int, list] = {}                      # id -> [chunks left out, example claim]
    orphans = 0
    pos = 4
    while pos < size:
        fh.seek(pos)
        head = fh.read(9)
        nb = head[0]
        length = int.from_bytes(head[1:1 + nb], "little") if nb in (1, 4, 8) and len(head) >= 1 + nb else -1
        body = pos + 1 + nb
        # running past the end: cut short (a valid length byte with its length missing, or a chunk longer than
        # what is left), unless a boundary follows (then the length lied in the middle of the file)
        past_end = nb in (1, 4, 8) and (len(head) < 1 + nb or (length >= 2 and body + length > size))
        if length < 2 or body + length > size:
            nxt = _next_boundary(fh, pos + 1, size)
            if past_end and nxt is None:
                out.problems.append(f"the file ends inside a chunk (cut short: its last {size - pos} bytes are an "
                                    "incomplete chunk); read up to the last whole chunk.")
            elif nxt is None:
                out.problems.append(f"bytes {pos} .. {size} are not XDF chunks (damaged); read up to byte {pos}.")
            else:
                out.problems.append(f"bytes {pos} .. {nxt} are not XDF chunks (damaged); skipped to the next "
                                    "boundary chunk.")
            if nxt is None:
                break
            pos = nxt
            continue
        stop = body + length
        fh.seek(body)
        first = fh.read(min(length, 2 + 4 + 9))
        tag = struct.unpack_from("<H", first)[0]
        ok = True
        if tag in (2, 3, 4, 6):
            if length < 6:
                ok = False
                orphans += 1
            else:
                sid = struct.unpack_from("<I", first, 2)[0]
                if tag == 2:
                    fh.seek(body + 6)
                    why, info = _usable_header(fh.read(length - 6))
                    if why is None:
                        streams[sid] = info
                        unusable.pop(sid, None)
                    else:
                        ok = False
                        unusable[sid] = why
                elif sid not in streams:
                    ok = False
                    if sid not in unusable:
                        orphans += 1
                elif tag == 3:
                    ok = _samples_fit(first, length, streams[sid], lies.setdefault(sid, [0, None]))
                elif tag == 4:
                    ok = length == 2 + 4 + 16
                    orphans += not ok
        elif tag == 1:
            fh.seek(body + 2)
            try:
                ET.fromstring(fh.read(length - 2))
            except ET.ParseError as exc:
                ok = False
                out.problems.append(f"the file header is not valid XML ({_one_line(exc, 80)}); it was left out "
                                    "(no recording start time).")
        elif tag != 5:
            ok = False  # not an XDF 1.0 chunk: pyxdf would skip it too
        if ok:
            if keep[-1][1] == pos:
                keep[-1] = (keep[-1][0], stop)
            else:
                keep.append((pos, stop))
        pos = stop
    for sid, why in unusable.items():
        out.problems.append(f"stream {sid}: its header cannot be used ({why}); the stream was left out.")
    for sid, (n, claim) in lies.items():
        if n:
            out.problems.append(f"stream {streams[sid][2]!r}: {n} samples chunk(s) claiming more than their bytes can "
                                f"hold ({claim}) left out.")
    if orphans:
        out.problems.append(f"{orphans} chunk(s) of streams without a usable header, or of the wrong size, left out.")
    out.chunks = keep
    out.whole = keep == [(0, size)]
    return out


def _usable_header(content: bytes) -> tuple[str | None, tuple]:
    """``(None, (channel_count, format, name))`` for a stream header pyxdf can use, else ``(why, ())``."""
    try:
        root = ET.fromstring(content.decode("utf-8", "replace"))
    except ET.ParseError as exc:
        return f"not valid XML: {_one_line(exc, 60)}", ()
    if root.tag != "info" or root.find("name") is None:
        return "no <info> with a <name>", ()
    fmt = (root.findtext("channel_format") or "").strip()
    if fmt not in _VALUE_BYTES:
        return f"channel_format {_one_line(fmt, 20)!r} is not an XDF format", ()
    try:
        n_ch = int(root.findtext("channel_count") or "")
        float(root.findtext("nominal_srate") or "")
    except (TypeError, ValueError):
        return "channel_count / nominal_srate are not numbers", ()
    if not 1 <= n_ch <= MAX_CHANNELS:
        return f"it claims {n_ch} channels (at most {MAX_CHANNELS})", ()
    return None, (n_ch, fmt, root.findtext("name") or "")


def _samples_fit(first: bytes, length: int, stream: tuple, lie: list) -> bool:
    """Whether a samples chunk's sample count fits its bytes; ``first`` holds its tag, stream id and count."""
    n_ch, fmt, _ = stream
    if len(first) < 7:
        return False
    nb = first[6]
    if nb not in (1, 4, 8) or len(first) < 7 + nb:
        return False
    n = int.from_bytes(first[7:7 + nb], "little")
    room = length - (2 + 4 + 1 + nb)
    # each sample: a timestamp byte, then each value (a string: at least its length's 2 bytes)
    if n * (1 + n_ch * _VALUE_BYTES[fmt]) <= room:
        return True
    lie[0] += 1
    lie[1] = lie[1] or f"{n} sample(s) of {n_ch} {fmt} channel(s) in {room} bytes"
    return False


def _next_boundary(fh, start: int, size: int) -> int | None:
    """The byte just after the next boundary chunk's UUID at or after ``start`` (the next chunk), or ``None``."""
    block = 2**20
    pos = start
    while pos < size:
        fh.seek(pos)
        data = fh.read(block + len(_BOUNDARY) - 1)
        i = data.find(_BOUNDARY)
        if i >= 0:
            return pos + i + len(_BOUNDARY)
        if len(data) < block:
            return None
        pos += block
    return None


class _Spliced(io.RawIOBase):
    """A read-only view of chosen byte ranges of a file, one after the other (what pyxdf reads of a damaged file)."""

    def __init__(self, fh, ranges):
        self._fh = fh
        self._starts, self._ranges, total = [], [], 0
        for a, b in ranges:
            self._starts.append(total)
            self._ranges.append((a, b))
            total += b - a
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + int(offset))
        return self._pos

    def readinto(self, buf) -> int:
        if self._pos >= self._size:
            return 0
        i = bisect.bisect_right(self._starts, self._pos) - 1
        a, b = self._ranges[i]
        at = a + self._pos - self._starts[i]
        n = min(len(buf), b - at)
        self._fh.seek(at)
        data = self._fh.read(n)
        buf[:len(data)] = data
        self._pos += len(data)
        return len(data)


# -- what a recording holds, checked against where its data are ----------------------------------------------------
#: Highest nominal rate (Hz) a header is believed: no wearable or biosignal amplifier Attune reads samples faster.
MAX_PLAUSIBLE_SRATE = 100_000.0
#: A stretch of samples separated from the rest of the recording by more than this (s) may be stray ...
STRAY_GAP_S = 3600.0
#: ... when it holds at most this share of the recording's samples and lies further from them than they span ...
STRAY_SHARE = 0.01
#: ... and, whatever it holds, when it lies further than this (s): another clock (Unix time among LSL's).
OTHER_CLOCK_S = 30 * 86400.0


def _checked(rec: Recording) -> Recording:
    """Stray timestamps and rates of any recording (XDF's are checked while reading, before dejitter)."""
    drop_stray_timestamps(rec)
    kept = []
    for s in rec.streams:
        d = _plausible_rate(rec, s.descriptor, np.asarray(s.timestamps, dtype=float), s.header)
        if d is not None:
            s.descriptor = d
            kept.append(s)
    if rec.streams and not kept:  # every stream left out: nothing to analyse, and the problems say why
        raise RecordingError(_one_line(f"{rec.path}: no usable stream: {' '.join(rec.problems)}", 600))
    rec.streams = kept
    return rec


def _plausible_rate(rec: Recording, d, ts: np.ndarray, header=None):
    """``d`` with a believable nominal rate, or ``None`` when the stream must be left out.

    ``d`` with a believable nominal rate, or ``None`` when the stream must be left out (either said in
    ``rec.problems``: the file's header is wrong).

    A claim over :data:`MAX_PLAUSIBLE_SRATE` (or not a finite number >= 0) gives way to the rate the timestamps
    show; when they cannot tell, a stream that needs no rate (RR, HR, markers, other apps' data) is read as
    irregular, and a raw signal (ECG, PPG, EDA) is left out.
    """
    srate = d.srate
    if math.isfinite(srate) and 0 <= srate <= MAX_PLAUSIBLE_SRATE:
        return d
    t = ts[np.isfinite(ts)] if ts.size else ts
    span = float(t.max() - t.min()) if t.size >= 2 else 0.0
    seen = (t.size - 1) / span if span > 0 else 0.0
    claim = f"its header claims {srate:g} Hz, which no device sends"
    if d.kind == "rr" or d.channel_format == "string":  # one sample per beat / per event: irregular by nature
        new, how = 0.0, "read as an irregular stream"
    elif 0 < seen <= MAX_PLAUSIBLE_SRATE:
        new, how = float(np.round(seen, 3)), f"read at the rate its timestamps show, {np.round(seen, 3):g} Hz"
    elif d.kind in ("hr", None):
        new, how = 0.0, "read as an irregular stream"
    else:
        rec.problems.append(f"stream {d.name!r}: {claim}, and its timestamps cannot tell its rate; left out.")
        return None
    rec.problems.append(f"stream {d.name!r}: {claim}; {how}.")
    if isinstance(header, dict) and "nominal_srate" in header:
        header["nominal_srate"] = [repr(new)]  # what is written back or re-published is believable too
    return replace(d, srate=new, channels=list(d.channels))


def drop_stray_timestamps(rec: Recording) -> list[str]:
    """Leave out samples stamped far from where a recording's data are (a stray Unix timestamp, another clock).

    Every stream's sorted timestamps are cut where they jump by more than :data:`STRAY_GAP_S`; the pieces of all
    streams that lie within that distance of one another make up *islands* of data. The island with the most
    samples is the session. Another island is stray when it holds at most :data:`STRAY_SHARE` of all samples and
    lies further from the session than the session spans (and than :data:`STRAY_GAP_S`) — one sample stamped in
    Unix time among LSL stamps would otherwise stretch the session over 50 years — or, however large, when it lies
    more than :data:`OTHER_CLOCK_S` away (a stream on another clock altogether). A real pause in a session (an
    hour's break, rounds a few days apart) holds more than a stray share of the samples and is kept. Attune's
    own notes (the recorded roster, the recorder's log) are metadata: they are neither counted nor left out.

    Parameters
    ----------
    rec : Recording
        Changed in place: samples left out, one line per stream in ``rec.problems``.

    Returns
    -------
    problems : list of str
        The lines added.
    """
    from .roster import RECORDED_ROSTER_TYPE

    meta = (RECORDING_LOG_TYPE, RECORDED_ROSTER_TYPE)
    pieces = []  # (first, last, n samples)
    for s in rec.streams:
        if s.descriptor.type in meta:
            continue
        ts = np.asarray(s.timestamps, dtype=float)
        t = np.sort(ts[np.isfinite(ts)])
        if t.size == 0:
            continue
        cut = np.flatnonzero(np.diff(t) > STRAY_GAP_S) + 1
        for a, b in zip(np.r_[0, cut], np.r_[cut, t.size]):
            pieces.append((float(t[a]), float(t[b - 1]), int(b - a)))
    if len(pieces) < 2:
        return []
    pieces.sort()
    islands = [list(pieces[0])]
    for a, b, n in pieces[1:]:
        last = islands[-1]
        if a - last[1] <= STRAY_GAP_S:
            last[1], last[2] = max(last[1], b), last[2] + n
        else:
            islands.append([a, b, n])
    if len(islands) < 2:
        return []
    total = sum(i[2] for i in islands)
    main = max(islands, key=lambda i: i[2])
    span = main[1] - main[0]
    stray = []
    for isl in islands:
        if isl is main:
            continue
        far = max(main[0] - isl[1], isl[0] - main[1])
        if far > OTHER_CLOCK_S or (isl[2] <= STRAY_SHARE * total and far > max(STRAY_GAP_S, span)):
            stray.append((isl[0], isl[1], far))
    if not stray:
        return []
    added = []
    for s in rec.streams:
        ts = np.asarray(s.timestamps, dtype=float)
        if ts.size == 0 or s.descriptor.type in meta:
            continue
        out = np.zeros(ts.size, dtype=bool)
        far = 0.0
        for a, b, dist in stray:
            hit = (ts >= a) & (ts <= b)
            if hit.any():
                out |= hit
                far = max(far, dist)
        k = int(out.sum())
        if not k:
            continue
        where = ", ".join(f"{x:.10g}" for x in np.unique(ts[out])[:3]) + (" ..." if k > 3 else "")
        keep = ~out
        s.timestamps = ts[keep]
        s.values = (s.values[keep] if isinstance(s.values, np.ndarray)
                    else [v for v, ok in zip(s.values, keep) if ok])
        line = (f"stream {s.descriptor.name!r}: {k} sample(s) stamped {_duration_words(far)} away from the rest of "
                f"the recording (at {where}) left out as stray timestamps (a clock glitch, e.g. a device sending "
                "Unix time), so that the session covers where the data are.")
        rec.problems.append(line)
        added.append(line)
    return added


def _duration_words(seconds: float) -> str:
    """``"54 years"``, ``"3.2 days"``, ``"2.5 hours"``."""
    for unit, s in (("years", 365.25 * 86400), ("days", 86400.0), ("hours", 3600.0)):
        if seconds >= s:
            return f"{seconds / s:.2g} {unit}" if seconds < 10 * s else f"{seconds / s:.0f} {unit}"
    return f"{seconds:.0f} s"


#: The string stream in which the live recorder notes what it lost (see :mod:`attune_monitor.acquisition.recorder`).
RECORDING_LOG_TYPE = "AttuneRecordingLog"


def _recording_log(rec: Recording) -> None:
    """List what the live recorder noted it lost (its ``Attune recording log``) among the recording's problems."""
    for s in rec.streams:
        if s.descriptor.type != RECORDING_LOG_TYPE or s.descriptor.channel_format != "string":
            continue
        for v in s.values:
            text = v[0] if isinstance(v, (list, tuple)) and v else v
            try:
                entry = json.loads(text)
                line = str(entry["text"])
            except (ValueError, TypeError, KeyError):
                line = str(text)
            rec.problems.append(f"while recording: {_one_line(line, 400)}")


#: A regular stream counts as *bursty* when more than this share of its sample intervals are shorter than a quarter
#: of the nominal interval (a real LabRecorder Polar H10 ECG recording is far above it; a stream stamped sample by
#: sample is at 0: docs/validation.md).
BURSTY_SHARE = 0.5

#: Seconds of missing data, beyond the stream's usual spacing between bursts, that make a gap: the stream is
#: re-stamped on each side of it separately (pyxdf's ``jitter_break_threshold_seconds``, 1 s, on top of the
#: burst spacing; real Polar H10 bursts come every ~0.56 s and arrive up to 0.6 s late or early).
JITTER_BREAK_S = 1.0


def dejitter_bursts(timestamps, srate: float, break_s: float = JITTER_BREAK_S) -> tuple[np.ndarray, dict | None]:
    """Re-stamp a regular stream whose samples arrived in bursts, the way pyxdf dejitters.

    Many devices hand LSL a packet of samples at a time, all stamped with the packet's arrival (a Polar H10's
    130 Hz ECG: ~73 samples per stamp every ~0.56 s). Read as recorded, a burst is 73 samples in 0 s and then
    nothing for half a second, which no beat detector can use. Like pyxdf's ``dejitter_timestamps`` this fits a
    straight line of time on sample index to each unbroken segment and puts the samples on it (the slope gives
    the device's true rate, e.g. 130.26 Hz, so the stream keeps its place next to the other streams over hours).
    Unlike pyxdf's default (a break needs 500 samples *and* 1 s), a segment ends wherever the stamps jump by more
    than the usual spacing between bursts (the time a typical burst's samples cover: 73 / 130 Hz = 0.56 s) plus
    ``break_s``, or go backwards by more than ``break_s`` (a clock reset): a real gap stays a gap. Too short a
    segment to fit (fewer than 3 bursts) gets the nominal spacing through the middle of its stamps. Streams
    stamped sample by sample are returned unchanged.

    Parameters
    ----------
    timestamps : array-like, shape (n_samples,)
        Seconds, in recorded order (clock offsets already applied).
    srate : float
        The nominal rate (Hz); > 0.
    break_s : float
        Missing seconds (beyond the usual burst spacing) that make a gap.

    Returns
    -------
    timestamps : ndarray, shape (n_samples,)
        Re-stamped (a new array), or the input as a float array when the stream is not bursty.
    info : dict | None
        ``{"bursty_share", "rate", "segments", "break_s"}`` when re-stamped (``rate``: the fitted rate, Hz, over
        the segments; ``break_s``: the jump that made a gap), else ``None``.
    """
    ts = np.asarray(timestamps, dtype=float)
    n = ts.size
    if not srate > 0 or n < 8 or not np.all(np.isfinite(ts)):
        return ts, None
    d = np.diff(ts)
    within = np.abs(d) < 0.25 / srate
    share = float(within.mean())
    if share <= BURSTY_SHARE:
        return ts, None
    # the usual spacing between bursts: the time a typical burst's samples cover (steady state: one burst's worth
    # of samples per burst interval), so that neither gaps nor late bursts move it
    sizes = np.diff(np.r_[0, np.flatnonzero(~within) + 1, n])
    usual = float(np.median(sizes)) / srate
    threshold = usual + float(break_s)
    breaks = np.flatnonzero((d > threshold) | (d < -float(break_s)))
    starts = np.r_[0, breaks + 1]
    stops = np.r_[breaks + 1, n]
    out = np.empty(n)
    fitted_n, fitted_s = 0, 0.0
    for a, b in zip(starts, stops):
        seg = ts[a:b]
        idx = np.arange(b - a, dtype=float)
        n_bursts = 1 + int(np.count_nonzero(~within[a:b - 1]))
        slope = None
        if n_bursts >= 3:
            X = np.column_stack([np.ones_like(idx), idx])
            intercept, slope = np.linalg.lstsq(X, seg, rcond=None)[0]
            if not 0.5 / srate < slope < 2.0 / srate:  # not a regular stream in this stretch: nominal spacing
                slope = None
        if slope is None:  # too few bursts to fit: the nominal rate through the middle of the stamps
            slope = 1.0 / srate
            intercept = float(seg.mean()) - slope * float(idx.mean())
        out[a:b] = intercept + slope * idx
        if b - a > 1:
            fitted_n += b - a - 1
            fitted_s += slope * (b - a - 1)
    rate = fitted_n / fitted_s if fitted_s > 0 else float(srate)
    return out, {"bursty_share": share, "rate": rate, "segments": len(starts), "break_s": threshold}


def _first_text(value) -> str | None:
    """The text of a pyxdf header field (a list of strings, or a string)."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def _use_recorded_roster(rec: Recording) -> None:
    """Apply the last roster recorded with the session (an ``Attune roster`` stream), if any."""
    from .roster import RECORDED_ROSTER_TYPE, Roster, RosterError

    found = [s for s in rec.streams if s.descriptor.type == RECORDED_ROSTER_TYPE and len(s.timestamps)
             and s.descriptor.channel_format == "string"]
    if not found:
        return
    # the recorder's own (a replayed session re-published and recorded again has a second one, "-replay")
    found.sort(key=lambda s: s.descriptor.source_id != "attune-roster")
    values = found[0].values
    last = values[-1]
    text = str(last[0] if isinstance(last, (list, tuple)) and last else last)
    try:
        roster = Roster.from_toml(text, source=f"the roster recorded in {rec.path.name}")
    except RosterError as exc:
        rec.problems.append(f"the roster recorded with the session cannot be used ({exc}); participants are named "
                            "from the streams instead (give one with --roster).")
        return
    notes = rec.use_roster(roster, "recorded")
    people = ", ".join(p.id for p in roster.participants)
    rec.notes.append(f"participants as in the live session ({people}): the roster recorded with it"
                     + (f"; {'; '.join(notes)}" if notes else "") + ".")


class _LogCatcher(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        msg = _one_line(record.getMessage())
        self.messages.append(f"pyxdf: {msg}")


# -- Empatica E4 -----------------------------------------------------------------------------------------
_E4_FILES = {"EDA.csv": "eda", "HR.csv": "hr", "BVP.csv": "ppg", "IBI.csv": "rr"}
_E4_UNITS = {"eda": "uS", "hr": "bpm", "ppg": "au", "rr": "s"}
#: An E4 export's HR.csv holds "average heart rate values, computed in spans of 10 seconds" (Empatica support,
#: "E4 data - HR.csv explanation"; its first value comes 10 s after the recording starts).
E4_HR_AVERAGING_S = 10.0


def _is_e4_folder(p: Path) -> bool:
    return (p / "EDA.csv").is_file() or (p / "HR.csv").is_file()


def _read_e4_csv(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray, int]:
    """One E4 CSV -> (Unix timestamps (n,), values (n,), number of lines that could not be read). Both layouts.

    Raises
    ------
    ValueError
        When the file's layout cannot be read at all (its first lines say in what way).
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        first = fh.readline()
        if first.startswith(",") or "time" in first.lower() and "," in first and not _is_number(first.split(",")[0]):
            # timestamped layout: index, value, wall-clock time
            ts, vs, bad = [], [], 0
            for row in csv.reader(fh):
                try:
                    v, t = float(row[1]), _parse_time(row[2])
                except (ValueError, IndexError, OverflowError):
                    bad += bool(row)
                    continue
                vs.append(v)
                ts.append(t)
            return np.asarray(ts, dtype=float), np.asarray(vs, dtype=float), bad
        start = _finite(first.split(",")[0], "the first line (the start, in Unix time)")
        if kind == "rr":  # IBI.csv: start, "IBI" then rows "offset, ibi"
            ts, vs, bad = [], [], 0
            for line in fh:
                try:
                    a, b = (float(x) for x in line.split(","))
                except ValueError:
                    bad += bool(line.strip())
                    continue
                if math.isfinite(a) and math.isfinite(b):
                    ts.append(start + a)
                    vs.append(b)
                else:
                    bad += 1
            return np.asarray(ts, dtype=float), np.asarray(vs, dtype=float), bad
        rate = _finite(fh.readline().split(",")[0], "the second line (the sample rate, Hz)")
        if not rate > 0:
            raise ValueError(f"the sample rate on the second line is {rate:g} Hz")
        vals, bad = [], 0
        for line in fh:  # one value a line; an unreadable line is a missing sample (NaN), so that timing holds
            if not line.strip():
                continue
            try:
                vals.append(float(line.split(",")[0]))
            except ValueError:
                vals.append(math.nan)
                bad += 1
        values = np.asarray(vals, dtype=float)
        values[~np.isfinite(values)] = np.nan
        return start + np.arange(values.size) / rate, values, bad


def _finite(text: str, what: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{what} is not a number: {_one_line(text, 40)!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} is {x}")
    return x


def _rate(ts: np.ndarray) -> float:
    """The sampling rate (Hz) of regularly spaced timestamps, rounded to 1 mHz; 0 when it cannot be told."""
    d = np.diff(ts)
    d = d[d > 0]
    if d.size == 0:
        return 0.0
    rate = 1.0 / float(np.median(d))
    return float(np.round(rate, 3)) if math.isfinite(rate) else 0.0


def _one_line(text, limit: int = 200) -> str:
    """``text`` on one line (whitespace runs and control characters as one space), at most ``limit`` characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _stream_xml(kind: str, name: str, participant: str, source_id: str, rate: float, unit: str,
                extra: dict | None = None) -> str:
    """The ``<info>`` XML of a stream read from a vendor export or a CSV (Attune's convention)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("info")
    for tag, text in (("name", name), ("type", KIND_TYPES[kind]), ("channel_count", "1"),
                      ("nominal_srate", repr(float(rate))), ("channel_format", "double64"), ("source_id", source_id)):
        ET.SubElement(root, tag).text = _xml_text(text)
    desc = ET.SubElement(root, "desc")
    ET.SubElement(desc, "participant").text = _xml_text(participant)
    for tag, text in (extra or {}).items():
        ET.SubElement(desc, tag).text = _xml_text(text)
    ch = ET.SubElement(ET.SubElement(desc, "channels"), "channel")
    for tag, text in (("label", KIND_TYPES[kind]), ("unit", unit), ("type", KIND_TYPES[kind])):
        ET.SubElement(ch, tag).text = text
    return ET.tostring(root, encoding="unicode")


def _xml_text(text) -> str:
    """Text XML can hold (no control characters)."""
    return "".join(c for c in str(text) if c.isprintable() or c in "\t")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _parse_time(text: str) -> float:
    """Wall-clock time string -> Unix seconds (naive times taken as UTC, consistently for all partners)."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _e4_stream(kind: str, participant: str, ts: np.ndarray, vs: np.ndarray, name: str, rate: float) -> RecordedStream:
    extra = {"manufacturer": "Empatica", "device": "E4"}
    if kind == "hr":
        extra["averaging_s"] = f"{E4_HR_AVERAGING_S:g}"
    xml = _stream_xml(kind, name, participant, f"e4-{participant}-{kind}", rate, _E4_UNITS[kind], extra)
    return RecordedStream(describe(xml), ts, vs[:, None], xml)


def load_e4_folder(path, participant: str | None = None) -> Recording:
    """One E4 export folder (one person)."""
    p = Path(path)
    participant = participant or p.name
    rec = Recording(p)
    for fname, kind in _E4_FILES.items():
        f = p / fname
        if not f.is_file():
            continue
        try:
            ts, vs, bad = _read_e4_csv(f, kind)
        except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
            why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else _one_line(exc)
            rec.problems.append(f"{f.name}: unreadable ({why}); skipped.")
            continue
        if bad:
            rec.problems.append(f"{f.name}: {bad} line(s) that are not numbers were read as missing samples.")
        if ts.size == 0:
            rec.problems.append(f"{f.name}: no samples.")
            continue
        if np.any(np.diff(ts) < 0):  # IBI.csv rows are offsets as written: a damaged one can step back
            order = np.argsort(ts, kind="stable")
            ts, vs = ts[order], vs[order]
            rec.problems.append(f"{f.name}: rows out of time order were sorted.")
        rate = 0.0 if kind == "rr" else _rate(ts)
        rec.streams.append(_e4_stream(kind, participant, ts, vs, f"{participant} E4 {KIND_TYPES[kind]}", rate))
    if not rec.streams:
        raise RecordingError(f"{p}: an E4 folder without readable EDA.csv/HR.csv/BVP.csv/IBI.csv.")
    return rec


def load_e4_session(path) -> Recording:
    """A folder with one sub-folder of E4 exports per participant; segments joined on wall-clock time."""
    p = Path(path)
    rec = Recording(p)
    for sub in sorted(d for d in p.iterdir() if d.is_dir()):
        folders = sorted({f.parent for f in sub.rglob("EDA.csv")} | {f.parent for f in sub.rglob("HR.csv")})
        if not folders:
            continue
        parts: dict[str, list] = {}
        for folder in folders:
            try:
                r = load_e4_folder(folder, participant=sub.name)
            except RecordingError as exc:
                rec.problems.append(_one_line(exc, 400))
                continue
            rec.problems.extend(f"{folder.relative_to(p)}: {m}" for m in r.problems)
            for s in r.streams:
                parts.setdefault(s.descriptor.kind, []).append(s)
        for kind, segs in parts.items():
            segs.sort(key=lambda s: s.timestamps[0])
            ts = np.concatenate([s.timestamps for s in segs])
            vs = np.concatenate([np.asarray(s.values)[:, 0] for s in segs])
            order = np.argsort(ts, kind="stable")
            ts, vs = ts[order], vs[order]
            keep = np.r_[True, np.diff(ts) > 0]
            rate = segs[0].descriptor.srate
            rec.streams.append(_e4_stream(kind, sub.name, ts[keep], vs[keep], f"{sub.name} E4 {KIND_TYPES[kind]}",
                                          rate))
    if len({s.descriptor.participant for s in rec.streams}) < 1:
        raise RecordingError(f"{p}: no E4 exports found in its sub-folders.")
    return rec


# -- tidy CSV ----------------------------------------------------------------------------------------------
#: The columns of Attune's CSV layout, in order, and the canonical unit of each kind.
CSV_COLUMNS = ("participant", "kind", "timestamp", "value")
_CSV_UNITS = {"rr": "s", "hr": "bpm", "eda": "uS", "ecg": "mV", "ppg": "au"}


def load_tidy_csv(path) -> Recording:
    """Attune's CSV layout: ``participant,kind,timestamp,value`` (canonical units), one row per sample.

    Rows that cannot be used (an unknown kind, no participant, a timestamp or value that is not a finite number,
    too few fields) are skipped and counted in ``problems``.

    Raises
    ------
    RecordingError
        For an empty file, a file that is not UTF-8 text or not CSV, a header without the four columns, or no
        usable row; the message says which and how the file should look.
    """
    p = Path(path)
    rec = Recording(p)
    layout = "a header line participant,kind,timestamp,value, then one row per sample (e.g. P1,eda,1712.25,4.2)"
    data: dict[tuple[str, str], list] = {}
    bad = 0
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            while header is not None and not any(c.strip() for c in header):
                header = next(reader, None)  # blank lines before the header
            if header is None:
                raise RecordingError(f"{p}: the CSV file is empty; expected {layout}.")
            cols = [c.strip().lower() for c in header]
            if not set(CSV_COLUMNS) <= set(cols):
                missing = ", ".join(c for c in CSV_COLUMNS if c not in cols)
                raise RecordingError(f"{p}: the CSV header lacks the column(s) {missing} (its first line is "
                                     f"{_one_line(','.join(header), 80)!r}); expected {layout}.")
            where = [cols.index(c) for c in CSV_COLUMNS]
            need = max(where) + 1
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) < need:
                    bad += 1
                    continue
                who, kind, t_text, v_text = (row[i] for i in where)
                who, kind = who.strip(), kind.strip().lower()
                try:
                    t, v = float(t_text), float(v_text)
                except ValueError:
                    bad += 1
                    continue
                if kind not in KIND_TYPES or not who or not who.isprintable() or not (math.isfinite(t)
                                                                                    and math.isfinite(v)):
                    bad += 1
                    continue
                data.setdefault((who, kind), []).append((t, v))
    except UnicodeDecodeError:
        raise RecordingError(f"{p}: not a text CSV (not UTF-8); expected {layout}.") from None
    except csv.Error as exc:
        raise RecordingError(f"{p}: not a readable CSV ({_one_line(exc, 80)}); expected {layout}.") from None
    if bad:
        rec.problems.append(f"{bad} rows with an unknown kind, no participant, too few fields or a timestamp/value "
                            "that is not a finite number were skipped.")
    for (who, kind), rows in data.items():
        arr = np.array(sorted(rows), dtype=float)
        rate = 0.0 if kind == "rr" else _rate(arr[:, 0])
        xml = _stream_xml(kind, f"{who} {KIND_TYPES[kind]}", who, f"csv-{who}-{kind}", rate, _CSV_UNITS[kind])
        rec.streams.append(RecordedStream(describe(xml), arr[:, 0], arr[:, 1:2], xml))
    if not rec.streams:
        raise RecordingError(f"{p}: no usable rows" + (f" ({bad} skipped)" if bad else "") + f"; expected {layout}.")
    return rec
