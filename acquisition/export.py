"""Export an analysed session through MNE (EDF+, FIF) or as tidy CSV tables.

The exported signals are the **common analysis grid** (``fs`` Hz, session time
0 = the recording's first sample) that :func:`ui.runner.analyze_recording`
produces, as an :class:`mne.io.RawArray`:

==================  ============  ==========================================================
channel             MNE type      values
==================  ============  ==========================================================
``P1 HR``           ``ecg``       heart rate; MNE has no heart-rate type, so the value is
                                  stored as 1 µV per bpm (``bpm * 1e-6`` V): 72 bpm shows as
                                  72 µV in MNE and in the EDF file
``P1 EDA``          ``gsr``       skin conductance in siemens (MNE's SI unit; 1 µS = 1e-6)
``P1-P2 hr``        ``misc``      windowed synchrony (Pearson r) of the pair, held from each
                                  window's end until the next one
==================  ============  ==========================================================

Episodes, repairs, signal-loss periods and the recording's markers become
:class:`mne.Annotations` (signal loss as ``BAD_signal_loss ...``, so MNE leaves
those spans out of epoch-based analyses). EDF cannot store NaN: missing values
are written as 0 and marked ``BAD_no_data <channel>``; FIF keeps NaN.

CSV (a folder): ``grid.csv`` (session_s + every channel above in natural
units: bpm, µS, r), ``episodes.csv``, ``annotations.csv`` and one tidy table per
recorded stream (``stream-<name>.csv``: timestamp, session_s, one column per
channel).
"""

from __future__ import annotations

import csv
import logging
import math
import re
from pathlib import Path

import numpy as np

from .files import marker_words

logger = logging.getLogger(__name__)

FORMATS = ("edf", "fif", "csv")

#: MNE channel type and stored scale (natural unit -> MNE value) per grid modality.
MODALITY_CHANNELS = {"hr": ("HR", "ecg", 1e-6), "eda": ("EDA", "gsr", 1e-6)}

#: EDF signal labels are at most 16 characters (type prefix included).
EDF_LABEL_MAX = 16


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
    values = np.asarray(values, dtype=float).reshape(-1, len(t_win))
    out = np.full((values.shape[0], n), np.nan)
    if len(t_win) == 0 or n == 0:
        return out
    t_grid = np.arange(n) / fs
    idx = np.searchsorted(np.asarray(t_win, dtype=float), t_grid + 1e-9, side="right") - 1
    ok = idx >= 0
    out[:, ok] = values[:, idx[ok]]
    return out


def grid_channels(analysis) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """The grid as channels.

    Returns
    -------
    names : list of str
    types : list of str
        MNE channel types.
    data : ndarray, shape (n_channels, n_times)
        Natural units (bpm, µS, r); NaN where missing.
    units : list of str
    """
    names, types, rows, units = [], [], [], []
    n = max((np.asarray(g).shape[1] for g in analysis.grid.values()), default=0)
    for m in analysis.modalities:
        label, typ, _ = MODALITY_CHANNELS[m]
        g = np.asarray(analysis.grid[m], dtype=float)
        for i, p in enumerate(analysis.participants):
            names.append(f"{p} {label}")
            types.append(typ)
            row = np.full(n, np.nan)
            row[: g.shape[1]] = g[i]
            rows.append(row)
            units.append("bpm" if m == "hr" else "uS")
    for m in analysis.modalities:
        s = analysis.sync.get(m)
        if not s:
            continue
        held = held_on_grid(s["t"], s["sync"], n, analysis.fs)
        for k, (a, b) in enumerate(analysis.pairs):
            names.append(f"{a}-{b} {m}")
            types.append("misc")
            rows.append(held[k])
            units.append("r")
    data = np.vstack(rows) if rows else np.zeros((0, n))
    return names, types, data, units


def annotations(analysis, recording=None) -> list[tuple[float, float, str]]:
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
    """A recorded marker as an annotation: Attune's JSON markers in words, other markers as they are
    (:func:`acquisition.files.marker_words`)."""
    return f"marker {marker_words(text)}"


def to_raw(analysis, recording=None, *, nan_fill: float | None = None):
    """The analysis grid as an :class:`mne.io.RawArray` with annotations.

    Parameters
    ----------
    analysis : ui.runner.Analysis
    recording : acquisition.files.Recording | None
        For its markers.
    nan_fill : float | None
        Replace NaN by this value (EDF) and annotate the spans ``BAD_no_data <channel>``.

    Returns
    -------
    raw : mne.io.RawArray
        Shape (n_channels, n_times); see the module docstring for units.
    """
    import mne

    names, types, data, _units = grid_channels(analysis)
    scaled = data.copy()
    for i, t in enumerate(types):
        if t in ("ecg", "gsr"):
            scaled[i] *= 1e-6
    anns = annotations(analysis, recording)
    if nan_fill is not None:
        for i, name in enumerate(names):
            bad = ~np.isfinite(scaled[i])
            if bad.any():
                edges = np.flatnonzero(np.diff(np.r_[0, bad.astype(np.int8), 0]))
                for s, e in zip(edges[::2], edges[1::2]):
                    anns.append((s / analysis.fs, (e - s) / analysis.fs, f"BAD_no_data {name}"))
                scaled[i, bad] = nan_fill
    info = mne.create_info(names, float(analysis.fs), types, verbose="error")
    raw = mne.io.RawArray(scaled, info, verbose="error")
    if anns:
        on, du, de = zip(*sorted(anns))
        raw.set_annotations(mne.Annotations(list(on), list(du), list(de), orig_time=None))
    return raw


def _edf_safe(raw, analysis) -> list[str]:
    """Rename channels so that ``TYPE name`` fits EDF's 16 characters; returns notes."""
    longest = max((len(f"{t.upper()} {n}") for n, t in zip(raw.ch_names, raw.get_channel_types())), default=0)
    if longest <= EDF_LABEL_MAX:
        return []
    short = {p: f"P{i + 1}" for i, p in enumerate(analysis.participants)}
    mapping = {}
    for name in raw.ch_names:
        new = name
        for p in sorted(short, key=len, reverse=True):
            new = re.sub(rf"(^|-)({re.escape(p)})(?=[ -])", lambda mo: mo.group(1) + short[p], new)
        mapping[name] = new
    raw.rename_channels(mapping)
    return [f"EDF labels are at most 16 characters: participants renamed "
            + ", ".join(f"{p} -> {s}" for p, s in short.items())]


def export_session(analysis, recording, fmt: str, out) -> tuple[list[Path], list[str]]:
    """Write an analysed session as EDF+, FIF or CSV.

    Parameters
    ----------
    analysis : ui.runner.Analysis
    recording : acquisition.files.Recording
    fmt : {"edf", "fif", "csv"}
    out : str | Path
        A file for EDF/FIF, a folder for CSV (created).

    Returns
    -------
    paths : list of Path
        Files written.
    notes : list of str
        What the user should know (renamed channels ...).

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
    if fmt == "csv":
        return export_csv(analysis, recording, out), []
    import mne

    if fmt == "fif":
        raw = to_raw(analysis, recording)
        raw.save(out, overwrite=True, verbose="error")
        return [out], []
    raw = to_raw(analysis, recording, nan_fill=0.0)
    notes = _edf_safe(raw, analysis)
    mne.export.export_raw(out, raw, fmt="edf", physical_range="channelwise", add_ch_type=True, overwrite=True,
                          verbose="error")
    return [out], notes


def read_exported(path):
    """Read an exported EDF or FIF file back with MNE, with Attune's channel types.

    MNE's EDF reader knows ``ECG``/``MISC`` label prefixes but not ``GSR``:
    ``GSR <name>`` channels are renamed and typed ``gsr`` here.

    Returns
    -------
    raw : mne.io.Raw
    """
    import mne

    path = Path(path)
    if path.suffix.lower() == ".edf":
        raw = mne.io.read_raw_edf(path, infer_types=True, preload=True, verbose="error")
        gsr = {n: n[4:] for n in raw.ch_names if n.startswith("GSR ")}
        if gsr:
            raw.rename_channels(gsr)
            raw.set_channel_types({n: "gsr" for n in gsr.values()}, verbose="error")
        return raw
    return mne.io.read_raw_fif(path, preload=True, verbose="error")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "stream"


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if not math.isfinite(x) else repr(x)
    return str(x)


def export_csv(analysis, recording, folder) -> list[Path]:
    """Tidy CSV tables in ``folder`` (see the module docstring); returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    names, _types, data, units = grid_channels(analysis)
    p = folder / "grid.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["session_s"] + [f"{n} [{u}]" for n, u in zip(names, units)])
        t = np.arange(data.shape[1]) / analysis.fs
        for k in range(data.shape[1]):
            w.writerow([repr(float(t[k]))] + [_fmt(float(v)) for v in data[:, k]])
    paths.append(p)
    p = folder / "episodes.csv"
    cols = ["id", "pair", "people", "onset_s", "flagged_s", "nadir_s", "offset_s", "repaired", "time_to_repair_s",
            "depth", "modalities", "confidence"]
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for ep in analysis.episodes:
            row = []
            for c in cols:
                v = _episode_get(ep, c)
                if isinstance(v, (list, tuple)):
                    v = ";".join(map(str, v))
                row.append(_fmt(float(v)) if isinstance(v, (float, np.floating)) else _fmt(v))
            w.writerow(row)
    paths.append(p)
    p = folder / "annotations.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["onset_s", "duration_s", "description"])
        for on, du, de in annotations(analysis, recording):
            w.writerow([repr(on), repr(du), de])
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
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            if d.channel_format == "string":
                w.writerow(["timestamp", "session_s", "value"])
                for t, v in zip(s.timestamps, s.values):
                    w.writerow([repr(float(t)), repr(float(t) - origin), v[0] if isinstance(v, (list, tuple)) else v])
            else:
                vals = np.asarray(s.values).reshape(len(s.timestamps), -1)
                head = [labels[i] if i < len(labels) and labels[i] else f"ch{i}" for i in range(vals.shape[1])]
                w.writerow(["timestamp", "session_s"] + head)
                for t, row in zip(s.timestamps, vals.tolist()):
                    w.writerow([repr(float(t)), repr(float(t) - origin)] + [_fmt(float(x)) for x in row])
        paths.append(p)
    return paths
