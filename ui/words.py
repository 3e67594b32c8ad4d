"""The words of every Attune view, in one place.

Pair cards, the meter, the episodes table, the terminal view, the report and its JSON say the same thing for the same
state.

Nothing here imports Qt. The pair states and their words come from the detector
(:data:`attune_monitor.dsp.detector.STATES`, :data:`attune_monitor.dsp.detector.STATE_WORDS`,
:func:`attune_monitor.dsp.detector.pair_words`); this module
adds the symbols, a pair that is still "in tune" while its synchrony dips (:func:`pair_state_words`), a person's
tie to the group, an episode's status (derived from the same pair state the card
shows, so a card never says "repairing" while the table says "open"), depth on its documented 0-1 scale, and
the arming countdown.
"""

from __future__ import annotations

import math

from attune_monitor.dsp.detector import STATE_WORDS, STATES, UNARMED_STATES, pair_words

__all__ = [
    "STATE_WORDS", "STATES", "UNARMED_STATES", "pair_words", "STATE_SYMBOLS", "state_label", "AROUSAL_WORDS",
    "TIE_STATES", "TIE_WORDS", "TIE_SYMBOLS", "tie_label", "OPEN_EPISODE_STATES", "OUTCOME_WORDS", "episode_state",
    "episode_status", "depth_shown", "depth_words", "depth_number", "disconnecting_words", "group_episode_words",
    "countdown_words", "waiting_for_words", "arming_words", "clock", "DIPPING_STATES", "DIPPING_WORD",
    "pair_state_words",
]

#: A symbol per pair state, so a state never rests on colour alone.
STATE_SYMBOLS = {
    "calibrating": "\u25CC",       # dotted circle
    "not_in_tune": "\u25CB",       # white circle: no measured attunement to lapse from
    "out_of_tune": "\u25BD",       # white down-pointing triangle: a lapse that did not come back
    "attuned": "\u25CF",           # filled circle
    "drifting": "\u25D0",          # half circle
    "possible_rupture": "\u25B2",  # triangle
    "repairing": "\u21BB",         # clockwise arrow
    "repaired": "\u2713",          # check
}

#: What views say for each person's arousal state (:data:`attune_monitor.dsp.divergence.AROUSAL_STATES`).
AROUSAL_WORDS = {
    "unknown": "learning baseline",
    "with_group": "with the group",
    "climbing": "moving away (climbing)",
    "flattening": "moving away (flattening)",
}

#: A person's tie to the group (3+ people): their synchrony with the others, as the detector watches it.
TIE_STATES = ("calibrating", "not_in_tune", "with_group", "drifting_away")
TIE_WORDS = {
    "calibrating": STATE_WORDS["calibrating"],
    "not_in_tune": STATE_WORDS["not_in_tune"],
    "with_group": "with the group",
    "drifting_away": "drifting away",
}
TIE_SYMBOLS = {
    "calibrating": STATE_SYMBOLS["calibrating"],
    "not_in_tune": STATE_SYMBOLS["not_in_tune"],
    "with_group": STATE_SYMBOLS["attuned"],
    "drifting_away": "\u25BC",     # down-pointing triangle
}

#: The pair states of an open episode (a possible rupture not yet repaired).
OPEN_EPISODE_STATES = ("drifting", "possible_rupture", "repairing")
#: How a closed episode ended (:data:`attune_monitor.dsp.detector.OUTCOMES`), in words.
OUTCOME_WORDS = {
    "repaired": "repaired",
    "unrepaired": "not repaired (out of tune)",
    "interrupted": "closed at a shared event",
    "session_end": "still open at the end",
}
_OUTCOME_SYMBOLS = {"repaired": STATE_SYMBOLS["repaired"], "unrepaired": STATE_SYMBOLS["out_of_tune"],
                    "interrupted": "\u2016", "session_end": STATE_SYMBOLS["possible_rupture"]}


def clock(seconds: float | None) -> str:
    """Session seconds as ``m:ss`` (``h:mm:ss`` past an hour); ``"–"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "\u2013"
    t = max(0, int(round(seconds)))
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def state_label(state: str, words: str | None = None) -> str:
    """A pair state as shown: symbol and words (``"▲ possible rupture"``).

    ``words`` overrides the plain words (e.g. :func:`attune_monitor.dsp.detector.pair_words`' "out of tune since
    12:34").
    """
    sym = STATE_SYMBOLS.get(state, "")
    text = words or STATE_WORDS.get(state, state)
    return f"{sym} {text}" if sym else text


#: Pair states whose words get :data:`DIPPING_WORD` while the pair's smoothed synchrony drop is past the repair
#: threshold: the detector has not (yet) gathered the evidence of a lapse, but its gauge is already near chance.
DIPPING_STATES = ("attuned", "repaired")
DIPPING_WORD = "dipping"


def pair_state_words(state: str, words: str | None = None, drop: float | None = None,
                     dip_at: float | None = None) -> str:
    """A pair's state in the words every live view shows (card, pair plot title, terminal view).

    The detector's words, and ``" · dipping"`` after them when it still says "in tune" (or "repaired") while the
    pair's smoothed synchrony drop is at least ``dip_at`` (its repair threshold, ``repair_frac``): the evidence of
    a lapse trails the drop by some seconds, and a card must not read "in tune" over a gauge near chance (nor
    beside a person's row that says "drifting away"). The state itself is the detector's, unchanged.

    Parameters
    ----------
    state : str
        The detector's state (:data:`STATES`).
    words : str | None
        The detector's words for it (default :data:`STATE_WORDS`).
    drop : float | None
        The pair's smoothed synchrony drop (0 = as usual, 1 = chance; the gauge shows ``1 - drop``).
    dip_at : float | None
        The drop from which the pair reads as dipping (None: never).

    Returns
    -------
    words : str
        E.g. ``"in tune"``, ``"in tune · dipping"``, ``"out of tune since 12:34"``.
    """
    text = words or STATE_WORDS.get(state, state)
    if (state in DIPPING_STATES and dip_at is not None and drop is not None and math.isfinite(drop)
            and drop >= dip_at):
        return f"{text} · {DIPPING_WORD}"
    return text


def tie_label(state: str) -> str:
    """A person's tie to the group as shown: ``"▼ drifting away"``."""
    return f"{TIE_SYMBOLS.get(state, '')} {TIE_WORDS.get(state, state)}".strip()


def episode_state(ep: dict, pair_state: str | None = None) -> str:
    """The one state an episode is shown in, everywhere.

    Parameters
    ----------
    ep : dict
        An episode (:func:`attune_monitor.dsp.detector.episode_dict` or an ``attune.analysis/1`` record).
    pair_state : str | None
        Its pair's detector state now (live views); None offline.

    Returns
    -------
    state : str
        While the episode is open: its pair's state when that is one of :data:`OPEN_EPISODE_STATES` (so the
        table says "repairing" exactly when the card does), else ``"possible_rupture"``; once closed, its
        outcome (a key of :data:`OUTCOME_WORDS`; a reviewer's dismissal reads ``"dismissed"``).
    """
    if ep.get("review") == "dismiss":
        return "dismissed"
    outcome = ep.get("outcome") or (
        "repaired" if ep.get("repaired") else "open" if ep.get("open", True) else "unrepaired")
    if ep.get("repaired"):
        outcome = "repaired"
    if outcome == "open":
        return pair_state if pair_state in ("possible_rupture", "repairing") else "possible_rupture"
    return outcome


def episode_status(ep: dict, pair_state: str | None = None) -> tuple[str, str]:
    """``(state, text)`` of an episode's status cell.

    :func:`episode_state` and its words with a symbol (``"↻ repairing"``, ``"✓ repaired"``, ``"▽ not repaired (out of
    tune)"``).
    """
    st = episode_state(ep, pair_state)
    if st in STATE_WORDS:
        return st, state_label(st)
    if st == "dismissed":
        return st, "\u2715 dismissed"
    return st, f"{_OUTCOME_SYMBOLS.get(st, '')} {OUTCOME_WORDS.get(st, st)}".strip()


def depth_shown(depth: float | None) -> float | None:
    """An episode's depth on its documented scale, 0 (as in tune as usual) to 1 (down to chance).

    The detector's value clipped (it goes past 1 when synchrony falls below chance).
    """
    if depth is None or not math.isfinite(depth):
        return None
    return min(max(float(depth), 0.0), 1.0)


#: A depth beyond 1 by more than this reads "below chance" (1 is chance; within it, "reached chance").
BELOW_CHANCE_MARGIN = 0.1


def depth_words(depth: float | None) -> str:
    """Depth in words: ``"62% of the way to chance"``, ``"reached chance"`` or ``"below chance"``."""
    if depth is None or not math.isfinite(depth):
        return "\u2013"
    if depth > 1.0 + BELOW_CHANCE_MARGIN:
        return "below chance"
    if depth >= 0.995:
        return "reached chance"
    return f"{max(depth, 0.0):.0%} of the way to chance"


def depth_number(depth: float | None) -> str:
    """Depth as a number on the 0-1 scale, ``"0.62"``; past chance ``"1.00 (below chance)"``."""
    d = depth_shown(depth)
    if d is None:
        return "\u2013"
    return f"{d:.2f}" + (" (below chance)" if depth > 1.0 + BELOW_CHANCE_MARGIN else "")


def disconnecting_words(people, pair, away: dict | None = None) -> str:
    """Who is disconnecting in an episode, in words that agree with whose arousal moved away.

    Parameters
    ----------
    people : sequence of str
        The episode's ``people`` (the detector names one member in a group when most of their pairs drop;
        in a couple it cannot tell, and names both).
    pair : sequence of str
    away : dict | None
        ``{person: "climbing" | "flattening"}``: whose arousal was moving away before the flag.

    Returns
    -------
    words : str
        ``"P3"``; in a couple whose drop names both: the one person whose arousal moved away
        (``"P2 (arousal)"``), else ``"not told apart"``.
    """
    people = list(people)
    if len(people) == 1:
        return people[0]
    movers = [p for p in (away or {}) if p in pair]
    if sorted(people) == sorted(pair) and len(movers) == 1:
        return f"{movers[0]} (arousal)"
    return "not told apart" if sorted(people) == sorted(pair) else ", ".join(people)


def group_episode_words(person: str, n_pairs: int, n_ties: int, open_: bool = True) -> str:
    """The line of a group episode.

    ``"P3 drifting away — 3 of 3 ties dropped"`` while it is open, ``"P3 drifted away — 3 of 3 ties dropped"`` once it
    is closed.
    """
    verb = "drifting away" if open_ else "drifted away"
    return f"{person} {verb} \u2014 {n_pairs} of {n_ties} ties dropped"


def countdown_words(ready_in_s: float | None) -> str:
    """``"ready in ~0:45"`` while the baseline is being learned (``""`` when unknown or done)."""
    if ready_in_s is None or not math.isfinite(ready_in_s):
        return ""
    return f"ready in ~{clock(max(ready_in_s, 0.0))}"


#: A signal's name in a sentence.
SIGNAL_NAMES = {"hr": "heart rate", "eda": "skin conductance"}


def waiting_for_words(waiting: dict | None) -> str:
    """``{person: [modality, ...]}`` of lost signals as ``"waiting for P12's heart rate"`` (``""`` for none)."""
    if not waiting:
        return ""
    parts = [f"{who}'s {' and '.join(SIGNAL_NAMES.get(m, m) for m in mods)}" for who, mods in waiting.items()]
    return "waiting for " + ", ".join(parts)


def arming_words(arming: dict | None) -> str:
    """The session's line while its pairs learn their baseline.

    ``"learning baseline · ready in ~1:20"``, or what it waits for when no pair can finish (a lost signal); ``""`` once
    no pair is learning.

    Parameters
    ----------
    arming : dict | None
        :attr:`attune_monitor.ui.model.Snapshot.arming`.
    """
    if not arming or not arming.get("learning"):
        return ""
    ready = countdown_words(arming.get("ready_in_s"))
    if ready:
        return f"learning baseline \u00b7 {ready}"
    waiting = {}
    for who_mods in (arming.get("waiting") or {}).values():
        for who, mods in who_mods.items():
            waiting.setdefault(who, [])
            waiting[who] += [m for m in mods if m not in waiting[who]]
    wait = waiting_for_words(waiting)
    return f"learning baseline \u00b7 {wait}" if wait else "learning baseline"
