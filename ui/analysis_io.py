"""The ``attune.analysis/1`` JSON document: build, validate, read, write, summarise.

``attune analyze --json OUT`` writes one document per recording. Every time is
in seconds since the earliest timestamp in the recording (file); ``null``
stands for "not available". The schema, as JSON Schema (draft 2020-12 subset),
is :data:`ANALYSIS_SCHEMA`; in words::

    {"schema": "attune.analysis/1", "recording": str, "duration_s": float,
     "participants": [{"id": str, "streams": [str]}],
     "pairs": [{"pair": [str, str], "modality": "hr"|"eda"|"combined", "mean_sync": float|null,
                "ssi": float|null, "coverage": float}],
     "episodes": [{"kind": "rupture", "pair": [str, str], "people": [str], "onset_s": float,
                   "nadir_s": float, "offset_s": float|null, "repaired": bool,
                   "time_to_repair_s": float|null, "depth": float, "modalities": [str],
                   "confidence": float, "context": {str: "rising"|"falling"|"steady"},
                   "outcome": "open"|"repaired"|"unrepaired"|"interrupted"|"session_end"}],
     "attunement": [{"pair": [str, str], "armed_s": float, "armed_fraction": float,
                     "armed_spans": [[float, float]], "out_of_tune_spans": [[float, float]],
                     "above_chance": {modality: {"excess": float|null, "se": float|null}},
                     "verdict": "in tune at times"|"not measurably in tune"}],
     "signal_loss": [{"participant": str, "modality": str, "onset_s": float, "offset_s": float|null,
                      "reason": str}]}

Per pair and modality (``pairs``):

* ``mean_sync`` — mean of the windowed synchrony (Pearson r of each window)
  taken through Fisher z: ``tanh(mean(atanh(r)))``;
* ``ssi`` — single session index ``ln(sum of positive r / sum of |negative r|)``
  over the windows (``null`` when either sum is 0);
* ``coverage`` — share of the session's windows that have a value (0..1);
  windows are missing while a signal is lost and during warm-up.

``modality = "combined"`` (only when both HR and EDA were analysed) is, per
window, the Fisher-z mean of the modalities that have a value in that window.

An *episode* is a possible rupture: a sustained drop of a pair's synchrony
towards chance, a prompt to check in, never a diagnosis. Its ``outcome``:
``repaired``; ``unrepaired`` (synchrony did not come back within the detector's
``lapse_s``: the prompt closed and the pair was out of tune from its onset until
it was measurably in tune again, see ``out_of_tune_spans``); ``interrupted``
(closed by a shared event, a marker or task switch, at which every pair is
re-baselined); ``open`` / ``session_end`` (still open when the recording ended).

Per pair (``attunement``): a rupture can only be flagged while a pair is
*armed*, i.e. its synchrony was measurably above chance over the detector's
arming span (``armed_spans``, ``armed_fraction`` of the session);
``above_chance`` is the whole session's mean synchrony minus chance (Fisher z)
with its standard error, per modality. A pair never armed is "not measurably in
tune": no rupture could be raised for it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from attune_monitor.analysis import sorted_episodes  # the document's episode order (importable here too)
from attune_monitor.dsp.pipeline import mean_fisher, ssi
from attune_monitor.ui.words import depth_number

__all__ = [
    "SCHEMA_ID", "ANALYSIS_SCHEMA", "validate", "combined_sync", "pair_summaries", "attunement_summaries",
    "analysis_to_json", "write_json", "read_json", "clock", "away_words", "episode_line", "summary_text",
    "EPISODE_CSV_COLUMNS", "write_episodes_csv"
]

SCHEMA_ID = "attune.analysis/1"

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR = {"type": "string"}
_PAIR = {"type": "array", "items": _STR, "minItems": 2, "maxItems": 2}
_TREND = {"enum": ["rising", "falling", "steady"]}


def _obj(props: dict) -> dict:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


#: JSON Schema of ``attune.analysis/1`` (every key required, no other keys).
ANALYSIS_SCHEMA = _obj({
    "schema": {"const": SCHEMA_ID},
    "recording": _STR,
    "duration_s": {"type": "number", "minimum": 0},
    "participants": {"type": "array", "items": _obj({"id": _STR, "streams": {"type": "array", "items": _STR}})},
    "pairs": {"type": "array", "items": _obj({
        "pair": _PAIR,
        "modality": {"enum": ["hr", "eda", "combined"]},
        "mean_sync": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
        "ssi": _NUM_OR_NULL,
        "coverage": {"type": "number", "minimum": 0, "maximum": 1},
    })},
    "episodes": {"type": "array", "items": _obj({
        "kind": {"const": "rupture"},
        "pair": _PAIR,
        "people": {"type": "array", "items": _STR},
        "onset_s": _NUM,
        "nadir_s": _NUM,
        "offset_s": _NUM_OR_NULL,
        "repaired": {"type": "boolean"},
        "time_to_repair_s": _NUM_OR_NULL,
        "depth": _NUM,
        "modalities": {"type": "array", "items": _STR},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "context": {"type": "object", "additionalProperties": _TREND},
        "outcome": {"enum": ["open", "repaired", "unrepaired", "interrupted", "session_end"]},
    })},
    "attunement": {"type": "array", "items": _obj({
        "pair": _PAIR,
        "armed_s": {"type": "number", "minimum": 0},
        "armed_fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "armed_spans": {"type": "array", "items": {"type": "array", "items": _NUM}},
        "out_of_tune_spans": {"type": "array", "items": {"type": "array", "items": _NUM}},
        "above_chance": {"type": "object", "additionalProperties": _obj({"excess": _NUM_OR_NULL, "se": _NUM_OR_NULL})},
        "verdict": {"enum": ["in tune at times", "not measurably in tune"]},
    })},
    "signal_loss": {"type": "array", "items": _obj({
        "participant": _STR,
        "modality": _STR,
        "onset_s": _NUM,
        "offset_s": _NUM_OR_NULL,
        "reason": _STR,
    })},
})


# -- validation --------------------------------------------------------------------------------------------------
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # JSON has no NaN/inf: a non-finite float is not a number of this schema
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
}


def validate(doc, schema: dict | None = None, where: str = "$") -> list[str]:
    """Check a JSON value against a JSON Schema (the subset :data:`ANALYSIS_SCHEMA` uses).

    Supports ``type`` (one or a list), ``const``, ``enum``, ``properties``,
    ``required``, ``additionalProperties`` (bool or schema), ``items``,
    ``minItems``, ``maxItems``, ``minimum``, ``maximum``.

    Parameters
    ----------
    doc : object
        A parsed JSON value.
    schema : dict | None
        Default :data:`ANALYSIS_SCHEMA`.
    where : str
        Path of ``doc`` in messages.

    Returns
    -------
    errors : list of str
        One message per violation, each starting with the JSON path; empty when valid.
    """
    schema = ANALYSIS_SCHEMA if schema is None else schema
    errors: list[str] = []
    if "const" in schema and doc != schema["const"]:
        errors.append(f"{where}: expected {schema['const']!r}, but got {doc!r}")
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{where}: expected one of {', '.join(map(repr, schema['enum']))}, but got {doc!r}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](doc) for t in types):
            errors.append(f"{where}: expected {' or '.join(types)}, but got {type(doc).__name__} {doc!r:.60}")
            return errors
    if isinstance(doc, (int, float)) and not isinstance(doc, bool) and doc is not None:
        if "minimum" in schema and doc < schema["minimum"]:
            errors.append(f"{where}: {doc} is below the minimum {schema['minimum']}")
        if "maximum" in schema and doc > schema["maximum"]:
            errors.append(f"{where}: {doc} is above the maximum {schema['maximum']}")
    if isinstance(doc, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in doc:
                errors.append(f"{where}: missing key {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, value in doc.items():
            if key in props:
                errors += validate(value, props[key], f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                errors += validate(value, extra, f"{where}.{key}")
    if isinstance(doc, list):
        if "minItems" in schema and len(doc) < schema["minItems"]:
            errors.append(f"{where}: expected at least {schema['minItems']} items, but got {len(doc)}")
        if "maxItems" in schema and len(doc) > schema["maxItems"]:
            errors.append(f"{where}: expected at most {schema['maxItems']} items, but got {len(doc)}")
        if "items" in schema:
            for i, value in enumerate(doc):
                errors += validate(value, schema["items"], f"{where}[{i}]")
    return errors


# -- building the document -----------------------------------------------------------------------------------
def _num(x, digits: int = 4):
    """A finite float rounded for JSON, or None."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def combined_sync(sync: dict, step_s: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-window Fisher-z mean of the modalities that have a value.

    Parameters
    ----------
    sync : dict
        ``modality -> {"t": (n_win,), "sync": (n_pairs, n_win), ...}``.
    step_s : float
        Window step (s), to align the modalities' window times.

    Returns
    -------
    (t, r) : ndarray (n,), ndarray (n_pairs, n) | None
        ``None`` when fewer than two modalities have windows.
    """
    mods = [m for m in ("hr", "eda") if "t" in sync.get(m, {}) and np.asarray(sync[m]["t"]).size]
    if len(mods) < 2:
        return None
    keys = {m: np.round(np.asarray(sync[m]["t"], dtype=float) / step_s).astype(np.int64) for m in mods}
    allk = np.unique(np.concatenate(list(keys.values())))
    n_pairs = np.asarray(sync[mods[0]]["sync"]).shape[0]
    zsum = np.zeros((n_pairs, allk.size))
    count = np.zeros((n_pairs, allk.size))
    for m in mods:
        r = np.asarray(sync[m]["sync"], dtype=float).reshape(n_pairs, -1)
        idx = np.searchsorted(allk, keys[m])
        z = np.arctanh(np.clip(r, -0.999, 0.999))
        ok = np.isfinite(z)
        np.add.at(zsum, (slice(None), idx), np.where(ok, z, 0.0))
        np.add.at(count, (slice(None), idx), ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.tanh(zsum / count)
    return allk * step_s, r


def pair_summaries(analysis) -> list[dict]:
    """The ``pairs`` records of an :class:`attune_monitor.ui.runner.Analysis` (see the module docstring)."""
    series = {m: (np.asarray(analysis.sync[m]["t"]), np.asarray(analysis.sync[m]["sync"], dtype=float))
              for m in analysis.modalities if "t" in analysis.sync.get(m, {})}
    comb = combined_sync(analysis.sync, analysis.step_s) if len(analysis.modalities) > 1 else None
    if comb is not None:
        series["combined"] = comb
    out = []
    for p, pair in enumerate(analysis.pairs):
        for m in [*analysis.modalities, "combined"]:
            if m == "combined" and len(analysis.modalities) < 2:
                continue
            if m not in series:
                out.append({"pair": list(pair), "modality": m, "mean_sync": None, "ssi": None, "coverage": 0.0})
                continue
            r = series[m][1].reshape(len(analysis.pairs), -1)[p]
            cov = float(np.isfinite(r).mean()) if r.size else 0.0
            mean = float(mean_fisher(r)) if np.isfinite(r).any() else math.nan
            out.append({"pair": list(pair), "modality": m, "mean_sync": _num(mean), "ssi": _num(ssi(r)),
                        "coverage": round(cov, 4)})
    return out


def _spans(changes: list, inside, end: float) -> list[list[float]]:
    """``[[start, end], ...]`` of the times a pair's state (from its state changes) satisfies ``inside``."""
    out, start = [], None
    for t, state in changes:
        if inside(state) and start is None:
            start = t
        elif not inside(state) and start is not None:
            out.append([start, t])
            start = None
    if start is not None:
        out.append([start, end])
    return out


def attunement_summaries(analysis, time_offset: float = 0.0) -> list[dict]:
    """Per pair: when it was armed, when it was out of tune, and its synchrony above chance.

    Per pair: when it was armed (measurably in tune, so a rupture could be flagged), when it was out of tune
    after a long lapse, and its synchrony above chance over the session with the standard error.

    ``excess`` per modality is the mean over valid windows of Fisher z of the synchrony minus Fisher z of its
    chance level, ``se`` the surrogate's spread over the square root of the number of independent windows
    (valid seconds / window length): the same reading the detector arms on, over the whole session.
    """
    from attune_monitor.dsp.detector import UNARMED_STATES

    window_s = float(getattr(analysis, "window_s", 30.0) or 30.0)
    end = float(analysis.duration_s)
    by_pair: dict = {tuple(p): [] for p in analysis.pairs}
    for t, pair, state in getattr(analysis, "state_changes", []):
        by_pair.setdefault(tuple(pair), []).append((t, state))
    out = []
    for p, pair in enumerate(analysis.pairs):
        ch = by_pair.get(tuple(pair), [])
        armed = _spans(ch, lambda s: s not in UNARMED_STATES, end)
        lapsed = _spans(ch, lambda s: s == "out_of_tune", end)
        armed_s = sum(b - a for a, b in armed)
        excess = {}
        for m in analysis.modalities:
            w = analysis.sync.get(m)
            if not w or "chance" not in w:
                continue
            r = np.asarray(w["sync"], dtype=float).reshape(len(analysis.pairs), -1)[p]
            c = np.asarray(w["chance"], dtype=float).reshape(len(analysis.pairs), -1)[p]
            sd = (np.asarray(w["chance_sd"], dtype=float).reshape(len(analysis.pairs), -1)[p] if "chance_sd" in w
                  else np.full_like(r, np.nan))  # no surrogate spread kept: no standard error
            ok = np.isfinite(r) & np.isfinite(c)
            if ok.sum() < 2:
                excess[m] = {"excess": None, "se": None}
                continue
            ex = np.arctanh(np.clip(r[ok], -0.999, 0.999)) - np.arctanh(np.clip(c[ok], -0.999, 0.999))
            sdv = sd[ok & np.isfinite(sd)]
            n_indep = max(1.0, ok.sum() * float(analysis.step_s) / window_s)
            se = (float(np.mean(sdv)) if sdv.size else math.nan) / math.sqrt(n_indep)
            excess[m] = {"excess": _num(float(np.mean(ex))), "se": _num(se)}
        out.append({
            "pair": list(pair),
            "armed_s": round(armed_s, 1),
            "armed_fraction": round(armed_s / end, 4) if end > 0 else 0.0,
            "armed_spans": [[round(a + time_offset, 3), round(b + time_offset, 3)] for a, b in armed],
            "out_of_tune_spans": [[round(a + time_offset, 3), round(b + time_offset, 3)] for a, b in lapsed],
            "above_chance": excess,
            "verdict": "in tune at times" if armed else "not measurably in tune",
        })
    return out


def analysis_to_json(analysis, time_offset: float = 0.0) -> dict:
    """The ``attune.analysis/1`` document of an analysis.

    Parameters
    ----------
    analysis : ui.runner.Analysis
    time_offset : float
        Seconds added to every session time so that times count from the
        earliest timestamp in the file (``analysis.origin - recording.origin``).

    Returns
    -------
    doc : dict
        Valid against :data:`ANALYSIS_SCHEMA`.
    """
    def t(x):
        return None if x is None else round(float(x) + time_offset, 3)

    participants = [{"id": str(p), "streams": [str(s) for s in analysis.streams.get(p, [])]}
                    for p in analysis.participants]
    episodes = []
    for ep in sorted_episodes(analysis.episodes):
        rec = ep.to_json(time_offset)
        depth = _num(rec["depth"], 3)
        rec["depth"] = depth if depth is not None else 0.0
        episodes.append(rec)
    losses = [{"participant": str(x["participant"]), "modality": str(x["modality"]), "onset_s": t(x["onset_s"]),
               "offset_s": t(x.get("offset_s")), "reason": str(x.get("reason", "unknown"))}
              for x in analysis.signal_loss]
    return {
        "schema": SCHEMA_ID,
        "recording": str(analysis.recording),
        "duration_s": round(float(analysis.duration_s) + time_offset, 3),
        "participants": participants,
        "pairs": pair_summaries(analysis),
        "episodes": episodes,
        "attunement": attunement_summaries(analysis, time_offset),
        "signal_loss": losses,
    }


def write_json(doc: dict, path) -> Path:
    """Write a document (checked against the schema first); returns the path."""
    errors = validate(doc)
    if errors:  # a bug in Attune, not bad input: refuse to write a file that breaks the contract
        raise ValueError(f"analysis document does not match {SCHEMA_ID}: {'; '.join(errors[:5])}")
    path = Path(path)
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_json(path) -> dict:
    """Read and validate an ``attune.analysis/1`` file.

    Raises
    ------
    ValueError
        When the file is not JSON or does not match the schema (the message lists the first problems).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc}).") from None
    errors = validate(doc)
    if errors:
        raise ValueError(f"{path}: not an {SCHEMA_ID} document: {'; '.join(errors[:5])}.")
    return doc


# -- text ------------------------------------------------------------------------------------------------------
def clock(seconds: float | None) -> str:
    """Seconds -> ``mm:ss`` (``h:mm:ss`` from one hour); ``"-"`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    sign = "-" if s < 0 else ""
    s = abs(s)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{sec:02d}" if h else f"{sign}{m:02d}:{sec:02d}"


def _fmt(x, spec: str = "+.2f") -> str:
    return "-" if x is None else format(x, spec)


def away_words(away: dict | None) -> str:
    """``{person: "climbing" | "flattening"}`` as ``"P1 flattening"`` (several joined by ``", "``); ``""`` for none."""
    return ", ".join(f"{p} {v}" for p, v in (away or {}).items())


def episode_line(ep: dict, away: dict | None = None) -> str:
    """One readable line about an episode record.

    Parameters
    ----------
    ep : dict
        An ``attune.analysis/1`` episode record.
    away : dict | None
        ``{person: "climbing" | "flattening"}``: whose arousal was moving away from the group before the
        episode was flagged (:meth:`attune_monitor.ui.runner.Analysis.episode_arousal`); said when not empty.
    """
    pair = "-".join(ep["pair"])
    if ep["offset_s"] is None:
        span = f"{clock(ep['onset_s'])} -> (not repaired by the end)"
    elif ep["repaired"]:
        span = f"{clock(ep['onset_s'])} -> {clock(ep['offset_s'])} (repaired after {ep['time_to_repair_s']:.0f} s)"
    elif ep.get("outcome") == "unrepaired":
        span = (f"{clock(ep['onset_s'])} -> {clock(ep['offset_s'])} (not repaired: prompt closed, "
                f"out of tune since {clock(ep['onset_s'])})")
    elif ep.get("outcome") == "interrupted":
        span = f"{clock(ep['onset_s'])} -> {clock(ep['offset_s'])} (closed at a shared event: re-baselined)"
    else:
        span = f"{clock(ep['onset_s'])} -> {clock(ep['offset_s'])}"
    who = "" if sorted(ep["people"]) == sorted(ep["pair"]) else f", disconnecting: {', '.join(ep['people'])}"
    ctx = ", ".join(f"{p} {c}" for p, c in ep["context"].items() if c != "steady")
    ctx = f"; arousal: {ctx}" if ctx else ""
    moving = away_words(away)
    moving = f"; moving away before the flag: {moving}" if moving else ""
    return (f"{pair}  {span}, deepest {clock(ep['nadir_s'])}, depth {depth_number(ep['depth'])}, "
            f"{'+'.join(ep['modalities'])}, confidence {ep['confidence']:.2f}{who}{ctx}{moving}")


def summary_text(doc: dict, problems=(), notes=(), max_losses: int = 8, away=None) -> str:
    """A readable multi-line summary of an ``attune.analysis/1`` document.

    Parameters
    ----------
    doc : dict
    problems : sequence of str
        What could not be read from the file.
    notes : sequence of str
        Choices made (which stream was used for whom).
    max_losses : int
        At most this many signal-loss periods are listed (the longest), then a total per person.
    away : sequence of dict | None
        Per episode of ``doc`` (same order): whose arousal was moving away before the flag
        (:meth:`attune_monitor.ui.runner.Analysis.episode_arousal`); not in the document (its schema is fixed).
    """
    lines = [f"{doc['recording']}  ({clock(doc['duration_s'])}, {len(doc['participants'])} participants)"]
    for p in doc["participants"]:
        lines.append(f"  {p['id']}: {', '.join(p['streams'])}")
    for n in notes:
        lines.append(f"  note: {n}")
    for pr in problems:
        lines.append(f"  in the file: {pr}")
    lines.append(f"  {'pair':<16} {'modality':<9} {'mean sync':>9} {'SSI':>6} {'coverage':>8}")
    for r in doc["pairs"]:
        lines.append(f"  {'-'.join(r['pair']):<16} {r['modality']:<9} {_fmt(r['mean_sync']):>9} "
                     f"{_fmt(r['ssi']):>6} {r['coverage']:>8.0%}")
    names = {"hr": "heart", "eda": "skin"}
    if doc.get("attunement"):
        lines.append("  attunement (a rupture can only be flagged while a pair is measurably in tune):")
    for a in doc.get("attunement", []):
        ev = ", ".join(f"{names.get(m, m)} {x['excess']:+.2f} \u00b1 {x['se']:.2f}"
                       for m, x in a["above_chance"].items() if x["excess"] is not None and x["se"] is not None)
        frac = a["armed_fraction"]
        share = f"{frac:.0%}" if frac >= 0.01 else "under 1 %"
        state = f"in tune {share} of the session" if a["armed_spans"] else "not measurably in tune"
        lapses = "".join(f"; out of tune {clock(x)}-{clock(y)}" for x, y in a["out_of_tune_spans"])
        lines.append(f"    {'-'.join(a['pair']):<16} {state}{lapses}" + (f" (above chance: {ev})" if ev else ""))
    eps = doc["episodes"]
    lines.append(f"  possible ruptures: {len(eps)}" + (" (prompts to check in, not diagnoses)" if eps else ""))
    away = list(away) if away is not None else [None] * len(eps)
    for i, (ep, aw) in enumerate(zip(eps, away), 1):
        lines.append(f"    #{i} {episode_line(ep, aw)}")
    if doc["signal_loss"]:
        lines.append(f"  signal loss: {len(doc['signal_loss'])} periods (not counted as ruptures)")
        losses = doc["signal_loss"]
        shown = losses if len(losses) <= max_losses else sorted(
            losses, key=lambda x: -((x["offset_s"] if x["offset_s"] is not None else doc["duration_s"]) - x["onset_s"])
        )[:max_losses]
        for x in sorted(shown, key=lambda x: x["onset_s"]):
            end = "end" if x["offset_s"] is None else clock(x["offset_s"])
            lines.append(f"    {x['participant']} {x['modality']} {clock(x['onset_s'])} -> {end}: {x['reason']}")
        if len(losses) > len(shown):
            total = {}
            for x in losses:
                key = f"{x['participant']} {x['modality']}"
                total[key] = total.get(key, 0.0) + ((x["offset_s"] if x["offset_s"] is not None else doc["duration_s"])
                                                    - x["onset_s"])
            lines.append(f"    ... the {len(shown)} longest shown; {len(losses) - len(shown)} more (all in "
                         "--json/--report);"
                         " total lost: " + ", ".join(f"{k} {clock(v)}" for k, v in total.items()))
    return "\n".join(lines)


EPISODE_CSV_COLUMNS = ("number", "pair", "people", "onset_s", "onset", "nadir_s", "offset_s", "offset", "repaired",
                       "time_to_repair_s", "depth", "modalities", "confidence", "context", "moving_away")


def write_episodes_csv(doc: dict, path, away=None) -> Path:
    """Write the episodes of a document as CSV (one row each; lists joined with ``;``).

    Parameters
    ----------
    doc : dict
        An ``attune.analysis/1`` document.
    path : path-like
    away : sequence of dict | None
        Per episode of ``doc`` (same order), ``{person: "climbing" | "flattening"}``: whose arousal was moving
        away from the group before it was flagged (:meth:`attune_monitor.ui.runner.Analysis.episode_arousal`). Column
        ``moving_away``: e.g. ``P1 flattening`` (several joined with ``;``), empty when nobody was (or unknown).
    """
    path = Path(path)
    away = list(away) if away is not None else [None] * len(doc["episodes"])
    if len(away) != len(doc["episodes"]):
        raise ValueError(f"Invalid value for 'away': expected one entry per episode ({len(doc['episodes'])}), "
                         f"but got {len(away)}.")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(EPISODE_CSV_COLUMNS)
        for i, (ep, aw) in enumerate(zip(doc["episodes"], away), 1):
            w.writerow([i, "-".join(ep["pair"]), ";".join(ep["people"]), ep["onset_s"], clock(ep["onset_s"]),
                        ep["nadir_s"], "" if ep["offset_s"] is None else ep["offset_s"], clock(ep["offset_s"]),
                        ep["repaired"], "" if ep["time_to_repair_s"] is None else ep["time_to_repair_s"],
                        ep["depth"], ";".join(ep["modalities"]), ep["confidence"],
                        ";".join(f"{k}={v}" for k, v in ep["context"].items()),
                        ";".join(f"{p} {v}" for p, v in (aw or {}).items())])
    return path
