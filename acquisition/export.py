"""Export an analysed session as EDF+ (edfio), FIF (MNE) or tidy CSV tables.

The exported signals are the **common analysis grid** (``fs`` Hz, session time
0 = the pipeline's origin) that :func:`attune_monitor.ui.runner.analyze_recording` produces:

==================  ===========  =================  ===============  ==========================================
channel             MNE type     FIF value (unit)   EDF value (dim)  what
==================  ===========  =================  ===============  ==========================================
``P1 HR``           ``misc``     bpm (``NA``)       bpm (``bpm``)    heart rate; MNE has no heart-rate type or
                                                                     unit, so it is ``misc`` with no FIFF unit,
                                                                     never volts: 67.8 bpm reads back as 67.8
``P1 EDA``          ``gsr``      siemens (``S``)    µS (``uS``)      skin conductance
``P1-P2 hr``        ``misc``     r (``NA``)         r (empty)        windowed synchrony (Pearson r, no unit) of
                                                                     the pair, held from each window's end
                                                                     until the next one
==================  ===========  =================  ===============  ==========================================

EDF labels carry MNE's type prefix (``MISC P1 HR``, ``GSR P1 EDA``, ``MISC P1-P2 hr``; at most 16 characters,
so long participant ids become ``P1``, ``P2`` ... with a note).

**Start time.** The session's wall-clock start (of grid sample 0), to the nearest second, is written as the
EDF start date/time (UTC, as MNE writes and reads it: EDF has no time-zone field; whole seconds because
EDF readers disagree on EDF+'s sub-second start, and the XDF header has none) and as FIF ``meas_date``.
It comes from, in this order (:func:`session_start`):

1. the XDF file header's ``<datetime>`` (LabRecorder writes it when it opens the file), moved by the time
   from the file's first sample to the session's: exact to the few seconds between opening the file and
   the first sample;
2. the recording's own timestamps when they are Unix time (Empatica E4 exports, CSV with Unix timestamps);
3. the file's modification time minus the time from the session's start to the file's last sample (the
   file was last written at its last sample): an estimate, and said so;
4. otherwise it is unknown: one warning line, and the EDF/FIF carry no start date (EDF's anonymised
   ``X``/``01.01.85``, FIF ``meas_date`` None).

**Missing values** are never written as a number a signal can have. FIF and CSV keep NaN (CSV: an empty
cell). EDF cannot store NaN: a missing sample is written as the **digital minimum** (-32768), and each
channel's *physical minimum* in the header is set to the value it then reads as, one no real sample can
have: -1 bpm, -1 µS, r = -2 (or 1 below the channel's lowest value, should that be lower). Any EDF reader
therefore returns exactly the header's physical minimum for a missing sample; :func:`read_exported` turns
those back into NaN, and every gap is also annotated ``BAD_no_data <channel>`` (so MNE leaves it out of
epochs). The tail of the last 1-s EDF data record, past the session's end, is missing too (``BAD_ACQ_SKIP``).

Episodes, repairs, signal-loss periods (``BAD_signal_loss ...``) and the recording's markers become
annotations (EDF+ TAL, FIF :class:`mne.Annotations`, ``annotations.csv``).

CSV (a folder): ``grid.csv`` (session_s + every channel above in natural units: bpm, µS, r), ``episodes.csv``,
``annotations.csv`` and one tidy table per recorded stream (``stream-<name>.csv``: timestamp, session_s, one
column per channel); ``start.txt`` gives the start time and where it came from.

Every file is written under a temporary name with mode 0600 (like recordings: these are people's
physiological data) and renamed when complete.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import logging
import math
import os
import re
import struct
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import marker_words

__all__ = [
    "FORMATS", "EDF_LABEL_MAX", "EXPORT_MODE", "EDF_DIGITAL", "EDF_YEARS", "ChannelKind", "CHANNEL_KINDS",
    "held_on_grid", "grid_channels", "session_annotations", "marker_description", "xdf_header_datetime",
    "session_start", "to_raw", "build_edf", "private_file", "export_session", "read_exported", "export_csv"
]

logger = logging.getLogger(__name__)

FORMATS = ("edf", "fif", "csv")

#: EDF signal labels are at most 16 characters (type prefix included).
EDF_LABEL_MAX = 16

#: File mode of every exported file (as recordings: only the owner reads people's physiology).
EXPORT_MODE = 0o600

#: EDF's 16-bit digital range; the minimum stands for "missing" (see the module docstring).
EDF_DIGITAL = (-32768, 32767)

#: EDF can date recordings from 1985 to 2084 (two-digit years).
EDF_YEARS = (1985, 2084)


@dataclass(frozen=True)
class ChannelKind:
    """How one kind of grid channel is exported.

    Attributes
    ----------
    label : str
        Channel name suffix (``P1 HR``).
    mne_type : str
        MNE channel type.
    unit : str
        Natural unit (grid values, CSV header, EDF physical dimension; ``""``: dimensionless).
    fif_scale : float
        FIF value = natural value * ``fif_scale`` (MNE's SI units where MNE has one).
    missing : float
        EDF physical value of a missing sample (below anything the quantity can be).
    """

    label: str
    mne_type: str
    unit: str
    fif_scale: float
    missing: float


#: Grid modality -> channel kind; ``"sync"`` for the pairs' synchrony.
CHANNEL_KINDS = {
    "hr": ChannelKind("HR", "misc", "bpm", 1.0, -1.0),
    "eda": ChannelKind("EDA", "gsr", "uS", 1e-6, -1.0),
    "sync": ChannelKind("", "misc", "", 1.0, -2.0),
}


def _episode_get(ep, key, default=None):
    return ep.get(key, default) if isinstance(ep, dict) else getattr(ep, key, default)


def held_on_grid(t_win: np.ndarray, values: np.ndarray, n: int, fs: float) -> np.ndarray:
    """Sample-and-hold window values onto the grid (causal: a window counts from its end on).

    Parameters
    ----------
    t_win : ndarray, shape (n_windows,)
        Session time of each window's end (s), increasing.
    values : ndarray, shape (n_rows, n_windows)
    n : int
        Grid length.
    fs : float
        Grid rate (Hz).

    Returns
    -------
    held : ndarray, shape (n_rows, n)
        NaN before the first window.
    """
    t_win = np.asarray(t_win, dtype=float).reshape(-1)
    values = np.asarray(values, dtype=float)
    n_rows = values.shape[0] if values.ndim == 2 else (1 if t_win.size else 0)
    out = np.full((n_rows, n), np.nan)
    if t_win.size == 0 or n == 0:
        return out
    values = values.reshape(-1, t_win.size)
    t_grid = np.arange(n) / fs
    idx = np.searchsorted(t_win, t_grid + 1e-9, side="right") - 1
    ok = idx >= 0
    out[:, ok] = values[:, idx[ok]]
    return out


def grid_channels(analysis) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """The grid as channels.

    Returns
    -------
    names : list of str
    kinds : list of str
        Keys of :data:`CHANNEL_KINDS` (``"hr"``, ``"eda"``, ``"sync"``).
    data : ndarray, shape (n_channels, n_times)
        Natural units (bpm, µS, r); NaN where missing.
    units : list of str
        Natural units (``"r"`` for synchrony in CSV headers).
    """
    names, kinds, rows, units = [], [], [], []
    n = max((np.asarray(g).shape[1] for g in analysis.grid.values() if np.ndim(g) == 2), default=0)
    for m in analysis.modalities:
        kind = CHANNEL_KINDS[m]
        g = np.asarray(analysis.grid.get(m, np.zeros((len(analysis.participants), 0))), dtype=float)
        for i, p in enumerate(analysis.participants):
            names.append(f"{p} {kind.label}")
            kinds.append(m)
            row = np.full(n, np.nan)
            if g.ndim == 2 and i < g.shape[0]:
                row[: g.shape[1]] = g[i]
            rows.append(row)
            units.append(kind.unit)
    for m in analysis.modalities:
        s = analysis.sync.get(m)
        if not s or "t" not in s:
            continue
        held = held_on_grid(s["t"], s["sync"], n, analysis.fs)
        for k, (a, b) in enumerate(analysis.pairs):
            names.append(f"{a}-{b} {m}")
            kinds.append("sync")
            rows.append(held[k] if k < held.shape[0] else np.full(n, np.nan))
            units.append("r")
    data = np.vstack(rows) if rows else np.zeros((0, n))
    return names, kinds, data, units


def session_annotations(analysis, recording=None) -> list[tuple[float, float, str]]:
    """Episodes, repairs, signal loss and recorded markers as ``(onset_s, duration_s, description)``."""
    out = []
    end = float(analysis.duration_s)
    for ep in analysis.episodes:
        a, b = _episode_get(ep, "pair")
        onset = float(_episode_get(ep, "onset_s"))
        off = _episode_get(ep, "offset_s")
        mods = "+".join(_episode_get(ep, "modalities") or [])
        dur = (float(off) if off is not None else end) - onset
        out.append((onset, max(0.0, dur), f"possible rupture {a}-{b} {mods}".strip()))
        if _episode_get(ep, "repaired") and off is not None:
            out.append((float(off), 0.0, f"repair {a}-{b}"))
    for loss in analysis.signal_loss:
        onset = float(loss["onset_s"])
        off = loss.get("offset_s")
        dur = (float(off) if off is not None else end) - onset
        out.append((onset, max(0.0, dur), f"BAD_signal_loss {loss['participant']} {loss['modality']}"))
    if recording is not None:
        for t, _, text in recording.event_markers():  # not the live detector's events: the episodes above are ours
            out.append((t - float(analysis.origin), 0.0, marker_description(text)))
    out.sort(key=lambda x: (x[0], x[2]))
    return out


def marker_description(text: str) -> str:
    """A recorded marker as an annotation.

    Attune's JSON markers in words, other markers as they are (:func:`attune_monitor.acquisition.files.marker_words`).
    """
    return f"marker {marker_words(text)}"


def _missing_spans(bad: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` sample index ranges where ``bad`` is true."""
    edges = np.flatnonzero(np.diff(np.r_[0, bad.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


# -- the session's wall-clock start ------------------------------------------------------------------------------
def xdf_header_datetime(path) -> dt.datetime | None:
    """The ``<datetime>`` of an XDF file header (LabRecorder writes it when it opens the file), or None.

    Reads only the first chunk (the FileHeader). Accepts ``2025-04-28T10:26:37+0200`` (LabRecorder) and ISO
    8601 with ``+02:00`` or ``Z``; a time without an offset is taken as UTC.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"XDF:":
                return None
            nbytes = fh.read(1)
            if not nbytes or nbytes[0] not in (1, 4, 8):
                return None
            fmt = {1: "<B", 4: "<I", 8: "<Q"}[nbytes[0]]
            raw = fh.read(nbytes[0])
            if len(raw) != nbytes[0]:
                return None
            length = struct.unpack(fmt, raw)[0]
            if not 2 <= length <= 1 << 20:
                return None
            tag = struct.unpack("<H", fh.read(2) or b"\0\0")[0]
            if tag != 1:
                return None
            content = fh.read(length - 2)
        root = ET.fromstring(content.decode("utf-8", errors="replace"))
    except (OSError, ET.ParseError, struct.error, ValueError):
        return None
    text = (root.findtext("datetime") or "").strip()
    if not text:
        return None
    text = re.sub(r"Z$", "+00:00", text)
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)  # +0200 -> +02:00
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def _plausible(when: dt.datetime | None) -> bool:
    return when is not None and EDF_YEARS[0] <= when.year <= EDF_YEARS[1]


def _looks_like_unix_time(t: float) -> bool:
    """Timestamps of E4 exports and CSV are Unix time; LSL's clock (time since boot) is far below 1985."""
    return math.isfinite(t) and 473385600.0 <= t <= time.time() + 86400.0  # 1985-01-01 .. tomorrow


def session_start(recording, origin: float) -> tuple[dt.datetime | None, str]:
    """The wall-clock time (UTC) of session time 0, and how it was found (see the module docstring).

    Parameters
    ----------
    recording : acquisition.files.Recording | None
    origin : float
        Session time 0 on the recording's clock (``Analysis.origin``).

    Returns
    -------
    start : datetime | None
        Timezone-aware (UTC); None when it cannot be known.
    how : str
        Where it came from, in words (for a note line).
    """
    if recording is None:
        return None, "no recording to take it from"
    path = Path(getattr(recording, "path", ""))
    try:
        first = float(recording.origin)
        last = float(recording.end)
    except Exception:  # noqa: BLE001 - a recording without samples
        return None, "the recording has no samples"
    if path.is_file() and path.suffix.lower() in (".xdf", ".xdfz"):
        hdr = xdf_header_datetime(path)
        if hdr is not None:
            start = hdr + dt.timedelta(seconds=float(origin) - first)
            if _plausible(start):
                return start, ("from the XDF header's datetime (when the recorder opened the file; the first "
                               "sample follows within seconds)")
    if _looks_like_unix_time(float(origin)):
        return (dt.datetime.fromtimestamp(float(origin), tz=dt.UTC),
                "from the recording's timestamps (Unix time, as in E4 exports)")
    try:
        mtime = path.stat().st_mtime if path.is_file() else None
    except OSError:
        mtime = None
    if mtime is not None and math.isfinite(last):
        start = dt.datetime.fromtimestamp(mtime - (last - float(origin)), tz=dt.UTC)
        if _plausible(start):
            return start, ("estimated from the file's modification time minus the time from the session's "
                           "start to its last sample (the file has no wall-clock start)")
    return None, "the recording has no wall-clock time"


# -- MNE (FIF) ----------------------------------------------------------------------------------------------------
def to_raw(analysis, recording=None, *, start: dt.datetime | None = None):
    """The analysis grid as an :class:`mne.io.RawArray` with annotations (the FIF export).

    Parameters
    ----------
    analysis : ui.runner.Analysis
    recording : acquisition.files.Recording | None
        For its markers.
    start : datetime | None
        ``meas_date`` (UTC); None: unknown.

    Returns
    -------
    raw : mne.io.RawArray
        Shape (n_channels, n_times): heart rate in bpm (type ``misc``, no FIFF unit), EDA in siemens
        (``gsr``), synchrony r (``misc``); NaN where missing.
    """
    import mne

    names, kinds, data, _units = grid_channels(analysis)
    scaled = data * np.array([CHANNEL_KINDS[k].fif_scale for k in kinds])[:, None] if kinds else data
    types = [CHANNEL_KINDS[k].mne_type for k in kinds]
    info = mne.create_info(names, float(analysis.fs), types, verbose="error")
    units = {k: (CHANNEL_KINDS[k].unit or "r, Pearson correlation, dimensionless") for k in CHANNEL_KINDS}
    info["description"] = (
        "Attune export. Units: HR channels bpm (type misc, no FIFF unit); EDA channels siemens (gsr); "
        f"pair channels (e.g. 'P1-P2 hr') synchrony {units['sync']}. NaN = missing.")[:255]
    raw = mne.io.RawArray(scaled, info, verbose="error")
    if start is not None:
        raw.set_meas_date(start.astimezone(dt.UTC))
    anns = session_annotations(analysis, recording)
    if anns:
        on, du, de = zip(*sorted(anns))
        raw.set_annotations(mne.Annotations(list(on), list(du), list(de), orig_time=raw.info["meas_date"]))
    return raw


# -- EDF+ ---------------------------------------------------------------------------------------------------------
def _edf_labels(names: list[str], kinds: list[str], participants) -> tuple[list[str], list[str]]:
    """``TYPE name`` labels within 16 characters (participants renamed P1, P2 ... when needed), and notes."""
    prefix = [CHANNEL_KINDS[k].mne_type.upper() for k in kinds]
    labels = [f"{t} {n}" for t, n in zip(prefix, names)]
    if max((len(x) for x in labels), default=0) <= EDF_LABEL_MAX:
        return labels, []
    short = {p: f"P{i + 1}" for i, p in enumerate(participants)}
    out = []
    for t, name in zip(prefix, names):
        new = name
        for p in sorted(short, key=len, reverse=True):
            new = re.sub(rf"(^|-)({re.escape(p)})(?=[ -])", rf"\g<1>{short[p]}", new)
        out.append(f"{t} {new}"[:EDF_LABEL_MAX])
    note = ("EDF labels are at most 16 characters: participants renamed "
            + ", ".join(f"{p} -> {s}" for p, s in short.items()))
    return out, [note]


def _edf_text(text: str) -> str:
    """Annotation text without the characters EDF+ TALs use as separators."""
    return re.sub(r"[\x00-\x1f]+", " ", str(text)).strip() or "-"


def _edf_physical_range(row: np.ndarray, missing: float) -> tuple[float, float, float]:
    """``(physical_min, physical_max, missing value)`` of one channel: the minimum is the missing value."""
    finite = row[np.isfinite(row)]
    lo = float(finite.min()) if finite.size else missing + 1.0
    hi = float(finite.max()) if finite.size else missing + 1.0
    if lo <= missing:  # a value at or below the usual sentinel: put the sentinel 1 unit below the data
        missing = math.floor(lo) - 1.0
    hi = max(hi, missing + 1e-3)
    # 8 characters in the header: round the maximum up on a grid it can be written on
    digits = max(0, 6 - len(str(int(abs(hi)))))
    hi = math.ceil(hi * 10**digits) / 10**digits
    return missing, hi, missing


def build_edf(analysis, recording=None, start: dt.datetime | None = None):
    """The EDF+ file of a session as an :class:`edfio.Edf` (see the module docstring).

    Returns
    -------
    edf : edfio.Edf
    notes : list of str
    """
    import edfio

    names, kinds, data, _units = grid_channels(analysis)
    fs = float(analysis.fs)
    if float(fs).is_integer():
        record_s, per_record = 1.0, int(fs)
    else:
        record_s, per_record = 1.0 / fs, 1
    n = data.shape[1]
    n_records = max(1, math.ceil(n / per_record))
    n_pad = n_records * per_record - n
    labels, notes = _edf_labels(names, kinds, analysis.participants)
    signals, anns = [], []
    for i, (label, kind) in enumerate(zip(labels, kinds)):
        ck = CHANNEL_KINDS[kind]
        row = np.r_[data[i], np.full(n_pad, np.nan)]
        pmin, pmax, missing = _edf_physical_range(row, ck.missing)
        bad = ~np.isfinite(row)
        # digital values by hand, so that a missing sample is exactly the digital minimum and no real one is
        d_lo, d_hi = EDF_DIGITAL
        frac = (np.where(bad, missing, row) - pmin) / (pmax - pmin)
        dig = np.clip(np.rint(d_lo + frac * (d_hi - d_lo)), d_lo + 1, d_hi).astype(np.int16)
        dig[bad] = d_lo
        sig = edfio.EdfSignal.from_digital(dig, fs, label=label, physical_dimension=ck.unit,
                                           physical_range=(pmin, pmax), digital_range=EDF_DIGITAL)
        signals.append(sig)
        for s, e in _missing_spans(bad[:n]):
            anns.append((s / fs, (e - s) / fs, f"BAD_no_data {names[i]}"))
    if n_pad:
        anns.append((n / fs, n_pad / fs, "BAD_ACQ_SKIP"))
    anns += session_annotations(analysis, recording)
    total = n_records * record_s
    edf_anns = [edfio.EdfAnnotation(max(0.0, min(float(on), total)), float(du) if du > 0 else None, _edf_text(de))
                for on, du, de in sorted(anns)]
    early = sum(1 for on, _, _ in anns if on < 0)
    if early:
        notes.append(f"{early} marker(s) before the session's start are dated at its start in the EDF file")
    startdate = starttime = None
    if start is not None:
        start = start.astimezone(dt.UTC)
        startdate = start.date()
        starttime = start.time().replace(tzinfo=None)
    edf = edfio.Edf(signals, recording=edfio.Recording(startdate=startdate, equipment_code="Attune"),
                    starttime=starttime, data_record_duration=record_s, annotations=edf_anns)
    return edf, notes


# -- writing ------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def private_file(final, suffix: str = ""):
    """A temporary path beside ``final`` (mode 0600) that becomes ``final`` when the block ends without error.

    Yields
    ------
    tmp : Path
        Write the file here; it is chmod 0600 and renamed over ``final`` afterwards, removed on error.
    """
    final = Path(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix + ".part" if not suffix else suffix,
                               dir=final.parent if str(final.parent) else ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, EXPORT_MODE)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def export_session(analysis, recording, fmt: str, out) -> tuple[list[Path], list[str]]:
    """Write an analysed session as EDF+, FIF or CSV (mode 0600).

    Parameters
    ----------
    analysis : ui.runner.Analysis
    recording : acquisition.files.Recording | None
    fmt : {"edf", "fif", "csv"}
    out : str | Path
        A file for EDF/FIF, a folder for CSV (created, mode 0700).

    Returns
    -------
    paths : list of Path
        Files written.
    notes : list of str
        What the user should know: where the start time came from (or that it is unknown), renamed
        channels ...

    Raises
    ------
    ValueError
        Unknown format.
    OSError
        The output cannot be written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Invalid value for 'format': expected one of {', '.join(FORMATS)}, but got {fmt!r}.")
    out = Path(out)
    start, how = session_start(recording, float(analysis.origin))
    if start is not None:  # EDF's resolution (readers disagree on EDF+'s sub-second start); FIF the same
        start = (start + dt.timedelta(microseconds=500_000)).replace(microsecond=0)
    notes = [f"start time {start.isoformat()}, {how}" if start is not None
             else f"warning: start time unknown ({how}); the export carries no start date"]
    if fmt == "csv":
        return export_csv(analysis, recording, out, start=start, how=how), notes
    if fmt == "fif":
        raw = to_raw(analysis, recording, start=start)
        with private_file(out, suffix="_raw.fif.gz" if out.name.endswith(".gz") else "_raw.fif") as tmp:
            raw.save(tmp, overwrite=True, fmt="double", verbose="error")
        return [out], notes
    edf, more = build_edf(analysis, recording, start)
    with private_file(out, suffix=".edf") as tmp:
        with open(tmp, "wb") as fh:
            edf.write(fh)
    return [out], notes + more


def read_exported(path):
    """Read an exported EDF or FIF file back with MNE, with Attune's channel types, units and NaN.

    EDF: MNE's reader knows the ``MISC`` label prefix but not ``GSR``: ``GSR <name>`` channels are renamed and
    typed ``gsr``, and scaled from the file's µS to siemens (as in the FIF); samples at a channel's physical
    minimum (the missing-value code, see the module docstring) become NaN. Heart rate stays in bpm.

    Returns
    -------
    raw : mne.io.Raw
        Preloaded.
    """
    import mne

    path = Path(path)
    if path.suffix.lower() != ".edf":
        return mne.io.read_raw_fif(path, preload=True, verbose="error")
    raw = mne.io.read_raw_edf(path, infer_types=True, preload=True, verbose="error")
    extras = raw._raw_extras[0]
    pmin = np.asarray(extras["physical_min"], dtype=float)
    pmax = np.asarray(extras["physical_max"], dtype=float)
    dmin = np.asarray(extras["digital_min"], dtype=float)
    dmax = np.asarray(extras["digital_max"], dtype=float)
    sel = [i for i, _ in enumerate(raw.ch_names)]  # the annotation channel is not among raw.ch_names' signals
    units = [raw._orig_units.get(n, "") for n in raw.ch_names]
    data = raw._data
    for k in sel:
        step = (pmax[k] - pmin[k]) / (dmax[k] - dmin[k])
        scale = 1e-6 if units[k] in ("uV", "µV") else (1e-3 if units[k] == "mV" else 1.0)  # MNE scaled these
        data[k, data[k] <= (pmin[k] + step / 2) * scale] = np.nan
    gsr = {n: n[4:] for n in raw.ch_names if n.startswith("GSR ")}
    if gsr:
        idx = [raw.ch_names.index(n) for n in gsr]
        data[idx] *= 1e-6  # the file's µS -> siemens, MNE's unit for gsr
        raw.rename_channels(gsr)
        raw.set_channel_types({n: "gsr" for n in gsr.values()}, verbose="error")
    misc = {n: n[5:] for n in raw.ch_names if n.startswith("MISC ")}
    if misc:
        raw.rename_channels(misc)
    for ch in raw.info["chs"]:
        if ch["kind"] == mne.io.constants.FIFF.FIFFV_MISC_CH:
            ch["unit"] = mne.io.constants.FIFF.FIFF_UNIT_NONE
    return raw


# -- CSV ------------------------------------------------------------------------------------------------------
def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "stream"


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, (float, np.floating)):
        return "" if not math.isfinite(x) else repr(float(x))
    return str(x)


@contextlib.contextmanager
def _csv_writer(path: Path):
    with private_file(path, suffix=".part") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            yield csv.writer(fh)


def export_csv(analysis, recording, folder, *, start: dt.datetime | None = None, how: str = "") -> list[Path]:
    """Tidy CSV tables in ``folder`` (see the module docstring); returns the files written (mode 0600)."""
    folder = Path(folder)
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
    paths = []
    names, _kinds, data, units = grid_channels(analysis)
    p = folder / "grid.csv"
    with _csv_writer(p) as w:
        w.writerow(["session_s"] + [f"{n} [{u}]" for n, u in zip(names, units)])
        t = np.arange(data.shape[1]) / analysis.fs
        for k in range(data.shape[1]):
            w.writerow([repr(float(t[k]))] + [_fmt(float(v)) for v in data[:, k]])
    paths.append(p)
    p = folder / "episodes.csv"
    cols = ["id", "pair", "people", "onset_s", "flagged_s", "nadir_s", "offset_s", "repaired", "time_to_repair_s",
            "depth", "modalities", "confidence"]
    with _csv_writer(p) as w:
        w.writerow(cols)
        for ep in analysis.episodes:
            row = []
            for c in cols:
                v = _episode_get(ep, c)
                if isinstance(v, (list, tuple)):
                    v = ";".join(map(str, v))
                row.append(_fmt(v))
            w.writerow(row)
    paths.append(p)
    p = folder / "annotations.csv"
    with _csv_writer(p) as w:
        w.writerow(["onset_s", "duration_s", "description"])
        for on, du, de in session_annotations(analysis, recording):
            w.writerow([repr(float(on)), repr(float(du)), de])
    paths.append(p)
    p = folder / "start.txt"
    with private_file(p, suffix=".part") as tmp:
        tmp.write_text((f"{start.isoformat()}\n{how}\n" if start is not None
                        else f"unknown\n{how}\n"), encoding="utf-8")
    paths.append(p)
    origin = float(analysis.origin)
    used = set()
    for s in recording.streams if recording is not None else []:
        d = s.descriptor
        base = _safe_name(d.name)
        name, k = base, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        p = folder / f"stream-{name}.csv"
        labels = [c.get("label") if isinstance(c, dict) else getattr(c, "label", None) for c in (d.channels or [])]
        ts = np.asarray(s.timestamps, dtype=float).reshape(-1)
        with _csv_writer(p) as w:
            if d.channel_format == "string":
                w.writerow(["timestamp", "session_s", "value"])
                for t, v in zip(ts, s.values):
                    w.writerow([repr(float(t)), repr(float(t) - origin), v[0] if isinstance(v, (list, tuple)) else v])
            else:
                vals = np.asarray(s.values, dtype=float) if len(ts) else np.zeros((0, max(1, d.channel_count or 1)))
                vals = vals.reshape(len(ts), -1) if vals.size else np.zeros((len(ts), max(1, d.channel_count or 1)))
                head = [labels[i] if i < len(labels) and labels[i] else f"ch{i}" for i in range(vals.shape[1])]
                w.writerow(["timestamp", "session_s"] + head)
                for t, row in zip(ts, vals.tolist()):
                    w.writerow([repr(float(t)), repr(float(t) - origin)] + [_fmt(float(x)) for x in row])
        paths.append(p)
    return paths
