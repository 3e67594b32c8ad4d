"""Scoring possible-rupture detection against ground truth (the library behind ``attune evaluate``).

Every recording ``X.xdf`` (or ``X.csv`` / folder ``X``) in DIR that has a
``X.truth.json`` beside it (as ``attune simulate --out X.xdf --truth
X.truth.json`` writes) is analysed exactly as ``attune analyze`` does, and
its possible-rupture episodes are matched with the scripted ruptures.

Matching (all times in the truth's session seconds)
--------------------------------------------------
An episode **matches** a truth rupture when

* its pair is one of the rupture's ``pairs`` or involves the rupture's
  ``who``, and
* its onset lies in ``[truth onset - 10 s, truth offset + 20 s]``.

When an episode could match several truth ruptures it is given to the one
whose onset is closest to its onset.

* A truth rupture is **detected** when at least one episode matches it.
  ``recall = detected / truth ruptures``.
* An episode is a **true positive** when it is the first episode (by onset)
  matched to its (rupture, pair); further matched episodes of the same
  (rupture, pair) are **duplicates** (one rupture split into several
  prompts). ``precision = true positives / all episodes``: duplicates count
  against precision but are not false alarms.
* An episode that matches no truth rupture is a **false alarm**; false alarms
  per hour are over the total analysed duration.
* A **signal-loss period** (truth confound ``electrode_loss`` or
  ``strap_dropout``) is **mistaken for a rupture** when a false alarm involves
  one of its participants and starts in ``[loss onset - 10 s, loss offset +
  20 s]``. Other confounds (shared stressor, ectopic beats, motion) are
  counted the same way, per kind.
* **Latency** per detected rupture, from its earliest matched episode:
  *detection latency* = when the episode was flagged (the moment the live
  monitor shows it) - truth onset; *onset latency* = the episode's estimated
  onset - truth onset. The issue's target (median <= 20 s) is on the **onset
  latency**; the detection latency is reported beside it (and checked
  against the same 20 s, as a second line): it is what a facilitator
  experiences live, and it is longer (the evidence has to build up).
* **Repair** per detected rupture, from the same earliest-flagged matched
  episode: whether it was shown repaired before the recording ended (a prompt closed as not repaired after a
  long lapse, or at a shared event, is not), and
  its *repair latency* = the episode's reported end (``offset_s``: when
  its drop fell below ``repaired_frac``, dated back by the detector's
  ``repair_delay_s``) - the truth's
  ``repair_s`` (when the scripted coupling was fully back; the rupture's
  ``offset_s`` when the truth has none). Reported, no target.
* **Breakdown**: recall per rupture style (aversive / withdrawn), group
  size and rupture duration (< 45 s, 45-60 s, >= 60 s), and false alarms per
  hour per group size, so a miss can be traced to the kind of session or
  rupture it comes from (printed, and under ``breakdown`` in the JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "EARLY_S", "LATE_S", "SIGNAL_LOSS_KINDS", "ARMED_LABELS", "DURATION_BINS_S", "DURATION_LABELS", "TARGETS",
    "Detection", "FileScore", "score_file", "aggregate", "breakdown", "format_breakdown", "format_metrics",
    "detections_from_result", "armed_spans_from_result", "truth_problem", "find_cases", "duration_label",
]

#: Tolerances of the matching window around a truth rupture (s).
EARLY_S = 10.0
LATE_S = 20.0
SIGNAL_LOSS_KINDS = ("electrode_loss", "strap_dropout")
#: Edges (s) of the rupture-duration bins of the recall breakdown.
DURATION_BINS_S = (45.0, 60.0)

TARGETS = {"f1": 0.9, "false_alarms_per_hour": 1.0, "signal_loss_flagged": 0, "median_onset_latency_s": 20.0,
           "median_detection_latency_s": 20.0}


@dataclass
class Detection:
    """One episode, in truth time (s)."""

    pair: tuple
    people: tuple
    onset_s: float
    flagged_s: float
    offset_s: float | None = None  # shown repaired (or closed) at (None: still open at the end)
    repaired: bool | None = None   # False: closed without a repair (a lapse, a shared event); None: by offset_s


@dataclass
class FileScore:
    """Matching result of one recording (see the module docstring for the definitions)."""

    name: str
    duration_s: float
    n_truth: int = 0
    detected: list = field(default_factory=list)          # per truth rupture: bool
    detection_latency_s: list = field(default_factory=list)  # per detected truth rupture
    onset_latency_s: list = field(default_factory=list)
    repair_latency_s: list = field(default_factory=list)    # per detected truth rupture shown repaired
    unrepaired: int = 0                                      # detected truth ruptures never shown repaired
    n_episodes: int = 0
    true_positives: int = 0
    duplicates: int = 0
    false_alarms: list = field(default_factory=list)       # Detection
    signal_loss_periods: int = 0
    signal_loss_flagged: int = 0
    confounds_flagged: dict = field(default_factory=dict)  # kind -> [flagged, total]
    truth_pairs: int = 0
    truth_pairs_detected: int = 0
    group_size: int = 0
    rupture_kinds: list = field(default_factory=list)      # per truth rupture: {"style":, "duration":} labels

    def to_dict(self) -> dict:
        """The session's scores as plain JSON types (counts, latencies, false-alarm times)."""
        return {
            "name": self.name, "duration_s": self.duration_s, "truth_ruptures": self.n_truth,
            "detected": sum(self.detected), "episodes": self.n_episodes, "true_positives": self.true_positives,
            "duplicates": self.duplicates, "false_alarms": len(self.false_alarms),
            "false_alarm_times_s": [round(d.onset_s, 1) for d in self.false_alarms],
            "detection_latency_s": [round(x, 2) for x in self.detection_latency_s],
            "onset_latency_s": [round(x, 2) for x in self.onset_latency_s],
            "repair_latency_s": [round(x, 2) for x in self.repair_latency_s], "unrepaired": self.unrepaired,
            "signal_loss_periods": self.signal_loss_periods, "signal_loss_flagged": self.signal_loss_flagged,
            "confounds_flagged": self.confounds_flagged,
            "truth_pairs": self.truth_pairs, "truth_pairs_detected": self.truth_pairs_detected,
            "group_size": self.group_size, "rupture_kinds": self.rupture_kinds,
        }


def _involves(det: Detection, rupture: dict) -> bool:
    pairs = {frozenset(p) for p in rupture.get("pairs", [])}
    return frozenset(det.pair) in pairs or rupture.get("who") in det.pair


#: The ``armed`` axis of :func:`breakdown`: a pair of the rupture armed at its onset, or none.
ARMED_LABELS = ("armed at the onset", "not measurably in tune at the onset")


def _armed_at(rupture: dict, armed_spans: dict) -> bool:
    """Whether one of the rupture's pairs (its ``pairs``, else every pair of its ``who``) was armed at its onset."""
    t = float(rupture["onset_s"])
    pairs = [frozenset(p) for p in rupture.get("pairs", [])] or [k for k in armed_spans if rupture.get("who") in k]
    return any(a <= t <= b for p in pairs for a, b in armed_spans.get(p, ()))


def _in_window(t: float, onset: float, offset: float) -> bool:
    return onset - EARLY_S <= t <= offset + LATE_S


def duration_label(seconds: float) -> str:
    """The bin of a rupture's duration in the recall breakdown, e.g. ``"< 45 s"``, ``"45-60 s"``, ``">= 60 s"``."""
    lo, hi = DURATION_BINS_S
    return f"< {lo:g} s" if seconds < lo else (f"{lo:g}-{hi:g} s" if seconds < hi else f">= {hi:g} s")


#: The duration bins' labels, shortest first (the order of the breakdown).
DURATION_LABELS = tuple(duration_label(x) for x in (0.0, *DURATION_BINS_S))


def score_file(detections, truth: dict, name: str = "", duration_s: float | None = None,
               armed_spans: dict | None = None) -> FileScore:
    """Match one recording's episodes with its truth.

    Parameters
    ----------
    detections : list of Detection
        Episodes in truth time.
    truth : dict
        ``attune.truth/1``: ``ruptures`` (``onset_s``, ``offset_s``, ``who``, ``pairs``), ``confounds``
        (``kind``, ``participants``, ``onset_s``, ``offset_s``), ``duration_s``.
    name : str
    duration_s : float | None
        Analysed duration (default: the truth's).
    armed_spans : dict | None
        ``frozenset(pair) -> [(start, end), ...]`` in truth time: when each pair was measurably in tune (armed).
        Given, each truth rupture is labelled by whether one of its pairs was armed at its onset (a rupture needs
        an attunement to lapse from), for :func:`breakdown`'s ``armed`` axis.

    Returns
    -------
    score : FileScore
    """
    ruptures = list(truth.get("ruptures", []))
    dur = float(duration_s if duration_s is not None else truth.get("duration_s", 0.0))
    sc = FileScore(name, dur, n_truth=len(ruptures), n_episodes=len(detections),
                   group_size=len(truth.get("participants", [])))
    dets = sorted(detections, key=lambda d: (d.onset_s, d.pair))
    matched: dict[int, list] = {k: [] for k in range(len(ruptures))}
    seen_pairs: set = set()
    for d in dets:
        cands = [k for k, r in enumerate(ruptures)
                 if _involves(d, r) and _in_window(d.onset_s, float(r["onset_s"]), float(r["offset_s"]))]
        if not cands:
            sc.false_alarms.append(d)
            continue
        k = min(cands, key=lambda k: abs(d.onset_s - float(ruptures[k]["onset_s"])))
        matched[k].append(d)
        key = (k, frozenset(d.pair))
        if key in seen_pairs:
            sc.duplicates += 1
        else:
            seen_pairs.add(key)
            sc.true_positives += 1
    for k, r in enumerate(ruptures):
        ms = matched[k]
        sc.detected.append(bool(ms))
        kinds = {"style": str(r.get("style") or "unknown"),
                 "duration": duration_label(float(r["offset_s"]) - float(r["onset_s"]))}
        if armed_spans is not None:
            kinds["armed"] = ARMED_LABELS[not _armed_at(r, armed_spans)]
        sc.rupture_kinds.append(kinds)
        sc.truth_pairs += len(r.get("pairs", [])) or 1
        sc.truth_pairs_detected += len({frozenset(d.pair) for d in ms})
        if ms:
            first = min(ms, key=lambda d: d.flagged_s)
            sc.detection_latency_s.append(first.flagged_s - float(r["onset_s"]))
            sc.onset_latency_s.append(min(d.onset_s for d in ms) - float(r["onset_s"]))
            if first.offset_s is None or first.repaired is False:
                sc.unrepaired += 1
            else:
                sc.repair_latency_s.append(first.offset_s - float(r.get("repair_s", r["offset_s"])))
    for c in truth.get("confounds", []):
        people = set(c.get("participants", []))
        hit = any((people & set(d.pair)) and _in_window(d.onset_s, float(c["onset_s"]), float(c["offset_s"]))
                  for d in sc.false_alarms)
        rec = sc.confounds_flagged.setdefault(c["kind"], [0, 0])
        rec[0] += int(bool(hit))
        rec[1] += 1
        if c["kind"] in SIGNAL_LOSS_KINDS:
            sc.signal_loss_periods += 1
            sc.signal_loss_flagged += int(bool(hit))
    return sc


def _median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def aggregate(scores) -> dict:
    """Overall metrics over files (micro-averaged: counts are summed first).

    Returns
    -------
    metrics : dict
        ``precision``, ``recall``, ``f1`` (None when undefined), ``median_detection_latency_s``,
        ``median_onset_latency_s``, ``false_alarms_per_hour``, ``signal_loss_flagged`` /
        ``signal_loss_periods``, counts, and ``meets_targets``.
    """
    n_truth = sum(s.n_truth for s in scores)
    detected = sum(sum(s.detected) for s in scores)
    n_eps = sum(s.n_episodes for s in scores)
    tp = sum(s.true_positives for s in scores)
    fa = sum(len(s.false_alarms) for s in scores)
    hours = sum(s.duration_s for s in scores) / 3600.0
    precision = tp / n_eps if n_eps else (1.0 if n_truth == 0 else None)
    recall = detected / n_truth if n_truth else None
    f1 = (2 * precision * recall / (precision + recall) if precision is not None and recall is not None
          and precision + recall > 0 else (0.0 if precision is not None and recall is not None else None))
    det_lat = [x for s in scores for x in s.detection_latency_s]
    rep_lat = [x for s in scores for x in s.repair_latency_s]
    on_lat = [x for s in scores for x in s.onset_latency_s]
    conf: dict = {}
    for s in scores:
        for k, (h, t) in s.confounds_flagged.items():
            c = conf.setdefault(k, [0, 0])
            c[0] += h
            c[1] += t
    m = {
        "files": len(scores), "hours": round(hours, 3), "truth_ruptures": n_truth, "detected": detected,
        "episodes": n_eps, "true_positives": tp, "duplicates": sum(s.duplicates for s in scores), "false_alarms": fa,
        "precision": precision, "recall": recall, "f1": f1,
        "median_detection_latency_s": _median(det_lat), "median_onset_latency_s": _median(on_lat),
        "max_detection_latency_s": max(det_lat) if det_lat else None,
        "shown_repaired": len(rep_lat), "never_shown_repaired": sum(s.unrepaired for s in scores),
        "median_repair_latency_s": _median(rep_lat),
        "false_alarms_per_hour": fa / hours if hours > 0 else None,
        "signal_loss_periods": sum(s.signal_loss_periods for s in scores),
        "signal_loss_flagged": sum(s.signal_loss_flagged for s in scores),
        "confounds_flagged": conf,
        "truth_pairs": sum(s.truth_pairs for s in scores),
        "truth_pairs_detected": sum(s.truth_pairs_detected for s in scores),
    }
    m["breakdown"] = breakdown(scores)
    m["meets_targets"] = {
        "f1": f1 is not None and f1 >= TARGETS["f1"],
        "false_alarms_per_hour": m["false_alarms_per_hour"] is not None
        and m["false_alarms_per_hour"] <= TARGETS["false_alarms_per_hour"],
        "signal_loss_flagged": m["signal_loss_flagged"] <= TARGETS["signal_loss_flagged"],
        "median_onset_latency_s": m["median_onset_latency_s"] is None
        or m["median_onset_latency_s"] <= TARGETS["median_onset_latency_s"],
        "median_detection_latency_s": m["median_detection_latency_s"] is None
        or m["median_detection_latency_s"] <= TARGETS["median_detection_latency_s"],
    }
    return m


def breakdown(scores) -> dict:
    """Where the detector succeeds and fails.

    Recall per rupture style, group size, duration and (when :func:`score_file` was given the pairs' armed spans)
    whether a pair was measurably in tune at the onset; false alarms per hour per group size.

    Returns
    -------
    breakdown : dict
        ``{"recall": {"style" | "group_size" | "duration" [| "armed"]: {label: [detected, total]}},
        "false_alarms_per_hour": {group_size: [false alarms, hours]}}``; group sizes as ``"2 people"``.
    """
    rec: dict = {"style": {}, "group_size": {}, "duration": {}, "armed": {}}
    fa: dict = {}
    for s in scores:
        size = f"{s.group_size} people"
        for hit, kinds in zip(s.detected, s.rupture_kinds):
            axes = [("style", kinds["style"]), ("group_size", size), ("duration", kinds["duration"])]
            if "armed" in kinds:
                axes.append(("armed", kinds["armed"]))
            for axis, label in axes:
                c = rec[axis].setdefault(label, [0, 0])
                c[0] += int(hit)
                c[1] += 1
        c = fa.setdefault(size, [0, 0.0])
        c[0] += len(s.false_alarms)
        c[1] += s.duration_s / 3600.0
    recall = {"style": dict(sorted(rec["style"].items())), "group_size": dict(sorted(rec["group_size"].items())),
              "duration": {k: rec["duration"][k] for k in DURATION_LABELS if k in rec["duration"]}}
    if rec["armed"]:
        recall["armed"] = {k: rec["armed"][k] for k in ARMED_LABELS if k in rec["armed"]}
    return {"recall": recall, "false_alarms_per_hour": dict(sorted(fa.items()))}


def format_breakdown(b: dict) -> list[str]:
    """Readable lines of :func:`breakdown` (empty when there is nothing to break down)."""
    lines = []
    for axis, title in (("style", "style"), ("group_size", "group size"), ("duration", "duration"),
                        ("armed", "attunement (a rupture needs one to lapse from)")):
        parts = [f"{label} {d}/{t} ({d / t:.2f})" for label, (d, t) in b["recall"].get(axis, {}).items() if t]
        if parts:
            lines.append(f"recall by {title}: " + ", ".join(parts))
    parts = [f"{label} {n / h:.2f}/h ({n} in {h:.2f} h)" for label, (n, h) in b["false_alarms_per_hour"].items()
             if h > 0]
    if parts:
        lines.append("false alarms by group size: " + ", ".join(parts))
    return lines


def detections_from_result(res, truth: dict) -> list:
    """Episodes of an analyze result, in the truth's time.

    ``res`` is a :class:`~attune_monitor.ui.commands.analyze.FileResult` (or anything with ``origin``, ``doc`` and
    ``flagged_s``).
    The truth counts from ``truth["time_origin"]`` (stream time of session 0);
    the analysis document counts from the file's earliest timestamp
    (``res.origin``).
    """
    shift = res.origin - float(truth.get("time_origin", res.origin))
    out = []
    for ep, flagged in zip(res.doc["episodes"], res.flagged_s):
        off = ep.get("offset_s")
        out.append(Detection(tuple(ep["pair"]), tuple(ep["people"]), ep["onset_s"] + shift, flagged + shift,
                             None if off is None else off + shift, repaired=bool(ep.get("repaired", off is not None))))
    return out


def armed_spans_from_result(res, truth: dict) -> dict:
    """``frozenset(pair) -> [(start, end), ...]``: when each pair of an analyze result was armed, in truth time.

    From the analysis document's ``attunement`` (see :func:`detections_from_result` for the times); for
    :func:`score_file`'s ``armed_spans``.
    """
    shift = res.origin - float(truth.get("time_origin", res.origin))
    return {frozenset(a["pair"]): [(x + shift, y + shift) for x, y in a.get("armed_spans", [])]
            for a in res.doc.get("attunement", [])}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def truth_problem(truth) -> str | None:
    """What makes ``truth`` unusable as an ``attune.truth/1`` document, or None when usable.

    What makes ``truth`` unusable as an ``attune.truth/1`` document (the fields :func:`score_file` reads), or
    None when it is usable.
    """
    if not isinstance(truth, dict):
        return f"expected a JSON object, but got {type(truth).__name__}"
    for key in ("duration_s", "time_origin"):
        if key in truth and not _number(truth[key]):
            return f"'{key}' must be a number, but got {truth[key]!r:.40}"
    for key, need in (("ruptures", ("onset_s", "offset_s")), ("confounds", ("kind", "onset_s", "offset_s"))):
        items = truth.get(key, [])
        if not isinstance(items, list):
            return f"'{key}' must be a list, but got {type(items).__name__}"
        for i, r in enumerate(items):
            if not isinstance(r, dict):
                return f"{key}[{i}] must be an object, but got {type(r).__name__}"
            for f in need:
                if f not in r:
                    return f"{key}[{i}] has no '{f}'"
                if f != "kind" and not _number(r[f]):
                    return f"{key}[{i}].{f} must be a number, but got {r[f]!r:.40}"
            if "repair_s" in r and not _number(r["repair_s"]):
                return f"{key}[{i}].repair_s must be a number, but got {r['repair_s']!r:.40}"
            pairs = r.get("pairs", [])
            if not isinstance(pairs, list) or not all(isinstance(p, list) and all(isinstance(x, str) for x in p)
                                                      for p in pairs):
                return f"{key}[{i}].pairs must be a list of [person, person] lists"
            people = r.get("participants", [])
            if not isinstance(people, list) or not all(isinstance(x, str) for x in people):
                return f"{key}[{i}].participants must be a list of names"
            if not isinstance(r.get("who", ""), (str, type(None))) or not isinstance(r.get("kind", ""), str):
                return f"{key}[{i}]: 'who' and 'kind' must be text"
    if not isinstance(truth.get("participants", []), list):
        return "'participants' must be a list"
    return None


def find_cases(folder) -> list[tuple[Path, Path]]:
    """(recording, truth) pairs in a folder: ``X.truth.json`` next to ``X.xdf``, ``X.csv`` or a folder ``X``."""
    folder = Path(folder)
    cases = []
    for truth in sorted(folder.glob("*.truth.json")):
        stem = truth.name[: -len(".truth.json")]
        for cand in (folder / f"{stem}.xdf", folder / f"{stem}.csv", folder / stem):
            if cand.exists():
                cases.append((cand, truth))
                break
    return cases


def _fmt(x, spec=".2f"):
    return "n/a" if x is None else format(x, spec)


def format_metrics(m: dict) -> str:
    """Readable lines of :func:`aggregate`'s metrics."""
    ok = lambda k: "ok" if m["meets_targets"][k] else "MISSED"  # noqa: E731
    conf = ", ".join(f"{k} {h}/{t}" for k, (h, t) in sorted(m["confounds_flagged"].items())) or "none"
    return "\n".join([
        f"files {m['files']}, {m['hours']:.2f} h, truth ruptures {m['truth_ruptures']}, episodes {m['episodes']}",
        f"precision {_fmt(m['precision'])}  recall {_fmt(m['recall'])}  F1 {_fmt(m['f1'])}"
        f"  (target >= {TARGETS['f1']}: {ok('f1')})",
        f"true positives {m['true_positives']}, duplicates {m['duplicates']}, false alarms {m['false_alarms']}"
        f" = {_fmt(m['false_alarms_per_hour'])}/h (target <= {TARGETS['false_alarms_per_hour']:g}: "
        f"{ok('false_alarms_per_hour')})",
        f"median onset latency (estimated onset - truth onset) {_fmt(m['median_onset_latency_s'], '.1f')} s "
        f"(target <= {TARGETS['median_onset_latency_s']:g} s: {ok('median_onset_latency_s')})",
        f"median detection latency (flagged - truth onset, what the live view shows) "
        f"{_fmt(m['median_detection_latency_s'], '.1f')} s (<= {TARGETS['median_detection_latency_s']:g} s: "
        f"{ok('median_detection_latency_s')}); max {_fmt(m['max_detection_latency_s'], '.1f')} s",
        f"signal-loss periods mistaken for ruptures {m['signal_loss_flagged']}/{m['signal_loss_periods']} "
        f"(target 0: {ok('signal_loss_flagged')}); confounds flagged: {conf}",
        f"pairs of truth ruptures flagged {m['truth_pairs_detected']}/{m['truth_pairs']}",
        f"repair: {m['shown_repaired']} of {m['shown_repaired'] + m['never_shown_repaired']} detected ruptures shown "
        f"repaired; median repair latency (shown repaired - truth repair) "
        f"{_fmt(m['median_repair_latency_s'], '.1f')} s",
        *format_breakdown(m.get("breakdown") or breakdown([])),
    ])
