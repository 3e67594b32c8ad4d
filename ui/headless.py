"""The terminal live view: for machines with no display and operators on a server.

:func:`run_headless` drives a :class:`attune_monitor.ui.runner.Runner` and shows, from the
Qt-free :class:`attune_monitor.ui.model.SessionModel`, the people and their signal status
and arousal ("moving away (climbing)" / "moving away (flattening)" / "with
the group" / "learning baseline"), synchrony per pair and modality, each
pair's current state in words (and when its evidence comes from one person's
arousal), and the episodes as they are flagged.

* On a terminal (``out.isatty()``) the view is redrawn in place with ANSI
  escapes, a few times a second.
* Otherwise (CI, logs, ``| tee``) it appends plain lines: one line for every
  episode, repair and message as it happens, and a status block (signal status,
  arousal words, each pair's synchrony and state) only when something it shows
  in words changed (signal status or loss, arousal words, a pair's state or
  arousal note, the episodes) -- at most once every ``interval`` seconds -- plus a
  heartbeat block after ``heartbeat`` seconds without one, so a log shows the
  monitor is alive. Synchrony numbers alone never trigger a block.
* From :data:`COMPACT_PEOPLE` people on (a group of 16 has 120 pairs), both list
  by name only the people whose signals or arousal differ from most others' and
  the pairs that need attention (drifting, a possible rupture, repairing,
  repaired, out of tune), and count the rest in one line
  ("112 other pairs: 100 in tune, 12 not measurably in tune"). Each pair's
  evidence behind "not measurably in tune" is then in the live view's matrix
  and in ``attune analyze --json``.

A flag is a prompt to check in with the people, never a diagnosis.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import time

import numpy as np

from attune_monitor.ui.model import tune_evidence_words
from attune_monitor.ui.words import OUTCOME_WORDS, STATE_WORDS, arming_words

__all__ = [
    "EXIT_SIGINT", "EXIT_SIGTERM", "DISCLAIMER", "has_display", "clock", "current_sync", "signal_status",
    "arousal_words", "pair_arousal_text", "open_losses", "episode_text", "reached_markers", "marker_text", "render",
    "HeadlessView", "run_headless", "COMPACT_PEOPLE", "QUIET_STATES", "is_compact", "most_common", "group_text",
    "pair_rows", "group_text_line", "person_groups"
]

logger = logging.getLogger(__name__)

#: Exit codes of a session stopped by Ctrl-C (SIGINT) or SIGTERM (128 + the signal's number).
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

DISCLAIMER = "A flag is a prompt to check in with the people, not a diagnosis."

_STATUS_WORDS = {"ok": "ok", "noisy": "noisy", "lost": "LOST", "recovered": "recovered", "absent": "-",
                 "connected": "ok", "stale": "stale", "connecting": "connecting"}


#: From this many people the terminal view lists by name only the people and pairs that need attention and
#: counts the rest in one line each: a group of 16 has 120 pairs, of 64 2016, more than a screen holds or a log
#: can carry every few seconds. Smaller groups get every person and pair, as before.
COMPACT_PEOPLE = 6
#: Pair states a compact view counts instead of listing (nothing to look at: learning, no measured attunement,
#: in tune). A quiet pair with a person's arousal moving away is counted too: the arousal line names the person
#: (a 64-person session with ten people's arousal flattening would otherwise list some 600 pairs).
QUIET_STATES = ("calibrating", "not_in_tune", "attuned")


def is_compact(snap) -> bool:
    """Whether the view of ``snap`` is compact (:data:`COMPACT_PEOPLE` people or more)."""
    return len(snap.participants) >= COMPACT_PEOPLE


def most_common(values: dict) -> tuple[str | None, list]:
    """The value most people share and the people who differ.

    Parameters
    ----------
    values : dict
        ``person -> text`` (in the session's order).

    Returns
    -------
    common : str | None
        The most frequent text (the first person's on a tie; None when ``values`` is empty).
    others : list of str
        The people whose text differs, in the session's order.
    """
    counts: dict = {}
    for v in values.values():
        counts[v] = counts.get(v, 0) + 1
    if not counts:
        return None, []
    common = max(counts, key=lambda v: counts[v])  # dicts keep the first-seen order: ties go to the earlier
    return common, [p for p, v in values.items() if v != common]


def group_text(values: dict) -> str:
    """``"P3 hr=LOST eda=ok; the other 15: hr=ok eda=ok"`` (``"all 16: ..."`` when nobody differs)."""
    common, odd = most_common(values)
    if common is None:
        return ""
    rest = len(values) - len(odd)
    return "; ".join([*(f"{p} {values[p]}" for p in odd),
                      f"{'the other' if odd else 'all'} {rest}: {common}"])


def pair_rows(snap, compact: bool | None = None) -> tuple[list[int], str]:
    """The pairs a view lists by name, and the count of the others.

    Parameters
    ----------
    snap : ui.model.Snapshot
    compact : bool | None
        Count the quiet pairs (:data:`QUIET_STATES`); default :func:`is_compact`.

    Returns
    -------
    listed : list of int
        Indices into ``snap.pairs`` to show one by one (every pair when not compact).
    counted : str
        ``"117 other pairs: 110 in tune, 7 not measurably in tune"``, ``"all 120 pairs: in tune"`` (``""`` when
        nothing was counted).
    """
    compact = is_compact(snap) if compact is None else compact
    if not compact:
        return list(range(len(snap.pairs))), ""
    states = {tuple(ps["pair"]): ps.get("state") for ps in snap.pair_states}
    listed, counts = [], {}
    for k, pair in enumerate(snap.pairs):
        st = states.get(tuple(pair))
        if st is None or st in QUIET_STATES:
            words = "waiting for data" if st is None else STATE_WORDS.get(st, str(st))
            counts[words] = counts.get(words, 0) + 1
        else:
            listed.append(k)
    if not counts:
        return listed, ""
    n = sum(counts.values())
    head = f"{n} other pair{'s' if n != 1 else ''}" if listed else f"all {n} pairs"
    if len(counts) == 1:
        return listed, f"{head}: {next(iter(counts))}"
    return listed, head + ": " + ", ".join(f"{c} {w}" for w, c in sorted(counts.items(), key=lambda x: -x[1]))


def has_display() -> bool:
    """True when a GUI can open (the GUI's own check when Qt is importable, else $DISPLAY / platform)."""
    try:
        from attune_monitor.ui.gui.app import has_display as gui_has_display
    except Exception:  # noqa: BLE001 - Qt missing or broken: no GUI
        return False
    return gui_has_display()


def clock(seconds: float | None) -> str:
    """``mm:ss`` (or ``h:mm:ss``) of session seconds; ``--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    s = int(max(0.0, seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


def event_clock(seconds: float | None) -> str:
    """An event's time (an onset, a repair, a marker) as :func:`clock` shows it, but rounded.

    Every other view rounds it, so an episode's onset and the pair's "out of tune since" read the same;
    :func:`clock` truncates (it is the running session clock).
    """
    return clock(None if seconds is None or not math.isfinite(seconds) else round(seconds))


def _num(x) -> str:
    return "   -  " if x is None or not np.isfinite(x) else f"{x:+.2f} "


def current_sync(snap) -> dict:
    """``modality -> (n_pairs,)`` latest finite synchrony of each pair (NaN when none yet)."""
    out = {}
    for m, (_ts, s, _c) in snap.sync.items():
        vals = np.full(len(snap.pairs), np.nan)
        if s.size:
            fin = np.isfinite(s)
            last = s.shape[1] - 1 - np.argmax(fin[:, ::-1], axis=1)  # each row's last finite column
            rows = np.flatnonzero(fin.any(axis=1))
            vals[rows] = s[rows, last[rows]]
        out[m] = vals
    return out


def signal_status(snap) -> dict:
    """``participant -> {modality: word}``.

    The source's status, else (replay) whether the grid has data now
    (:meth:`attune_monitor.ui.model.Snapshot.signal_states`).
    """
    return {p: {m: _STATUS_WORDS.get(s, s) for m, s in d.items()} for p, d in snap.signal_states().items()}


def arousal_words(snap) -> dict:
    """``participant -> words`` of each person's arousal now (``ui.model.AROUSAL_WORDS``)."""
    pa = getattr(snap, "people_arousal", {}) or {}
    return {p: pa.get(p, {}).get("words", "learning baseline") for p in snap.participants}


def pair_arousal_text(snap, pair) -> str:
    """``"; P2's arousal moving away (climbing): the flag comes from it ..."`` for a pair (``""`` when nobody is)."""
    pa = (getattr(snap, "pair_arousal", {}) or {}).get(tuple(pair), {})
    away = pa.get("away") or {}
    if not away:
        return ""
    text = "; " + ", ".join(f"{w}'s arousal moving away ({st})" for w, st in away.items())
    ev = pa.get("evidence")
    if ev == "arousal":
        text += ": the flag comes from it with a dip in synchrony"
    elif ev == "synchrony+arousal":
        text += ": the flag comes from it and synchrony"
    return text


def open_losses(snap) -> list[tuple]:
    """``[(participant, modality, onset_s, reason), ...]`` of the signal losses still going on, oldest first."""
    return sorted(((r["participant"], r["modality"], r["onset_s"], r.get("reason") or "lost")
                   for r in snap.signal_loss if r.get("offset_s") is None), key=lambda x: (x[2], x[0], x[1]))


def episode_text(ep: dict) -> str:
    """One line about an episode dict (:func:`attune_monitor.dsp.detector.episode_dict`)."""
    pair = "-".join(ep["pair"])
    mods = "+".join(ep.get("modalities") or [])
    who = ep.get("people") or []
    lead = f", led by {', '.join(who)}" if who and len(who) == 1 else ""
    if ep.get("repaired") and ep.get("offset_s") is not None:
        tail = f"repaired at {event_clock(ep['offset_s'])} (after {ep['offset_s'] - ep['onset_s']:.0f} s)"
    elif ep.get("open", True):
        tail = "open: check in"
    elif ep.get("outcome") == "unrepaired" and ep.get("offset_s") is not None:
        since, closed = event_clock(ep["onset_s"]), event_clock(ep["offset_s"])
        tail = f"not repaired: out of tune since {since} (prompt closed at {closed})"
    elif ep.get("outcome") == "interrupted" and ep.get("offset_s") is not None:
        tail = f"closed at a shared event at {event_clock(ep['offset_s'])} (re-baselined)"
    else:
        tail = "not repaired"
    label = f" [{ep['label']}]" if ep.get("label") else ""
    ar = ep.get("arousal") or {}
    if ar:
        mods = "+".join([*(ep.get("modalities") or []), *(f"{w}'s arousal {st}" for w, st in ar.items())])
    return (f"#{ep['id']} {event_clock(ep['onset_s'])} possible rupture {pair} ({mods}{lead}), "
            f"confidence {ep.get('confidence', 0):.2f}; {tail}{label}")


def group_text_line(group: dict, participants=None) -> str:
    """One line about a group of episodes (:attr:`attune_monitor.ui.model.Snapshot.groups`, two or more).

    ``"05:24 P3 drifting away — 7 of 7 ties dropped (#1-#7, P1 P2 P4 P5 P6 P7 P8); open: check in"``.
    """
    eps = sorted(group["episodes"], key=lambda e: e["id"])
    person = group["person"]
    others = [p for e in eps for p in e["pair"] if p != person]
    if participants is not None:
        order = {p: k for k, p in enumerate(participants)}
        others.sort(key=lambda p: order.get(p, len(order)))
    ids = [e["id"] for e in eps]
    span = f"#{ids[0]}-#{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) else ", ".join(f"#{i}" for i in ids)
    onset = min(e["onset_s"] for e in eps)
    if group.get("open"):
        tail = "repairing" if group.get("state") == "repairing" else "open: check in"
    else:
        tail = OUTCOME_WORDS.get(group.get("state"), str(group.get("state", "closed")).replace("_", " "))
        ends = [e.get("offset_s") for e in eps if e.get("offset_s") is not None]
        if ends:
            tail += f" by {event_clock(max(ends))}"
    return f"{event_clock(onset)} {group['words']} ({span}, with {' '.join(others)}); {tail}"


def person_groups(snap) -> list[dict]:
    """The episode groups a compact view shows as one line: one person's episodes with two or more of the others."""
    return [g for g in getattr(snap, "groups", None) or () if g.get("person") is not None and len(g["episodes"]) >= 2]


def reached_markers(snap) -> list[dict]:
    """Markers from elsewhere (a replayed recording's, other apps' live) whose time has come, in time order."""
    return sorted((m for m in snap.markers if m.get("external") and m["t"] <= snap.t_now + 1e-9), key=lambda m: m["t"])


def marker_text(m: dict) -> str:
    """One marker in words: ``"01:23 repair"``, ``"02:05 PsychoPy task: trial 3"``."""
    words = m["kind"] if m["kind"] != "note" else ""
    text = m.get("text") or ""
    return f"{event_clock(m['t'])} " + (f"{words}: {text}" if words and text else (words or text))


def render(snap, width: int = 100, compact: bool | None = None) -> list[str]:
    """The lines of one full frame of the view.

    Parameters
    ----------
    snap : ui.model.Snapshot
    width : int
        Characters per line (longer lines are cut).
    compact : bool | None
        List only the people and pairs that need attention and count the rest (:func:`pair_rows`); default
        :func:`is_compact` (:data:`COMPACT_PEOPLE` people or more).

    Returns
    -------
    lines : list of str
    """
    lines = []
    head = f"Attune  session {clock(snap.t_now)}"
    if snap.replay:
        r = snap.replay
        head += (f"  replay {clock(r.get('position_s'))}/{clock(r.get('duration_s'))} at {r.get('speed', 1):g}x"
                 + ("  (paused)" if r.get("paused") else ""))
    rec = snap.recording
    if rec:
        if rec.get("error"):
            head += "  RECORDING STOPPED"
        elif rec.get("active"):
            head += f"  REC {os.path.basename(rec.get('path', ''))} {rec.get('bytes', 0) / 1e6:.1f} MB"
    lines.append(head)
    learning = arming_words(getattr(snap, "arming", None))
    if learning:
        lines.append(learning)
    mods = list(snap.modalities)
    lines.append("People      " + "".join(f"  {m:>9s}" for m in mods) + "   arousal")
    status = signal_status(snap)
    words = arousal_words(snap)
    compact = is_compact(snap) if compact is None else compact
    rows = {p: (tuple(status[p][m] for m in mods), words[p]) for p in snap.participants}
    common, people = most_common(rows) if compact else (None, list(snap.participants))
    for p in people:
        lines.append(f"  {p:<10s}" + "".join(f"  {x:>9s}" for x in rows[p][0]) + f"   {rows[p][1]}")
    if common is not None:
        rest = len(rows) - len(people)
        lines.append(f"  {('other ' if people else 'all ') + str(rest):<10s}" + "".join(f"  {x:>9s}" for x in common[0])
                     + f"   {common[1]}")
    cur = current_sync(snap)
    states = {tuple(ps["pair"]): ps for ps in snap.pair_states}
    listed, counted = pair_rows(snap, compact)
    lines.append("Pairs" + " " * 9 + "".join(f"{m:>8s}" for m in mods) + "   state")
    for k in listed:
        pair = snap.pairs[k]
        ps = states.get(tuple(pair), {})
        words = ps.get("words") or "waiting for data"
        evidence = tune_evidence_words(ps)
        words += f" ({evidence})" if evidence else ""
        lines.append(f"  {'-'.join(pair):<12s}" + "".join(f"{_num(cur[m][k]):>8s}" for m in mods) + f"   {words}"
                     + pair_arousal_text(snap, pair))
    if counted:
        lines.append("  " + counted)
    eps = sorted(snap.episodes, key=lambda e: e["onset_s"])
    lines.append(f"Episodes ({len(eps)})" if eps else "Episodes: none flagged")
    grouped = person_groups(snap) if compact else []  # one person's episodes with several of the others: one line
    ids = {e["id"] for g in grouped for e in g["episodes"]}
    shown = sorted([(ep["onset_s"], episode_text(ep)) for ep in eps if ep["id"] not in ids]
                   + [(min(e["onset_s"] for e in g["episodes"]), "group " + group_text_line(g, snap.participants))
                      for g in grouped], key=lambda x: x[0])
    for _onset, text in shown[-6:]:
        lines.append("  " + text)
    marks = reached_markers(snap)
    if marks:
        lines.append(f"Markers ({len(marks)}), last: {marker_text(marks[-1])}")
    for msg in snap.messages[-3:]:
        lines.append("! " + msg)
    lines.append(DISCLAIMER + "  Ctrl-C stops.")
    return [ln[:width] for ln in lines]


def _learning_key(arming: dict | None) -> tuple:
    """What the learning line says, with the countdown in 30-s steps.

    A block every 30 s while learning, not one a second.
    """
    if not arming or not arming.get("learning"):
        return ()
    ready = arming.get("ready_in_s")
    step = math.ceil(ready / 30.0) if ready is not None and math.isfinite(ready) else None
    return (step, tuple(sorted((k, repr(v)) for k, v in (arming.get("waiting") or {}).items())))


class HeadlessView:
    """Draw a session model to a text stream (in place on a TTY, appended lines otherwise).

    Parameters
    ----------
    model : ui.model.SessionModel
    out : text stream
    tty : bool | None
        Redraw in place; default ``out.isatty()``.
    interval : float
        Plain mode: at least this many seconds between two status blocks (a change in between waits for it).
    heartbeat : float
        Plain mode: seconds without any status block after which it is printed anyway (default one minute).
    clock : callable | None
        Seconds (monotonic) for the two timings above; default :func:`time.monotonic`.
    """

    def __init__(self, model, out=None, tty: bool | None = None, interval: float = 5.0, heartbeat: float = 60.0,
                 clock=None):
        self.model = model
        self.out = out or sys.stdout
        if tty is None:
            try:
                tty = self.out.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = bool(tty)
        self.interval = float(interval)
        self.heartbeat = float(heartbeat)
        self._clock = clock or time.monotonic
        self._shown_key = None
        self._drawn = 0
        self._version = -1
        self._last_block = -math.inf
        self._seen_eps: dict = {}  # episode id, or ('group', person, first id) -> what its line said
        self._seen_markers: set = set()
        self._n_msgs = 0
        self._introduced = False

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def draw(self, force: bool = False) -> None:
        """Draw what changed since the last call."""
        snap = self.model.snapshot(seconds=30.0)
        if self.tty:
            if snap.version == self._version and not force:
                return
            self._version = snap.version
            try:
                width = os.get_terminal_size(self.out.fileno()).columns
            except (OSError, AttributeError, ValueError):
                width = 100
            lines = render(snap, width=max(40, width - 1))
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self._write(up + "".join(f"{ln}\x1b[K\n" for ln in lines) + "\x1b[J")
            self._drawn = len(lines)
            return
        self._draw_plain(snap, force)

    def _draw_plain(self, snap, force: bool) -> None:
        out = []
        if not self._introduced:
            self._introduced = True
            pairs = (f"every two of them ({len(snap.pairs)}; listed below when they need attention, the rest "
                     "counted by state)" if is_compact(snap) else ", ".join("-".join(p) for p in snap.pairs))
            out.append(f"people: {', '.join(snap.participants)}; pairs: {pairs}; "
                       f"modalities: {', '.join(snap.modalities)}")
            out.append(DISCLAIMER)
        for msg in snap.messages[self._n_msgs:]:
            out.append(f"[{clock(snap.t_now)}] ! {msg}")
        self._n_msgs = len(snap.messages)
        in_groups: set = set()
        if is_compact(snap):  # one person's episodes with several of the others: one line for the group
            for g in person_groups(snap):
                eps = g["episodes"]
                in_groups.update(e["id"] for e in eps)
                key = ("group", g["person"], min(e["id"] for e in eps))
                shown = (len(eps), g.get("state"), g.get("open"))
                if self._seen_eps.get(key) != shown:
                    self._seen_eps[key] = shown
                    out.append(f"[{clock(snap.t_now)}] group episode {group_text_line(g, snap.participants)}")
        for ep in sorted(snap.episodes, key=lambda e: e["onset_s"]):
            if ep["id"] in in_groups:
                continue
            key = (ep.get("repaired"), ep.get("open"), tuple(ep.get("modalities") or ()), ep.get("label"))
            if self._seen_eps.get(ep["id"]) != key:
                self._seen_eps[ep["id"]] = key
                out.append(f"[{clock(snap.t_now)}] episode {episode_text(ep)}")
        for m in reached_markers(snap):
            key = (m["t"], m["kind"], m.get("text"))
            if key not in self._seen_markers:
                self._seen_markers.add(key)
                out.append(f"[{clock(snap.t_now)}] marker {marker_text(m)}")
        now = self._clock()
        status = signal_status(snap)
        compact = is_compact(snap)
        listed, counted = pair_rows(snap, compact)
        key = self.shown_key(snap, status, (listed, counted))
        since = now - self._last_block
        if force or (key != self._shown_key and since >= self.interval) or since >= self.heartbeat:
            self._last_block = now
            self._shown_key = key
            per = {p: " ".join(f"{m}={status[p][m].replace(' ', '-')}" for m in snap.modalities)
                   for p in snap.participants}
            st = group_text(per) if compact else "; ".join(f"{p} {v}" for p, v in per.items())
            learning = arming_words(getattr(snap, "arming", None))
            if learning:
                out.append(f"[{clock(snap.t_now)}] {learning}")
            out.append(f"[{clock(snap.t_now)}] status: {st}")
            words = arousal_words(snap)
            out.append(f"[{clock(snap.t_now)}] arousal: " + (group_text(words) if compact else "; ".join(
                f"{p} {words[p]}" for p in snap.participants)))
            cur = current_sync(snap)
            states = {tuple(ps["pair"]): ps for ps in snap.pair_states}
            for k in listed:
                pair = snap.pairs[k]
                ps = states.get(tuple(pair), {})
                syn = " ".join(f"{m} {_num(cur[m][k]).strip()}" for m in snap.modalities)
                evidence = tune_evidence_words(ps)
                out.append(f"[{clock(snap.t_now)}] pair {'-'.join(pair)}: {syn}; "
                           f"{ps.get('words') or 'waiting for data'}"
                           + (f" ({evidence})" if evidence else "")
                           + pair_arousal_text(snap, pair))
            if counted:
                out.append(f"[{clock(snap.t_now)}] pairs: {counted}")
            lost = open_losses(snap)
            if lost:
                out.append(f"[{clock(snap.t_now)}] signal loss: " + "; ".join(
                    f"{p} {m} since {event_clock(on)} ({reason.replace('_', ' ')})" for p, m, on, reason in lost))
        if out:
            self._write("".join(ln + "\n" for ln in out))

    @staticmethod
    def shown_key(snap, status: dict | None = None, rows: tuple | None = None) -> tuple:
        """What a status block says in words (not the synchrony numbers): a new block is due when it changes.

        ``status`` and ``rows`` (:func:`pair_rows`) when the caller has them already.
        """
        status = signal_status(snap) if status is None else status
        states = {tuple(ps["pair"]): ps.get("words") or ps.get("state") for ps in snap.pair_states}
        listed, counted = pair_rows(snap) if rows is None else rows  # a large group: listed ones, the rest counted
        return (
            tuple((p, tuple(sorted(d.items()))) for p, d in sorted(status.items())),
            tuple(sorted(arousal_words(snap).items())),
            tuple((tuple(snap.pairs[k]), states.get(tuple(snap.pairs[k])), pair_arousal_text(snap, snap.pairs[k]))
                  for k in listed),
            re.sub(r"\d+", "#", counted),  # which states are counted; the counts alone wait for the next block
            tuple(sorted((ep["id"], bool(ep.get("repaired")), bool(ep.get("open", True))) for ep in snap.episodes)),
            tuple(open_losses(snap)),
            _learning_key(getattr(snap, "arming", None)),
        )

    def summary(self) -> None:
        """Final lines: every episode of the session."""
        snap = self.model.snapshot(seconds=30.0)
        eps = sorted(snap.episodes, key=lambda e: e["onset_s"])
        lines = [f"session ended at {clock(snap.t_now)}: {len(eps)} possible rupture(s)"]
        lines += ["  " + episode_text(ep) for ep in eps]
        rec = snap.recording
        if rec:
            lines.append(f"recording: {rec.get('path')}" + (f" (stopped early: {rec['error']})" if rec.get("error")
                                                            else ""))
        self._write("".join(ln + "\n" for ln in lines))


def run_headless(runner, duration: float | None = None, out=sys.stdout, *, interval: float | None = None,
                 tty: bool | None = None) -> int:
    """Run a session in the terminal until ``duration`` seconds pass, the replay ends, or Ctrl-C.

    Parameters
    ----------
    runner : ui.runner.Runner
        Started here if it has not been; stopped (source closed) on return.
        A recorder attached to it must be closed by the caller afterwards.
    duration : float | None
        Wall-clock seconds; ``None`` runs until the source is finished or Ctrl-C.
    out : text stream
    interval : float | None
        Seconds between frames (TTY, default 0.5), or plain: the least time between two status blocks
        (default 5; a block is printed only when what it says changed, or as a heartbeat once a minute).
    tty : bool | None
        Force in-place redraws on or off (default: ``out.isatty()``).

    Returns
    -------
    exit_code : int
        0 when the duration passed or the replay ended, 130 after Ctrl-C and 143 after SIGTERM (the view and
        the summary are written either way), 1 if the pipeline failed before any data.
    """
    view = HeadlessView(runner.model, out, tty=tty, interval=interval or 5.0)
    frame = interval if (interval and view.tty) else (0.5 if view.tty else 0.25)
    from attune_monitor.ui.runner import session_heap_frozen  # (the runner is imported by whoever made ``runner``)

    deadline = None if duration is None else time.monotonic() + float(duration)
    stopped_by = None
    with session_heap_frozen():  # the session's long-lived objects out of the collector's scans
        if getattr(runner, "_thread", None) is None:
            runner.start()
        try:
            while True:
                view.draw()
                if runner.finished.is_set():
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                wait = frame if deadline is None else max(0.0, min(frame, deadline - time.monotonic()))
                runner.finished.wait(wait)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (ui.cli.Terminated): the session ends the same way
            stopped_by = getattr(exc, "reason", "Ctrl-C")
        finally:
            runner.stop()
    view.draw(force=True)
    if stopped_by:
        view._write(f"stopped ({stopped_by})\n")
    view.summary()
    if getattr(runner, "error", None) is not None and not runner.model.snapshot().t_now:
        return 1
    if stopped_by:
        return EXIT_SIGTERM if stopped_by == "SIGTERM" else EXIT_SIGINT
    return 0
