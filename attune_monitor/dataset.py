"""A tidy dataset out of many analyses: long-format tables a statistician loads in one line (no Qt, no pandas).

``attune analyze DIR --dataset OUT`` writes four tables into the folder OUT,
one row per observation, every recording's rows stacked:

``windows``
    one row per pair, modality and synchrony window: the synchrony, its chance
    level and whether the pair was *armed* (measurably in tune) then;
``episodes``
    one row per possible rupture (the ``episodes`` of the ``attune.analysis/1``
    document, plus when each was flagged);
``person_phases``
    one row per person and marker-delimited phase (recordings with markers):
    mean heart rate and skin conductance, the shares of the phase each arousal
    state held;
``sessions``
    one row per recording: duration, people, streams, coverage per modality,
    how many episodes and markers, and whether it could be analysed.

Parquet (pyarrow) when importable, else CSV (the csv module); ``docs/dataset.md``
lists every column with its unit. Times are seconds since the recording's
earliest timestamp, as in the analysis JSON. Column names, types, units and
meanings live in :data:`COLUMNS` (the documentation is checked against it).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

__all__ = ["COLUMNS", "TABLES", "FORMATS", "tables_from_analysis", "session_row", "failed_session_row",
           "write_dataset", "resolve_format"]

#: Table names, in the order they are written.
TABLES = ("windows", "episodes", "person_phases", "sessions")
#: ``--dataset-format`` choices.
FORMATS = ("auto", "parquet", "csv")
#: Label of the phase before a recording's first marker.
START_PHASE = "(start)"

#: Per table: ``(column, type, unit, meaning)``; type one of ``str``, ``float``, ``int``, ``bool``.
COLUMNS = {
    "windows": (
        ("recording", "str", "", "the recording as given on the command line (file or folder path)"),
        ("pair", "str", "", "the pair, 'A-B' (participant ids in the analysis' order)"),
        ("person_a", "str", "", "first participant of the pair"),
        ("person_b", "str", "", "second participant of the pair"),
        ("modality", "str", "", "'hr' (windowed Pearson r of heart rate) or 'eda' (phasic skin-conductance "
                                "synchrony)"),
        ("t_s", "float", "s", "the window's time: its last sample, seconds since the recording's earliest timestamp"),
        ("synchrony", "float", "r", "the pair's synchrony in this window (empty: no value, e.g. a signal lost)"),
        ("chance", "float", "r", "the time-shifted-partner chance level of that synchrony"),
        ("armed", "bool", "", "the pair was measurably in tune at this time (a rupture could be flagged)"),
    ),
    "episodes": (
        ("recording", "str", "", "the recording"),
        ("episode", "int", "", "number of the episode within its recording (1, 2, ... in the JSON's order)"),
        ("pair", "str", "", "the pair, 'A-B'"),
        ("person_a", "str", "", "first participant of the pair"),
        ("person_b", "str", "", "second participant of the pair"),
        ("people", "str", "", "who was disconnecting ('; '-separated)"),
        ("onset_s", "float", "s", "estimated onset of the drop"),
        ("flagged_s", "float", "s", "when the live monitor would have shown the prompt"),
        ("nadir_s", "float", "s", "deepest point of the drop"),
        ("offset_s", "float", "s", "when it ended (repaired, closed, or the recording's end); empty: still open"),
        ("repaired", "bool", "", "synchrony came back (repair)"),
        ("time_to_repair_s", "float", "s", "onset to repair; empty when not repaired"),
        ("depth", "float", "", "how far the synchrony dropped, in units of its baseline excess over chance"),
        ("modalities", "str", "", "the signals that carried the drop ('; '-separated: hr, eda)"),
        ("confidence", "float", "", "0..1, more when both signals dropped and the drop was deep"),
        ("outcome", "str", "", "repaired, unrepaired, interrupted (a shared event), open or session_end"),
        ("context", "str", "", "each person's arousal trend at the flag, 'P1: rising; P2: steady'"),
    ),
    "person_phases": (
        ("recording", "str", "", "the recording"),
        ("participant", "str", "", "the person"),
        ("phase", "int", "", "0 before the first marker, then 1, 2, ... one per marker"),
        ("label", "str", "", "the text of the marker that opened the phase ('(start)' for phase 0)"),
        ("marker_stream", "str", "", "the stream the marker came from (empty for phase 0)"),
        ("start_s", "float", "s", "phase start"),
        ("end_s", "float", "s", "phase end (the next marker, or the recording's end)"),
        ("hr_mean_bpm", "float", "bpm", "mean heart rate over the phase's valid samples (empty: none)"),
        ("hr_coverage", "float", "0..1", "share of the phase with a heart-rate value"),
        ("eda_mean_us", "float", "µS", "mean skin conductance over the phase's valid samples (empty: none)"),
        ("eda_coverage", "float", "0..1", "share of the phase with a skin-conductance value"),
        ("arousal_unknown", "float", "0..1", "share of the phase's seconds with the arousal baseline still "
                                             "being learned (or no signal)"),
        ("arousal_with_group", "float", "0..1", "share of the phase's seconds with arousal 'with the group'"),
        ("arousal_climbing", "float", "0..1", "share of the phase's seconds 'moving away: climbing'"),
        ("arousal_flattening", "float", "0..1", "share of the phase's seconds 'moving away: flattening'"),
    ),
    "sessions": (
        ("recording", "str", "", "the recording"),
        ("status", "str", "", "'ok', or 'error' when it could not be analysed (see 'problem')"),
        ("problem", "str", "", "why it could not be analysed (empty when ok)"),
        ("duration_s", "float", "s", "analysed duration"),
        ("n_people", "int", "", "participants"),
        ("people", "str", "", "participant ids ('; '-separated)"),
        ("n_streams", "int", "", "streams used"),
        ("streams", "str", "", "the streams (devices) per person, 'P1: P1 H10 RR, P1 E4 EDA; P2: ...'"),
        ("n_pairs", "int", "", "pairs"),
        ("hr_coverage", "float", "0..1", "share of the session's heart-rate windows with a value (mean over "
                                         "pairs; empty: no heart signal)"),
        ("eda_coverage", "float", "0..1", "the same for skin conductance"),
        ("n_episodes", "int", "", "possible ruptures flagged"),
        ("n_markers", "int", "", "recorded markers (the facilitator's and other apps')"),
        ("armed_fraction", "float", "0..1", "mean over pairs of the share of the session measurably in tune"),
    ),
}

_AROUSAL_COLUMNS = ("arousal_unknown", "arousal_with_group", "arousal_climbing", "arousal_flattening")


def _f(x) -> float | None:
    """A finite float, or None (missing)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _empty(table: str) -> dict:
    return {name: [] for name, *_ in COLUMNS[table] if name != "recording"}


def _armed_at(changes, times) -> np.ndarray:
    """Whether a pair was armed at each of ``times`` (session s), from its ``(t, state)`` changes in time order."""
    from attune_monitor.dsp.detector import UNARMED_STATES

    times = np.asarray(times, dtype=float)
    if not changes:
        return np.zeros(times.shape, bool)
    ct = np.array([t for t, _ in changes], dtype=float)
    armed = np.array([s not in UNARMED_STATES for _, s in changes])
    idx = np.searchsorted(ct, times, side="right") - 1
    return np.where(idx >= 0, armed[np.clip(idx, 0, None)], False)


def tables_from_analysis(analysis, doc: dict, time_offset: float = 0.0, flagged_s=()) -> dict:
    """The rows one recording adds to each table (columns as lists, without ``recording``).

    Parameters
    ----------
    analysis : attune_monitor.ui.runner.Analysis
        The recording's analysis (times in session seconds).
    doc : dict
        Its ``attune.analysis/1`` document (times in file seconds).
    time_offset : float
        File time minus session time (the document's ``time_offset``).
    flagged_s : sequence of float
        When each of ``doc["episodes"]`` was flagged (file time).

    Returns
    -------
    tables : dict
        ``table -> {column -> list}`` for :data:`TABLES`.
    """
    out = {t: _empty(t) for t in TABLES}
    pairs = [tuple(p) for p in analysis.pairs]
    by_pair: dict = {p: [] for p in pairs}
    for t, pair, state in getattr(analysis, "state_changes", []):
        by_pair.setdefault(tuple(pair), []).append((float(t), state))

    w = out["windows"]
    for m in analysis.modalities:
        s = analysis.sync.get(m, {})
        if "t" not in s:
            continue
        t = np.asarray(s["t"], dtype=float)
        r = np.asarray(s["sync"], dtype=float).reshape(len(pairs), -1)
        ch = np.asarray(s.get("chance", np.full_like(r, np.nan)), dtype=float).reshape(len(pairs), -1)
        for p, pair in enumerate(pairs):
            armed = _armed_at(by_pair.get(pair, []), t)
            n = t.size
            w["pair"] += [f"{pair[0]}-{pair[1]}"] * n
            w["person_a"] += [pair[0]] * n
            w["person_b"] += [pair[1]] * n
            w["modality"] += [m] * n
            w["t_s"] += (t + time_offset).tolist()
            w["synchrony"] += [None if not math.isfinite(x) else x for x in r[p].tolist()]
            w["chance"] += [None if not math.isfinite(x) else x for x in ch[p].tolist()]
            w["armed"] += armed.tolist()

    e = out["episodes"]
    flagged = list(flagged_s) + [None] * (len(doc["episodes"]) - len(flagged_s))
    for k, (ep, fl) in enumerate(zip(doc["episodes"], flagged), 1):
        a, b = ep["pair"]
        e["episode"].append(k)
        e["pair"].append(f"{a}-{b}")
        e["person_a"].append(a)
        e["person_b"].append(b)
        e["people"].append("; ".join(ep["people"]))
        e["onset_s"].append(_f(ep["onset_s"]))
        e["flagged_s"].append(_f(fl))
        e["nadir_s"].append(_f(ep["nadir_s"]))
        e["offset_s"].append(_f(ep["offset_s"]))
        e["repaired"].append(bool(ep["repaired"]))
        e["time_to_repair_s"].append(_f(ep["time_to_repair_s"]))
        e["depth"].append(_f(ep["depth"]))
        e["modalities"].append("; ".join(ep["modalities"]))
        e["confidence"].append(_f(ep["confidence"]))
        e["outcome"].append(ep["outcome"])
        e["context"].append("; ".join(f"{who}: {trend}" for who, trend in ep["context"].items()))

    markers = sorted(getattr(analysis, "markers", []) or [], key=lambda x: x[0])
    if markers:
        _person_phases(out["person_phases"], analysis, markers, time_offset)
    return out


def _person_phases(pp: dict, analysis, markers, time_offset: float) -> None:
    """Rows of ``person_phases``: phases split at every marker inside the recording (session times)."""
    end = float(analysis.duration_s)
    inside = [(float(t), name, text) for t, name, text in markers if 0.0 < float(t) < end]
    bounds = [(0.0, START_PHASE, "")] + [(t, text, name) for t, name, text in inside]
    fs = float(analysis.fs)
    at = np.asarray(analysis.arousal_t, dtype=float)
    states = np.asarray(analysis.arousal_state)
    for k, (start, label, stream) in enumerate(bounds):
        stop = bounds[k + 1][0] if k + 1 < len(bounds) else end
        for i, person in enumerate(analysis.participants):
            pp["participant"].append(person)
            pp["phase"].append(k)
            pp["label"].append(str(label))
            pp["marker_stream"].append(str(stream))
            pp["start_s"].append(start + time_offset)
            pp["end_s"].append(stop + time_offset)
            for m, mean_col, cov_col in (("hr", "hr_mean_bpm", "hr_coverage"), ("eda", "eda_mean_us", "eda_coverage")):
                g = analysis.grid.get(m)
                if g is None or not np.asarray(g).size:
                    pp[mean_col].append(None)
                    pp[cov_col].append(None)
                    continue
                g = np.asarray(g, dtype=float)
                t = np.arange(g.shape[1]) / fs
                sel = g[i, (t >= start) & (t < stop)]
                ok = np.isfinite(sel)
                pp[mean_col].append(float(sel[ok].mean()) if ok.any() else None)
                pp[cov_col].append(float(ok.mean()) if sel.size else None)
            sel = (at >= start) & (at < stop)
            codes = states[i, sel] if states.ndim == 2 and states.shape[0] > i else np.zeros(0)
            for code, col in enumerate(_AROUSAL_COLUMNS):
                pp[col].append(float((codes == code).mean()) if codes.size else None)


def session_row(doc: dict, n_markers: int = 0) -> dict:
    """The ``sessions`` row of one analysed recording (without ``recording``), from its analysis document."""
    people = [p["id"] for p in doc["participants"]]
    streams = [s for p in doc["participants"] for s in p["streams"]]

    def coverage(m):
        xs = [x["coverage"] for x in doc["pairs"] if x["modality"] == m]
        return float(np.mean(xs)) if xs else None

    armed = [a["armed_fraction"] for a in doc.get("attunement", [])]
    return {
        "status": "ok", "problem": "", "duration_s": _f(doc["duration_s"]), "n_people": len(people),
        "people": "; ".join(people), "n_streams": len(streams),
        "streams": "; ".join(f"{p['id']}: {', '.join(p['streams'])}" for p in doc["participants"]),
        "n_pairs": len({tuple(x["pair"]) for x in doc["pairs"]}), "hr_coverage": coverage("hr"),
        "eda_coverage": coverage("eda"), "n_episodes": len(doc["episodes"]), "n_markers": int(n_markers),
        "armed_fraction": float(np.mean(armed)) if armed else None,
    }


def failed_session_row(message: str) -> dict:
    """The ``sessions`` row of a recording that could not be analysed."""
    row = {name: None for name, *_ in COLUMNS["sessions"] if name != "recording"}
    row.update(status="error", problem=str(message))
    return row


# -- writing -----------------------------------------------------------------------------------------------------
def resolve_format(fmt: str = "auto") -> str:
    """``"parquet"`` or ``"csv"``: ``auto`` is Parquet when pyarrow can be imported.

    Raises
    ------
    ValueError
        ``fmt`` is not one of :data:`FORMATS`, or Parquet was asked for without pyarrow.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Invalid value for '--dataset-format': expected one of {', '.join(FORMATS)}, but got "
                         f"{fmt!r}.")
    if fmt == "csv":
        return "csv"
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        if fmt == "parquet":
            raise ValueError("--dataset-format parquet needs pyarrow, which is not installed: pip install "
                             "'attune-monitor[dataset]' (or use --dataset-format csv).") from None
        return "csv"
    return "parquet"


def _stack(table: str, parts) -> dict:
    """One table's columns over recordings: ``parts`` is ``[(recording, {column -> list}), ...]``."""
    cols = {name: [] for name, *_ in COLUMNS[table]}
    for recording, rows in parts:
        n = len(next(iter(rows.values()))) if rows else 0
        cols["recording"] += [str(recording)] * n
        for name in cols:
            if name != "recording":
                cols[name] += list(rows.get(name, [None] * n))
    return cols


def write_dataset(out, recordings, fmt: str = "auto") -> list[Path]:
    """Write the four tables of :data:`TABLES` into the folder ``out``.

    Parameters
    ----------
    out : str | Path
        Folder (created, mode 0700); existing tables are replaced (atomically, each file mode 0600).
    recordings : list of (str, dict)
        ``(recording, tables)`` per recording, ``tables`` as :func:`tables_from_analysis` gives them with a
        ``sessions`` entry of one row (:func:`session_row` / :func:`failed_session_row`, values as lists).
    fmt : {"auto", "parquet", "csv"}

    Returns
    -------
    paths : list of Path
        The files written, in :data:`TABLES` order.
    """
    fmt = resolve_format(fmt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    for table in TABLES:
        cols = _stack(table, [(rec, tabs.get(table, {})) for rec, tabs in recordings])
        dest = out / f"{table}.{fmt}"
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        try:
            (_write_parquet if fmt == "parquet" else _write_csv)(table, cols, tmp)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
        written.append(dest)
    return written


def _write_parquet(table: str, cols: dict, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"str": pa.string(), "float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}
    fields, arrays = [], []
    for name, kind, unit, meaning in COLUMNS[table]:
        meta = {b"unit": unit.encode(), b"description": meaning.encode()}
        fields.append(pa.field(name, types[kind], nullable=True, metadata=meta))
        values = cols[name]
        if kind == "float":
            values = [_f(v) for v in values]
        arrays.append(pa.array(values, type=types[kind]))
    schema = pa.schema(fields, metadata={b"attune.table": table.encode()})
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def _cell(value, kind: str) -> str:
    if value is None:
        return ""
    if kind == "float":
        v = _f(value)
        return "" if v is None else repr(v)
    if kind == "bool":
        return "True" if value else "False"
    return str(value)


def _write_csv(table: str, cols: dict, path: Path) -> None:
    spec = COLUMNS[table]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow([name for name, *_ in spec])
        n = len(cols["recording"])
        for k in range(n):
            wr.writerow([_cell(cols[name][k], kind) for name, kind, *_ in spec])
