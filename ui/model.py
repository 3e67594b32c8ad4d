"""The Qt-free session model under every Attune view (GUI, headless monitor, replay).

A worker thread (see :mod:`attune_monitor.ui.runner`) applies pipeline updates with
:meth:`SessionModel.apply`; views read consistent copies with
:meth:`SessionModel.snapshot` at their own pace (the GUI from one QTimer) and
check :attr:`SessionModel.version` to skip redraws when nothing changed.
Facilitator actions (markers, episode labels) go through the model too, which
hands them to whoever records (``marker_sinks``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from attune_monitor.acquisition.files import marker_fields, marker_words
from attune_monitor.dsp.arousal import away_before_flag
from attune_monitor.dsp.detector import STATE_WORDS, STATES, UNARMED_STATES, episode_dict, get_preset
from attune_monitor.dsp.divergence import AROUSAL_STATES, ArousalTracker
from attune_monitor.dsp.engine import one_blas_thread
from attune_monitor.dsp.events import EpisodeEvent, SignalBack, SignalLost
from attune_monitor.dsp.pair_bank import LazyRows
from attune_monitor.dsp.pipeline import mean_fisher
from attune_monitor.dsp.synchrony import R_CLIP, fisher_mean_z

from .words import AROUSAL_WORDS, TIE_WORDS, episode_status, group_episode_words, pair_state_words, tie_label

__all__ = [
    "RUPTURE_TYPES", "MARKER_KINDS", "DISCLAIMER", "tune_evidence_words", "TIE_DRIFT_FRAC", "TIE_DROP",
    "GROUP_EPISODE_TOL_S", "AROUSAL_RELEASE_MARGIN", "AROUSAL_HOLD_S", "person_ties", "group_episodes",
    "trailing_valid_s", "Snapshot", "SessionModel"
]

#: Rupture types a facilitator can give an episode (taxonomy from the rupture/repair literature).
RUPTURE_TYPES = (
    "benign", "oscillating", "limit-setting", "contractual", "dismissive", "hit-and-run", "power-assertive", "toxic",
)
#: Marker kinds: one-key shortcuts in the GUI.
MARKER_KINDS = ("rupture_noticed", "repair", "note", "label", "confirm", "dismiss")

DISCLAIMER = "A flag is a prompt to check in with the people, not a diagnosis."

def tune_evidence_words(pair_state: dict | None) -> str:
    """The evidence behind "not measurably in tune".

    Each signal's synchrony above chance (Fisher z) over the arming span with its standard error, and how many
    standard errors arming needs now (it rises the longer the pair goes unarmed; the least over the signals), e.g.
    ``"vs chance: heart +0.05±0.21 · skin -0.02±0.12, needs 3.6 s.e."`` (``""`` while there is nothing to show or
    the pair is armed).
    """
    if not pair_state or pair_state.get("armed", True):
        return ""
    names = {"hr": "heart", "eda": "skin"}
    parts, needs = [], []
    for m, d in (pair_state.get("modalities") or {}).items():
        ex, se = d.get("excess"), d.get("excess_se")
        if ex is not None and se is not None:
            parts.append(f"{names.get(m, m)} {ex:+.2f}\u00b1{se:.2f}")
            if d.get("arm_need") is not None:
                needs.append(d["arm_need"])
    need = f", needs {min(needs):.1f} s.e." if needs else ""
    return ("vs chance: " + " \u00b7 ".join(parts) + need) if parts else ""


#: A person's tie evidence (the detector's ``person_ties``: evidence / threshold) at or above which they read as
#: drifting away from the group (the share of the threshold at which a pair reads "drifting": ``drift_h / cusum_h``).
TIE_DRIFT_FRAC = 0.3
#: A person whose synchrony with most of the others has dropped at least this far towards chance (the detector's
#: smoothed drop of each armed pair, 0 = as usual, 1 = chance; the balanced preset's reference drop ``cusum_k``),
#: more of them than anyone else's, reads as drifting away even before a flag: their row then agrees with their
#: cards' gauges and their "synchrony with the others" line. A flag still needs the detector's evidence.
TIE_DROP = 0.7
#: Episodes of one person (a group) flagged within this many seconds of each other, overlapping in time, are shown
#: as one group episode ("P3 drifting away — 3 of 3 ties dropped") with its pairs underneath.
GROUP_EPISODE_TOL_S = 60.0
#: Hysteresis of the live arousal word (see :meth:`SessionModel.snapshot`): a person shown "moving away"
#: goes back to "with the group" only once their smoothed ratio is below ``threshold - AROUSAL_RELEASE_MARGIN``
#: and they have been shown moving away for at least ``AROUSAL_HOLD_S`` seconds.
AROUSAL_RELEASE_MARGIN = 1.0
AROUSAL_HOLD_S = 4.0
_AWAY = ("climbing", "flattening")


#: Pair states in which the detector has evidence of a drop (what the evidence came from is then worth saying).
_ALERT_STATES = ("drifting", "possible_rupture", "repairing")


def person_ties(participants, pair_states, episodes, connectedness=None, chance=None, tie_evidence=None) -> dict:
    """Each person's tie to the group (3+ people), in the words of :data:`attune_monitor.ui.words.TIE_WORDS`.

    Parameters
    ----------
    participants : list of str
    pair_states : list of dict
        The detector's pair states (``pair``, ``state``).
    episodes : list of dict
        Episode dicts (``people``, ``pair``, ``open``, ``repaired``, ``review``).
    connectedness, chance : ndarray, shape (n_people,) | None
        Each person's current mean synchrony with the others, and its chance level (r).
    tie_evidence : dict | None
        ``person -> evidence / threshold`` of the detector's person-to-group tie
        (:attr:`attune_monitor.dsp.detector.RuptureDetector.person_ties`), when the source hands it over.

    Returns
    -------
    ties : dict
        ``person -> {"state", "words", "label", "conn", "chance", "armed", "ties", "dropping", "evidence"}``;
        empty for a couple. ``state``: ``"calibrating"`` while none of the person's pairs has measured its
        attunement yet and some are still learning; ``"drifting_away"`` when an open episode names them alone
        and its pair is still in a possible rupture (or drifting), when their tie evidence reaches
        :data:`TIE_DRIFT_FRAC` of the threshold, or when most of their armed ties (at least two) are dropping
        (drifting, flagged or repairing, or down :data:`TIE_DROP` of the way to chance) and a larger share of
        theirs than the median of the others'; else ``"with_group"`` when at least one of their pairs is measurably in
        tune, else ``"not_in_tune"``.
    """
    return _person_ties(participants, PairColumns(pair_states), episodes, connectedness, chance, tie_evidence)


#: Per pair-state code (index into :data:`STATES`, -1 for anything else): armed, an alert, calibrating.
_ARMED_BY_CODE = np.array([s not in UNARMED_STATES for s in STATES] + [True])
_ALERT_BY_CODE = np.array([s in _ALERT_STATES for s in STATES] + [False])
_CALIB_BY_CODE = np.array([s == "calibrating" for s in STATES] + [False])
_STATE_CODE = {s: k for k, s in enumerate(STATES)}


def _people_at(participants, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's people as positions in ``participants`` (-1: not one; the second -1 also when the same)."""
    who_at = {who: i for i, who in enumerate(participants)}
    a = np.array([who_at.get(p[0], -1) for p in pairs], dtype=np.intp).reshape(len(pairs))
    b = np.array([who_at.get(p[1], -1) if p[1] != p[0] else -1 for p in pairs], dtype=np.intp).reshape(len(pairs))
    return a, b


class PairColumns:
    """The pair states' ``pair``, ``state`` and ``drop`` as columns: what the snapshot reads of every pair.

    Built from a detector's :class:`~attune_monitor.dsp.pair_bank.PairStateTable` without its dicts, or from any
    sequence of pair-state dicts. Pairs named twice keep the first place and the last values (as a dict keyed by
    pair would).

    Parameters
    ----------
    pair_states : sequence of dict, or PairStateTable
        Shape (n_states,).
    known : (list of tuple, dict) | None
        A view model's pairs (each once) and ``pair -> position``: a table of exactly those pairs takes them as
        they are (no pass over the pairs).

    Attributes
    ----------
    pairs : list of tuple
        The pairs, each once, shape (n_pairs,).
    states : list
        Each pair's ``state`` (None where a dict has none), shape (n_pairs,).
    codes : ndarray of int, shape (n_pairs,)
        Index of each pair's state into :data:`STATES`, -1 for anything else; a dict without ``state`` counts as
        calibrating (as :func:`person_ties` reads it).
    drops : ndarray, shape (n_pairs,)
        Each pair's smoothed drop, NaN where None or not finite.
    calibrating_at : list of int
        Positions in ``pair_states`` (not in ``pairs``) of the states that are ``calibrating``.
    """

    def __init__(self, pair_states, known: tuple[list, dict] | None = None):
        table = hasattr(pair_states, "states") and hasattr(pair_states, "drops")  # a PairStateTable
        if table:
            pairs = pair_states.pairs
            codes = np.asarray(pair_states.codes, dtype=np.intp)
            states = [STATES[c] for c in codes.tolist()]
            self.calibrating_at = np.flatnonzero(codes == _STATE_CODE["calibrating"]).tolist()
            d = pair_states.drops()
            if known is not None and (pairs is known[0] or pairs == known[0]):  # the model's pairs (each once)
                self.pairs, self.states, self.codes, self.drops = known[0], states, codes, d
                self._index: dict | None = known[1]
                return
            drops: list = d.tolist()
            no_state: list = []
        else:
            rows = list(pair_states)
            pairs = [tuple(ps["pair"]) for ps in rows]
            states = [ps.get("state") for ps in rows]
            drops = [ps.get("drop") for ps in rows]
            no_state = [k for k, ps in enumerate(rows) if "state" not in ps]
            self.calibrating_at = [k for k, st in enumerate(states) if st == "calibrating"]
        if not all(type(p) is tuple for p in pairs):
            pairs = [tuple(p) for p in pairs]
        missing = set(no_state)
        if len(set(pairs)) != len(pairs):  # first place, last values
            last = {p: k for k, p in enumerate(pairs)}
            keep = [last[p] for p in dict.fromkeys(pairs)]
            pairs = [pairs[k] for k in keep]
            states = [states[k] for k in keep]
            drops = [drops[k] for k in keep]
            missing = {j for j, k in enumerate(keep) if k in missing}
        code = _STATE_CODE.get
        codes = np.array([code(st, -1) for st in states], dtype=np.intp).reshape(len(states))
        if missing:
            codes[sorted(missing)] = _STATE_CODE["calibrating"]
        d = np.array([np.nan if x is None else x for x in drops], dtype=float).reshape(len(drops))
        with np.errstate(invalid="ignore"):
            d[~np.isfinite(d)] = np.nan
        self.pairs, self.states, self.codes, self.drops = pairs, states, codes, d
        self._index = None

    def index(self) -> dict:
        """``pair -> position`` in :attr:`pairs`."""
        if self._index is None:
            self._index = {p: k for k, p in enumerate(self.pairs)}
        return self._index

    def at(self, pairs: list) -> tuple[list, np.ndarray, np.ndarray]:
        """The ``state`` (None when the pair has none), its code and the drop (NaN) of each of ``pairs``.

        Returns
        -------
        states : list, codes : ndarray of int, drops : ndarray
            Shape (len(pairs),) each.
        """
        if pairs is self.pairs or pairs == self.pairs:
            return self.states, self.codes, self.drops
        index = self.index()
        where = [index.get(p, -1) for p in pairs]
        states = [self.states[k] if k >= 0 else None for k in where]
        codes = np.array([self.codes[k] if k >= 0 else -1 for k in where], dtype=np.intp).reshape(len(where))
        drops = np.array([self.drops[k] if k >= 0 else np.nan for k in where], dtype=float).reshape(len(where))
        return states, codes, drops


def _person_ties(participants, cols: PairColumns, episodes, connectedness=None, chance=None, tie_evidence=None,
                 people_at: tuple | None = None) -> dict:
    """:func:`person_ties` from the pair states' columns: every person's counts in one pass of array operations.

    ``people_at``: the positions in ``participants`` of each pair's first and second person (-1: not one of them,
    or the same), shape (n_pairs,) each, when the caller has them for ``cols.pairs``.
    """
    n = len(participants)
    if n < 3:
        return {}
    index = cols.index()
    named = set()
    for ep in episodes:
        people = ep.get("people") or []
        if len(people) == 1 and ep.get("open", True) and not ep.get("repaired") and ep.get("review") != "dismiss":
            k = index.get(tuple(ep["pair"]))
            if k is not None and cols.states[k] in ("drifting", "possible_rupture"):
                named.add(people[0])
    a, b = _people_at(participants, cols.pairs) if people_at is None else people_at
    armed = _ARMED_BY_CODE[cols.codes]
    with np.errstate(invalid="ignore"):
        dropping = armed & (_ALERT_BY_CODE[cols.codes] | (cols.drops >= TIE_DROP))

    def per_person(mask):
        return (np.bincount(a[(a >= 0) & mask], minlength=n)
                + np.bincount(b[(b >= 0) & mask], minlength=n)).tolist()

    every = np.ones(len(cols.pairs), dtype=bool)
    n_st, n_armed = per_person(every), per_person(armed)
    n_drop, n_calib = per_person(dropping), per_person(_CALIB_BY_CODE[cols.codes])
    frac = [d / k if k else 0.0 for d, k in zip(n_drop, n_armed)]
    others = np.broadcast_to(np.array(frac), (n, n))[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    median = np.median(others, axis=1).tolist()
    out = {}
    for i, who in enumerate(participants):
        k, d = n_armed[i], n_drop[i]
        ev = None if not tie_evidence else tie_evidence.get(who)
        most = k >= 2 and d >= max(2, (k + 1) // 2) and frac[i] > median[i]
        if who in named or (ev is not None and ev >= TIE_DRIFT_FRAC) or most:
            state = "drifting_away"
        elif k:
            state = "with_group"
        elif n_calib[i] or not n_st[i]:
            state = "calibrating"
        else:
            state = "not_in_tune"
        c = float(connectedness[i]) if connectedness is not None and i < len(connectedness) else float("nan")
        ch = float(chance[i]) if chance is not None and i < len(chance) else float("nan")
        out[who] = {"state": state, "words": TIE_WORDS[state], "label": tie_label(state), "conn": c, "chance": ch,
                    "armed": k, "ties": n - 1, "dropping": d, "evidence": ev}
    return out


def group_episodes(episodes, participants, tol_s: float = GROUP_EPISODE_TOL_S) -> list[dict]:
    """Episodes of one person drifting away from several others, gathered into one group episode each.

    Parameters
    ----------
    episodes : list of dict
        Episode dicts in id order; each may carry ``"status"`` (``(state, text)``, see :meth:`SessionModel.snapshot`).
    participants : list of str
    tol_s : float
        Episodes naming the same single person whose flags lie within this many seconds of the group's
        and that overlap it in time join it.

    Returns
    -------
    groups : list of dict
        In order of the first flag: ``{"person": str | None, "episodes": [episode, ...], "n_ties": n - 1,
        "open": bool, "state": str, "words": str}``. A pair episode that joins no other is a group of one
        (``person`` None unless it names one person); ``words`` of a group of two or more say
        ``"P3 drifting away — 3 of 3 ties dropped"``.
    """
    n = len(participants)
    groups: list[dict] = []
    for ep in sorted(episodes, key=lambda e: (e.get("flagged_s", e["onset_s"]), e["id"])):
        people = ep.get("people") or []
        who = people[0] if len(people) == 1 and n >= 3 else None
        flag = ep.get("flagged_s", ep["onset_s"])
        home = None
        if who is not None:
            for g in groups:
                if g["person"] != who:
                    continue
                last = max(e.get("flagged_s", e["onset_s"]) for e in g["episodes"])
                ends = [e.get("offset_s") for e in g["episodes"]]
                end = math.inf if any(x is None for x in ends) else max(ends)
                if abs(flag - last) <= tol_s and ep["onset_s"] <= end + tol_s:
                    home = g
                    break
        if home is None:
            home = {"person": who, "episodes": []}
            groups.append(home)
        home["episodes"].append(ep)
    for g in groups:
        eps = g["episodes"]
        g["n_ties"] = n - 1
        g["open"] = any(e.get("open", e.get("outcome", "open") == "open") and not e.get("repaired") for e in eps)
        states = [(e.get("status") or episode_status(e))[0] for e in eps]
        for st in ("possible_rupture", "repairing", "unrepaired", "session_end", "interrupted", "repaired",
                   "dismissed"):
            if st in states:
                g["state"] = st
                break
        else:
            g["state"] = states[0]
        g["words"] = (group_episode_words(g["person"], len(eps), n - 1, g["open"])
                      if g["person"] is not None and len(eps) >= 2 else "")
    return groups


def trailing_valid_s(sync: np.ndarray, step_s: float) -> np.ndarray:
    """Seconds of unbroken valid (finite) windows at the end of each row, shape (n_rows,).

    Parameters
    ----------
    sync : ndarray, shape (n_rows, n_windows)
    step_s : float
    """
    if sync.size == 0:
        return np.zeros(sync.shape[0])
    bad = ~np.isfinite(sync[:, ::-1])
    first_bad = np.where(bad.any(axis=1), bad.argmax(axis=1), sync.shape[1])
    return first_bad * float(step_s)


class _Ring:
    """Fixed-size 2-D ring of columns (rows = people or pairs), newest last.

    ``buf`` (n_rows, n_cols) and ``t`` (n_cols,) are views of a store twice as wide that holds every column twice,
    at ``c % n_cols`` and ``c % n_cols + n_cols`` (column ``c`` counted from the session's start): the newest
    ``n_cols`` columns are then always the contiguous slice starting at ``n % n_cols``, and a new column costs two
    copies of itself. Nothing is ever moved: the ring written forward into a store a quarter wider moved its
    newest columns back to the front whenever the store's end was reached (a 64-person session's four pair rings of
    2016 x 600, moved every 150 windows: the longest tick). Read the views at once; a later ``extend`` moves them.
    """

    def __init__(self, n_rows: int, n_cols: int, dtype=float, fill=np.nan):
        self._cap = int(n_cols)
        self._store = np.full((n_rows, 2 * self._cap), fill, dtype=dtype)
        self._t_store = np.full(2 * self._cap, np.nan)
        self.n = 0  # total columns ever written
        self.fill = fill

    @property
    def buf(self) -> np.ndarray:
        """The ring, shape (n_rows, n_cols), oldest column first (a view)."""
        s = self.n % self._cap
        return self._store[:, s: s + self._cap]

    @property
    def t(self) -> np.ndarray:
        """Time of each column, shape (n_cols,) (a view)."""
        s = self.n % self._cap
        return self._t_store[s: s + self._cap]

    def extend(self, t: np.ndarray, cols: np.ndarray) -> None:
        k = cols.shape[1]
        if k == 0:
            return
        cap = self._cap
        if k > cap:  # only the newest cap columns stay
            self.n += k - cap
            t, cols, k = t[-cap:], cols[:, -cap:], cap
        s = self.n % cap  # the slot of the first new column
        first = min(k, cap - s)  # columns up to the first half's end; the rest wrap to its front
        for at in (s, s + cap):
            self._store[:, at: at + first] = cols[:, :first]
            self._t_store[at: at + first] = t[:first]
        if first < k:
            for at in (0, cap):
                self._store[:, at: at + k - first] = cols[:, first:]
                self._t_store[at: at + k - first] = t[first:]
        self.n += k

    def last(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(n, self.buf.shape[1], self.n)
        return self.t[self.buf.shape[1] - n:].copy(), self.buf[:, self.buf.shape[1] - n:].copy()


class _WindowColumns:
    """Per-window columns derived from the synchrony rings, kept between snapshots so each is computed once.

    :meth:`get` hands back ``compute(lo, hi)``'s arrays (each shape (n_rows, hi - lo)) for the windows ``lo`` to
    ``hi - 1`` (absolute indices: the rings' ``n`` counts), computing only the windows it does not hold from an
    earlier call with the same ``key`` (a window's values never change once it is in the rings). Up to ``margin``
    windows before ``lo`` are kept, so a slightly longer request later is still served. The arrays handed back are
    views of the store, valid until the next call: copy what outlives it.
    """

    def __init__(self, margin: int = 64):
        self.margin = int(margin)
        self.key: tuple | None = None
        self.lo = self.hi = 0   # windows held: lo .. hi - 1, window lo at column p0 of the stores
        self.p0 = 0
        self.stores: list[np.ndarray] = []

    def get(self, key: tuple, lo: int, hi: int, compute) -> tuple:
        if not (key == self.key and self.lo <= lo <= self.hi <= hi):
            self._store(key, lo, hi, compute(lo, hi))
        elif hi > self.hi:
            new = compute(self.hi, hi)
            end = self.p0 + self.hi - self.lo
            if end + (hi - self.hi) <= self.stores[0].shape[1]:
                for st, a in zip(self.stores, new):
                    st[:, end: end + a.shape[1]] = a
                self.hi = hi
            else:  # full: the windows still wanted moved to a new store, the new ones after them
                keep = max(self.lo, lo - self.margin)
                held = [st[:, self.p0 + keep - self.lo: end] for st in self.stores]
                self._store(key, keep, hi, [np.concatenate([h, a], axis=1) for h, a in zip(held, new)])
        return tuple(st[:, self.p0 + lo - self.lo: self.p0 + hi - self.lo] for st in self.stores)

    def _store(self, key: tuple, lo: int, hi: int, arrays) -> None:
        width = (hi - lo) + 2 * self.margin
        self.stores = []
        for a in arrays:
            st = np.empty((a.shape[0], width), dtype=a.dtype)
            st[:, : hi - lo] = a
            self.stores.append(st)
        self.key, self.lo, self.hi, self.p0 = key, lo, hi, 0


class ShownPairStates(LazyRows):
    """The pair states a snapshot shows: the detector's dicts copied with the words every view shows.

    Built when first read (:meth:`rows`) and shared by every snapshot taken until the detector's pair states change:
    a snapshot costs nothing per pair, and a view that reads the states pays for them once per synchrony window. As
    a sequence it reads like a list of those dicts (``len``, indexing, iteration, ``==`` and ``repr`` as the list's),
    to be treated as read-only.

    Parameters
    ----------
    pair_states : sequence of dict
        The detector's pair states (a list, or a :class:`~attune_monitor.dsp.pair_bank.PairStateTable`).
    dip_at : float
        The smoothed drop from which an in-tune pair reads "in tune · dipping"
        (:func:`attune_monitor.ui.words.pair_state_words`).
    """

    def __init__(self, pair_states, dip_at: float):
        self._source = pair_states
        self._dip_at = dip_at

    def _build(self) -> list[dict]:
        out = []
        for ps in self._source:
            d = dict(ps)
            if "state" in d:
                d["words"] = pair_state_words(d["state"], d.get("words"), d.get("drop"), self._dip_at)
            out.append(d)
        return out

    def __len__(self) -> int:
        return len(self._source)

    def __eq__(self, other) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self.rows() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self.rows())


@dataclass
class Snapshot:
    """A consistent copy of the session for one redraw.

    Attributes
    ----------
    t_now : float
        Session time (s) of the newest processed grid sample.
    grid : dict
        ``modality -> (times (n,), values (n_people, n))``.
    sync : dict
        ``modality -> (times (n_w,), sync (n_pairs, n_w), chance (n_pairs, n_w))``; plus key
        ``"combined"`` (Fisher-z mean of the modalities).
    pair_states : ShownPairStates
        A sequence of dicts, per pair: ``pair``, ``state``, ``words`` (what every view says:
        :func:`attune_monitor.ui.words.pair_state_words`, e.g.
        "in tune · dipping"), ``drop`` and per-modality ``baseline``/``chance``/``sync``.
    matrix : ndarray, shape (n_people, n_people)
        Current combined synchrony of every pair (NaN diagonal).
    connectedness : ndarray, shape (n_people,)
        Each person's mean current synchrony with the others.
    status : dict
        ``participant -> {modality: "ok" | "noisy" | "lost" | "recovered" | "absent" | "connecting"}``.
    episodes : list of dict
        Episode dicts (:func:`attune_monitor.dsp.detector.episode_dict`) plus ``"arousal"``: ``{person: "climbing" |
        "flattening"}`` for members of the pair whose arousal was moving away before it was flagged (from
        its onset to the flag, or at a re-flag).
    signal_loss : list of dict
    markers : list of dict
    arousal : tuple
        ``(times (n_s,), L (n_people, n_s), state codes (n_people, n_s))``: each person's smoothed
        arousal log-likelihood ratio and state (codes into :data:`AROUSAL_STATES`).
    people_arousal : dict
        ``participant -> {"state": one of AROUSAL_STATES, "words": AROUSAL_WORDS[state], "llr": float}`` now:
        the *shown* state, the tracker's with hysteresis (:class:`SessionModel`), so the word does not flicker
        while the ratio hovers at the threshold (``arousal`` holds the tracker's own codes).
    pair_arousal : dict
        ``pair -> {"away": {person: "climbing" | "flattening"}, "evidence": None | "synchrony" | "arousal" |
        "synchrony+arousal"}``: who of the pair is moving away now, and (while the pair is drifting, in a
        possible rupture or repairing) what the detector's evidence comes from.
    arousal_threshold : float
        The ratio at or above which a person is "moving away" (the preset's ``arousal_k``).
    chance_matrix : ndarray, shape (n_people, n_people)
        The chance level of each pair's current combined synchrony (NaN diagonal).
    connectedness_chance : ndarray, shape (n_people,)
        The chance level of each person's connectedness.
    ties : dict
        Each person's tie to the group (3+ people; :func:`person_ties`).
    tie_series : tuple
        ``(times (n_w,), connectedness (n_people, n_w), chance (n_people, n_w))``: each person's mean combined
        synchrony with the others over time, and its chance level.
    groups : list of dict
        The episodes gathered per person drifting away (:func:`group_episodes`).
    arming : dict
        ``{"learning": bool, "ready_in_s": float | None, "pairs": {pair: ready_in_s | None},
        "waiting": {pair: {person: [modality, ...]}}}``: while pairs are still learning their baseline (state
        ``calibrating``), about how many seconds of session time until the arming span (the detector's
        ``arm_span_s`` of valid windows) is full and the pair is either measurably in tune or not
        (``ready_in_s``: the last of them); a pair one of whose people has a signal lost waits for it (None,
        and who in ``waiting``).

    Every episode carries ``"status"``: ``(state, text)`` from :func:`attune_monitor.ui.words.episode_status` with its
    pair's state now, so a card and the episodes table never disagree.
    """

    version: int
    t_now: float
    participants: list
    pairs: list
    modalities: tuple
    grid: dict
    sync: dict
    pair_states: Sequence
    matrix: np.ndarray
    connectedness: np.ndarray
    status: dict
    episodes: list
    signal_loss: list
    markers: list
    recording: dict | None = None
    replay: dict | None = None
    messages: list = field(default_factory=list)
    label: str | None = None
    arousal: tuple = field(default_factory=lambda: (np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0), np.uint8)))
    people_arousal: dict = field(default_factory=dict)
    pair_arousal: dict = field(default_factory=dict)
    arousal_threshold: float = float("nan")
    chance_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    connectedness_chance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ties: dict = field(default_factory=dict)
    tie_series: tuple = field(default_factory=lambda: (np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0))))
    groups: list = field(default_factory=list)
    arming: dict = field(default_factory=lambda: {"learning": False, "ready_in_s": None, "pairs": {}, "waiting": {}})

    def signal_states(self, recent_s: float = 3.0) -> dict:
        """``participant -> {modality: state}``: the source's status (:attr:`status`).

        Where it reports none (``"absent"``: a replayed recording's source has no devices), ``"ok"`` while the grid has
        values in the last ``recent_s`` seconds (heart rate lags the beats a little) and ``"no data"`` when it has none.
        """
        out = {}
        for i, p in enumerate(self.participants):
            st = self.status.get(p, {})
            out[p] = {}
            for m in self.modalities:
                s = st.get(m, "absent")
                if s == "absent":
                    t, vals = self.grid.get(m, (np.zeros(0), np.zeros((0, 0))))
                    if vals.size and i < vals.shape[0]:
                        s = "ok" if np.isfinite(vals[i, t >= t[-1] - recent_s]).any() else "no data"
                out[p][m] = s
        return out


class SessionModel:
    """Thread-safe state of one session.

    Parameters
    ----------
    participants : list of str
    modalities : tuple of str
    pairs : list of (str, str)
    fs : float
        Grid rate (Hz).
    step_s : float
        Synchrony window step (s).
    history_s : float
        How much history views can show.
    preset : str
        Detector preset: its ``arousal_k`` is the ratio at which a person reads as "moving away"; its
        ``arm_span_s`` the span of valid windows a pair needs before it is measurably in tune (or not).
    window_s : float
        Synchrony window (s): the first window ends this long into the session.

    Notes
    -----
    The live arousal word (``Snapshot.people_arousal`` and who is "away" in ``Snapshot.pair_arousal``) is the
    :class:`attune_monitor.dsp.divergence.ArousalTracker` state with hysteresis, decided second by second as the states
    arrive (so chunked == batch):

    * a person shown "with the group" (or "learning baseline") switches to "moving away" as soon as the tracker
      says so (its smoothed ratio ``L >= arousal_k``);
    * a person shown "moving away" stays so while the tracker says so (following its flavour, climbing or
      flattening), and after it stops, until their ratio is *clearly* below the threshold
      (``L < arousal_k - AROUSAL_RELEASE_MARGIN``) *and* they have been shown moving away for at least
      ``AROUSAL_HOLD_S`` seconds; then the tracker's state is shown;
    * exceptions, shown at once: no ratio any more (``L`` NaN: "learning baseline"), and in a couple the other
      person moving away per the tracker (only the likelier of two mirror readings is named).

    The history (``Snapshot.arousal`` codes, trace shading, arousal strip, an episode's ``arousal``) keeps the
    tracker's own states.
    """

    def __init__(self, participants, modalities, pairs, fs: float, step_s: float = 1.0, history_s: float = 600.0,
                 preset: str = "balanced", window_s: float = 30.0):
        cfg = get_preset(preset) if isinstance(preset, str) else preset
        self.preset = preset
        self.arm_span_s = float(cfg.arm_span_s)
        self._loss_guard_s = float(cfg.loss_guard_s)
        self.window_s = float(window_s)
        self.arousal_threshold = float(cfg.arousal_k)
        self._arousal_smooth_s = float(cfg.smooth_s)
        self._sync_k = float(cfg.cusum_k)
        self._repair_frac = float(cfg.repair_frac)   # an "in tune" pair dropped this far reads "in tune · dipping"
        self.participants = list(participants)
        self.modalities = tuple(modalities)
        self.pairs = [tuple(p) for p in pairs]
        self.fs = float(fs)
        self.step_s = float(step_s)
        self.history_s = float(history_s)
        self._lock = threading.Lock()
        self.version = 0
        self.recording: dict | None = None
        self.replay: dict | None = None
        #: what views call the session when it is not plain live/replay (e.g. "Demo · simulated · 2x")
        self.label: str | None = None
        #: callables ``sink(marker_dict)`` — e.g. the recorder's marker stream.
        self.marker_sinks: list = []
        self._messages: list[str] = []
        self._markers: list[dict] = []
        index = {p: i for i, p in enumerate(self.participants)}
        #: each person's pairs (positions in ``pairs``), and who is in each pair (incidence, shape (n, n_pairs))
        self._pairs_of: list[list[int]] = [[] for _ in self.participants]
        self._incidence = np.zeros((len(self.participants), len(self.pairs)))
        self._pair_index = {p: k for k, p in enumerate(self.pairs)}
        self._people_at = _people_at(self.participants, self.pairs)
        for k, (a, b) in enumerate(self.pairs):
            self._incidence[index[a], k] = self._incidence[index[b], k] = 1.0
            for who in dict.fromkeys((a, b)):
                self._pairs_of[index[who]].append(k)
        self._clear()

    def reset(self) -> None:
        """Forget the signals, synchrony and episodes (replay seek); keep markers, messages and sinks."""
        with self._lock:
            self._clear()
            self.version += 1

    def _clear(self) -> None:
        fs, step_s, history_s = self.fs, self.step_s, self.history_s
        n, npairs = len(self.participants), len(self.pairs)
        self._grid = {m: _Ring(n, int(history_s * fs)) for m in self.modalities}
        self._sync = {m: _Ring(npairs, int(history_s / step_s)) for m in self.modalities}
        self._chance = {m: _Ring(npairs, int(history_s / step_s)) for m in self.modalities}
        self._pair_states: Sequence[dict] = []
        self._ties_evidence: dict = {}
        self._status = {p: {m: "absent" for m in self.modalities} for p in self.participants}
        self._episodes: dict[int, dict] = {}
        self._loss: list[dict] = []
        self._arousal_l = _Ring(n, int(history_s / step_s))
        self._arousal_code = _Ring(n, int(history_s / step_s), dtype=np.uint8, fill=0)
        self._arousal_track = ArousalTracker(n, self.arousal_threshold, self._arousal_smooth_s, step_s)
        self._shown = ["unknown"] * n           # the live arousal state shown for each person (with hysteresis)
        self._shown_since = [np.nan] * n         # session time since when they are shown moving away
        self.t_now = 0.0
        # the reader's results kept between snapshots (see snapshot): per window, per pair-state change
        self._windows = _WindowColumns()
        self._sync_part: tuple | None = None
        self._pairs_gen = getattr(self, "_pairs_gen", 0) + 1
        self._pair_part: tuple | None = None
        self._arousal_part: tuple | None = None

    # -- writer side (worker thread) ------------------------------------------------------------
    def apply(self, update, pair_states=None, status=None, ties=None) -> None:
        """Take one :class:`attune_monitor.dsp.pipeline.Update` (and optional detector/acquisition status).

        ``pair_states``: the detector's :meth:`~attune_monitor.dsp.detector.RuptureDetector.pair_states` list, or
        its :meth:`~attune_monitor.dsp.detector.RuptureDetector.pair_table` (any sequence of those dicts, in pair
        order; a large group's table builds its dicts when a snapshot first reads them, not here).
        ``ties``: the detector's ``person_ties`` (``person -> evidence / threshold``), when the source hands
        them over; without them a person's tie is read from their pairs' states alone (:func:`person_ties`).
        """
        with self._lock:
            if ties is not None:
                self._ties_evidence = dict(ties)
            if update.n_new:
                t = (update.grid_start + np.arange(update.n_new)) / self.fs
                for m, v in update.grid.items():
                    self._grid[m].extend(t, v)
                self.t_now = float(t[-1])
            for m, w in update.windows.items():
                if w["t"].size:
                    self._sync[m].extend(w["t"], w["sync"])
                    self._chance[m].extend(w["t"], w.get("chance_level", w["chance"]))
            at = np.asarray(getattr(update, "arousal_t", np.zeros(0)), dtype=float)
            if at.size:
                smooth, code = self._arousal_reading(update, at.size)
                self._arousal_l.extend(at, smooth)
                self._arousal_code.extend(at, code)
                self._show_arousal(at, smooth, code)
            for ev in update.events:
                if isinstance(ev, EpisodeEvent):
                    d = episode_dict(ev.episode)
                    old = self._episodes.get(d["id"], {})
                    d["label"] = old.get("label")
                    d["review"] = old.get("review")
                    d["arousal"] = dict(old.get("arousal") or {})
                    flags = [d.get("flagged_s", d["onset_s"]), ev.t]
                    r = self._arousal_code
                    away = away_before_flag(r.t, r.buf, self.participants, d["pair"], d["onset_s"], flags, self.step_s)
                    for who, st in away.items():
                        d["arousal"].setdefault(who, st)
                    self._episodes[d["id"]] = d
                elif isinstance(ev, SignalLost):
                    self._loss.append({"participant": ev.participant, "modality": ev.modality, "onset_s": ev.onset_s,
                                       "offset_s": ev.offset_s, "reason": ev.reason})
                elif isinstance(ev, SignalBack):
                    for rec in reversed(self._loss):
                        if (rec["participant"], rec["modality"], rec["onset_s"]) == (ev.participant, ev.modality,
                                                                                     ev.onset_s):
                            rec["offset_s"] = ev.offset_s
                            break
            if pair_states is not None:
                self._pair_states = pair_states
                self._pairs_gen += 1
            if status is not None:
                for p, d in status.items():
                    self._status.setdefault(p, {}).update(d)
            self.version += 1

    def _arousal_reading(self, update, n_sec: int) -> tuple[np.ndarray, np.ndarray]:
        """The arousal tracker's smoothed ratio ``L`` and state codes for the update's new seconds.

        A pipeline reads them with a tracker of its own (``Update.arousal_smooth`` / ``arousal_state``); when that
        tracker's :attr:`~attune_monitor.dsp.divergence.ArousalTracker.reading` is this model's, they are taken as
        they are and the model's tracker only moves its window on (:meth:`ArousalTracker.skip`), else the model's
        tracker reads them. Both give the same states when the model is fed every update of the pipeline from its
        start (as the runner does).

        Returns
        -------
        smooth : ndarray, shape (n_people, n_sec)
        code : ndarray of uint8, shape (n_people, n_sec)
        """
        tracker = self._arousal_track
        div = getattr(update, "arousal_div", None)
        smooth, code = getattr(update, "arousal_smooth", None), getattr(update, "arousal_state", None)
        if (getattr(update, "arousal_reading", ()) == tracker.reading and smooth is not None and code is not None
                and np.shape(smooth) == np.shape(code) == (tracker.n, n_sec)):
            tracker.skip(update.arousal, div)
            return np.asarray(smooth, dtype=float), np.asarray(code, dtype=np.uint8)
        return tracker.push(update.arousal, div)

    def _show_arousal(self, t: np.ndarray, smooth: np.ndarray, code: np.ndarray) -> None:
        """Advance the shown arousal states over new seconds (hysteresis: see the class notes).

        Parameters
        ----------
        t : ndarray, shape (n_sec,)
        smooth : ndarray, shape (n_people, n_sec)
            The tracker's smoothed ratio ``L``.
        code : ndarray, shape (n_people, n_sec)
            The tracker's state codes into :data:`AROUSAL_STATES`.
        """
        n = len(self.participants)
        release = self.arousal_threshold - AROUSAL_RELEASE_MARGIN
        for j in range(t.size):
            for i in range(n):
                st = AROUSAL_STATES[int(code[i, j])]
                if st in _AWAY:
                    if self._shown[i] not in _AWAY:
                        self._shown_since[i] = float(t[j])
                    self._shown[i] = st
                    continue
                if self._shown[i] in _AWAY:
                    level = float(smooth[i, j])
                    partner_away = n == 2 and AROUSAL_STATES[int(code[1 - i, j])] in _AWAY
                    held = t[j] - self._shown_since[i] >= AROUSAL_HOLD_S - 1e-9
                    if np.isfinite(level) and not partner_away and not (level < release and held):
                        continue  # keep showing "moving away"
                self._shown[i] = st

    def set_status(self, participant: str, modality: str, state: str) -> None:
        """Acquisition status of one person's stream (``ok``/``noisy``/``lost``/``recovered``)."""
        with self._lock:
            self._status.setdefault(participant, {})[modality] = state
            self.version += 1

    def episode_list(self) -> list[dict]:
        """Every episode so far (copies of the dicts the snapshots carry), in the order they opened."""
        with self._lock:
            return [dict(e) for e in self._episodes.values()]

    def message(self, text: str) -> None:
        """A user-visible message (stream lost, recording error ...)."""
        with self._lock:
            self._messages.append(f"{time.strftime('%H:%M:%S')} {text}")
            self._messages = self._messages[-50:]
            self.version += 1

    # -- facilitator side -------------------------------------------------------------------------
    def add_marker(self, kind: str, text: str = "", t: float | None = None, episode: int | None = None) -> dict:
        """Record a facilitator marker (``rupture_noticed``, ``repair``, ``note``, ``label`` ...)."""
        if kind not in MARKER_KINDS:
            raise ValueError(f"Invalid value for 'kind': expected one of {', '.join(MARKER_KINDS)}, but got {kind!r}.")
        if kind == "label" and text not in RUPTURE_TYPES:
            raise ValueError(f"Invalid rupture type: expected one of {', '.join(RUPTURE_TYPES)}, but got {text!r}.")
        with self._lock:
            m = {"kind": kind, "text": text, "t": self.t_now if t is None else float(t), "episode": episode}
            self._markers.append(m)
            if episode is not None and episode in self._episodes:
                if kind == "label":
                    self._episodes[episode]["label"] = text
                elif kind in ("confirm", "dismiss"):
                    self._episodes[episode]["review"] = kind
            self.version += 1
            sinks = list(self.marker_sinks)
        for sink in sinks:
            sink(m)
        return m

    def show_external_markers(self, markers) -> int:
        """Show markers that come from elsewhere on the timelines.

        A replayed recording's, or other apps' marker streams live (not handed to ``marker_sinks``: a recording of the
        session records those streams itself).

        Parameters
        ----------
        markers : iterable of (float, str, str)
            ``(session time (s), stream name, text)`` as
            :meth:`attune_monitor.acquisition.files.Recording.event_markers` gives
            them (times relative to the source's origin). Attune's own JSON markers keep their kind and text;
            other apps' markers show as notes with their text.

        Returns
        -------
        n : int
            How many were added.
        """
        added = []
        for t, name, text in markers:
            kind, words, episode = marker_fields(text)
            if kind not in MARKER_KINDS:  # another app's marker, or a kind this view does not draw by its own
                kind, words, episode = "note", (f"{name}: " if name and kind is None else "") + marker_words(text), None
            added.append({"kind": kind, "text": words, "t": float(t), "episode": episode, "external": True})
        added.sort(key=lambda m: m["t"])
        with self._lock:
            self._markers.extend(added)  # appended, never re-sorted: views key the markers they drew by index
            self.version += 1
        return len(added)

    # -- reader side -------------------------------------------------------------------------------
    def snapshot(self, seconds: float = 180.0) -> Snapshot:
        """A consistent copy of the last ``seconds`` of the session.

        What changes only with the synchrony windows (the synchrony series, the matrix, connectedness and its
        series) is computed once per window and length, and shared by the snapshots until the next window; its
        transcendental parts (Fisher z of every pair and window) once per window only (:class:`_WindowColumns`).
        What is read of the pair states (ties, the pairs' arousal, arming, the episodes' status) comes from their
        columns (:class:`PairColumns`), not their dicts; the shown pair states are a :class:`ShownPairStates`
        built when a view first reads them, shared until the detector's states change. The arrays and dicts a
        snapshot shares with others are never changed afterwards: views must treat them as read-only.
        """
        with self._lock:
            n_grid = int(seconds * self.fs)
            n_win = int(seconds / self.step_s)
            grid = {m: r.last(n_grid) for m, r in self._grid.items()}
            sync, matrix, chance_matrix, conn, conn_chance, tie_series = self._sync_and_ties(n_win)
            cols, shown_states = self._pair_columns()
            arming = self._arming(cols)
            at, al = self._arousal_l.last(n_win)
            _, ac = self._arousal_code.last(n_win)
            people_arousal = {}
            for i, who in enumerate(self.participants):
                # now = the shown state after the newest second the pipeline reported (hysteresis: class notes)
                llr = float(self._arousal_l.buf[i, -1]) if self._arousal_l.n else float("nan")
                st = self._shown[i]
                people_arousal[who] = {"state": st, "words": AROUSAL_WORDS[st], "llr": llr}
            pair_arousal = self._pair_arousal(cols)
            index = cols.index()
            episodes = []
            for e in self._episodes.values():
                e2 = {**e, "arousal": dict(e.get("arousal") or {})}
                k = index.get(tuple(e2["pair"]))
                e2["status"] = episode_status(e2, None if k is None else cols.states[k])
                episodes.append(e2)
            ties = _person_ties(self.participants, cols, episodes, conn, conn_chance, self._ties_evidence,
                                self._people_at if cols.pairs is self.pairs else None)
            return Snapshot(
                version=self.version, t_now=self.t_now, participants=list(self.participants), pairs=list(self.pairs),
                modalities=self.modalities, grid=grid, sync=dict(sync), pair_states=shown_states,
                matrix=matrix.copy(), connectedness=conn.copy(), status={p: dict(d) for p, d in self._status.items()},
                episodes=episodes, signal_loss=[dict(x) for x in self._loss],
                markers=[dict(m) for m in self._markers],
                recording=None if self.recording is None else dict(self.recording),
                replay=None if self.replay is None else dict(self.replay), messages=list(self._messages),
                label=self.label, arousal=(at, al, ac), people_arousal=people_arousal, pair_arousal=pair_arousal,
                arousal_threshold=self.arousal_threshold, chance_matrix=chance_matrix.copy(),
                connectedness_chance=conn_chance.copy(), ties=ties, tie_series=tie_series,
                groups=group_episodes(episodes, self.participants), arming=arming,
            )

    def _sync_and_ties(self, n_win: int) -> tuple:
        """The last ``n_win`` windows' synchrony, the matrix now, connectedness and its series (see :meth:`snapshot`).

        Kept until a window arrives or ``n_win`` changes; the arrays are read-only (shared by snapshots).

        Returns
        -------
        sync : dict
            :attr:`Snapshot.sync`.
        matrix, chance_matrix : ndarray, shape (n_people, n_people)
        conn, conn_chance : ndarray, shape (n_people,)
        tie_series : tuple
            :attr:`Snapshot.tie_series`.
        """
        counts = tuple(self._sync[m].n for m in self.modalities)
        if self._sync_part is not None and self._sync_part[0] == (counts, n_win):
            return self._sync_part[1]
        sync = {}
        for m in self.modalities:
            ts, s = self._sync[m].last(n_win)
            _, c = self._chance[m].last(n_win)
            sync[m] = (ts, s, c)
        n = len(self.participants)
        key = None
        z = None   # per pair and window: the series' z for the matrix (fisher_mean's clip), for the ties (0.999)
        if self.modalities:
            m0 = self.modalities[0]
            ts = sync[m0][0]
            k = ts.size
            hi = self._sync[m0].n
            if all(sync[m][0].shape == ts.shape for m in self.modalities):
                offsets = tuple(self._sync[m].n - hi for m in self.modalities)
                comb, ch, *z = self._windows.get(("combined", offsets), hi - k, hi, self._combined_windows)
                sync["combined"] = (ts, comb, ch)  # views of windows the store never writes again
                key = "combined"
            else:
                key = m0
                z = list(self._windows.get(("single", m0), hi - k, hi, self._single_windows))
        matrix = np.full((n, n), np.nan)
        chance_matrix = np.full((n, n), np.nan)
        iu = np.triu_indices(n, 1)
        if key is not None and z is not None and sync[key][1].shape[1]:
            with np.errstate(all="ignore"):
                cur = fisher_mean_z(z[0][:, -5:], axis=1)
                cch = fisher_mean_z(z[1][:, -5:], axis=1)
            matrix[iu], matrix[(iu[1], iu[0])] = cur, cur
            chance_matrix[iu], chance_matrix[(iu[1], iu[0])] = cch, cch
        with np.errstate(all="ignore"):
            conn = mean_fisher(matrix, axis=1) if n else np.zeros(0)
            conn_chance = mean_fisher(chance_matrix, axis=1) if n else np.zeros(0)
        if key is None or z is None or n < 2:
            tie_series = (np.zeros(0), np.zeros((n, 0)), np.zeros((n, 0)))
        else:
            tie_series = self._tie_series(sync[key][0], *z[2:6])
        out = (sync, matrix, chance_matrix, conn, conn_chance, tie_series)
        for a in (matrix, chance_matrix, conn, conn_chance, *tie_series,
                  *(x for v in sync.values() for x in v)):
            a.flags.writeable = False
        self._sync_part = ((counts, n_win), out)
        return out

    def _ring_windows(self, ring: _Ring, lo: int, hi: int, offset: int = 0) -> np.ndarray:
        """Windows ``lo + offset`` to ``hi + offset - 1`` (absolute) of ``ring``, shape (n_rows, hi - lo) (a view)."""
        start = ring.buf.shape[1] - ring.n + offset
        return ring.buf[:, start + lo: start + hi]

    def _combined_windows(self, lo: int, hi: int) -> list:
        """The combined series (Fisher-z mean of the modalities, window by window position) and its z.

        Windows ``lo .. hi - 1`` of the first modality, each with the same place from the end in the others.

        Returns
        -------
        list of 8 ndarray, shape (n_pairs, hi - lo) (the last two (n_people, hi - lo))
            Combined synchrony and chance, then :meth:`_z_columns` of them.
        """
        hi0 = self._sync[self.modalities[0]].n
        s = np.stack([self._ring_windows(self._sync[m], lo, hi, self._sync[m].n - hi0) for m in self.modalities])
        c = np.stack([self._ring_windows(self._chance[m], lo, hi, self._chance[m].n - hi0) for m in self.modalities])
        comb = mean_fisher(s, axis=0)
        ch = mean_fisher(c, axis=0)
        return [comb, ch, *self._z_columns(comb, ch)]

    def _single_windows(self, lo: int, hi: int) -> list:
        """:meth:`_combined_windows`' z and counts for the first modality alone (no combined series): 6 arrays."""
        m0 = self.modalities[0]
        return self._z_columns(self._ring_windows(self._sync[m0], lo, hi), self._ring_windows(self._chance[m0], lo, hi))

    def _z_columns(self, s: np.ndarray, c: np.ndarray) -> list:
        """What the matrix and the connectedness series need of a series ``s`` and its chance ``c``, per window.

        ``s``, ``c``: shape (n_pairs, n_w). Returns their clipped Fisher z as :func:`fisher_mean` takes it, as the
        connectedness series takes it (clipped at 0.999, 0 where not finite), and each person's count of pairs
        with a value there (shape (n_people, n_w), exact integers).
        """
        with np.errstate(all="ignore"):
            z_s, z_c = np.arctanh(np.clip(s, -0.999, 0.999)), np.arctanh(np.clip(c, -0.999, 0.999))
            ok_s, ok_c = np.isfinite(z_s), np.isfinite(z_c)
            return [np.arctanh(np.clip(s, -R_CLIP, R_CLIP)), np.arctanh(np.clip(c, -R_CLIP, R_CLIP)),
                    np.where(ok_s, z_s, 0.0), np.where(ok_c, z_c, 0.0), self._incidence @ ok_s, self._incidence @ ok_c]

    def _tie_series(self, t: np.ndarray, z_sync: np.ndarray, z_chance: np.ndarray, n_sync: np.ndarray,
                    n_chance: np.ndarray) -> tuple:
        """Each person's mean synchrony with the others over time and its chance level (see :class:`Snapshot`).

        ``z_sync``, ``z_chance``: shape (n_pairs, n_w), the pairs' series as ``arctanh(clip(r, -0.999, 0.999))``,
        0 where that is not finite; ``n_sync``, ``n_chance``: shape (n_people, n_w), each person's count of finite
        ones.
        """
        inc = self._incidence
        out = []
        # one BLAS thread (as the engine's matmuls): on 2 busy cores a second one only waits, ~10x the CPU time
        with one_blas_thread():
            for z, count in ((z_sync, n_sync), (z_chance, n_chance)):
                with np.errstate(all="ignore"):
                    m = (inc @ np.ascontiguousarray(z)) / count  # a store's columns: BLAS wants them packed
                out.append(np.tanh(m))
        return t, out[0], out[1]

    def _pair_columns(self) -> tuple:
        """The pair states' columns and the shown pair states, kept until the detector's states change."""
        if self._pair_part is None or self._pair_part[0] != self._pairs_gen:
            ps = self._pair_states
            known = (self.pairs, self._pair_index) if len(self._pair_index) == len(self.pairs) else None
            self._pair_part = (self._pairs_gen, PairColumns(ps, known), ShownPairStates(ps, self._repair_frac))
        return self._pair_part[1], self._pair_part[2]

    def _pair_arousal(self, cols: PairColumns) -> dict:
        """:attr:`Snapshot.pair_arousal`, kept while the same people are shown moving away with the same evidence.

        Read-only: shared by snapshots.
        """
        pairs = self.pairs
        _, codes, drops = cols.at(pairs)
        alert = np.flatnonzero(_ALERT_BY_CODE[codes])
        with np.errstate(invalid="ignore"):
            says = drops[alert] >= self._sync_k  # NaN (no drop) says nothing
        key = (tuple(self._shown), alert.tobytes(), says.tobytes())
        if self._arousal_part is not None and self._arousal_part[0] == key:
            return self._arousal_part[1]
        index = {who: i for i, who in enumerate(self.participants)}
        away_now = {who: st for who, st in zip(self.participants, self._shown) if st in _AWAY}
        says_at = dict(zip(alert.tolist(), says.tolist()))

        def entry(k: int) -> dict:
            away = {w: away_now[w] for w in pairs[k] if w in away_now}
            sync_says = says_at.get(k)
            evidence = None if sync_says is None else (
                ("synchrony+arousal" if sync_says else "arousal") if away else "synchrony")
            return {"away": away, "evidence": evidence}

        if self._arousal_part is None:
            out = {pair: {"away": {}, "evidence": None} for pair in pairs}
            redo = {k for who in away_now for k in self._pairs_of[index[who]]} | set(says_at)
        else:  # the entries that change made anew, the others shared with the previous snapshots
            _, prev, prev_away, prev_says = self._arousal_part
            out = dict(prev)
            moved = {who for who in set(away_now) | set(prev_away) if away_now.get(who) != prev_away.get(who)}
            redo = {k for who in moved for k in self._pairs_of[index[who]]}
            redo |= {k for k in set(says_at) | set(prev_says) if says_at.get(k) != prev_says.get(k)}
        for k in redo:
            out[pairs[k]] = entry(k)
        self._arousal_part = (key, out, away_now, says_at)
        return out

    def _arming(self, cols: PairColumns) -> dict:
        """How long until each pair still learning its baseline has a full arming span (see :class:`Snapshot`).

        A pair arms (or reads "not measurably in tune") once one of its signals has ``arm_span_s`` of unbroken
        windows that the detector counts: none while either person has a signal lost (it drops every window of
        their pairs then), nor for ``window_s + loss_guard_s`` after the signal is back. Such a pair waits for
        the signal (``ready_in_s`` None, the person named in ``waiting``).
        """
        learning = cols.calibrating_at
        if not len(self._pair_states):
            learning = list(range(len(self.pairs)))
        if not learning:
            return {"learning": False, "ready_in_s": None, "pairs": {}, "waiting": {}}
        learning = [k for k in learning if k < len(self.pairs)]
        need = np.full(len(learning), np.inf)   # of the learning pairs only
        # before the first window: the window itself still has to fill
        first = max(0.0, self.window_s - self.t_now) if self.t_now < self.window_s else 0.0
        span = int(math.ceil(self.arm_span_s / self.step_s))
        guard = self.window_s + self._loss_guard_s
        lost, clean_from = {}, {}
        for rec in self._loss:
            who = rec["participant"]
            if rec["offset_s"] is None:
                lost.setdefault(who, []).append(rec["modality"])
            else:
                clean_from[who] = max(clean_from.get(who, -math.inf), rec["offset_s"] + guard)
        for m in self.modalities:
            ring = self._sync[m]
            recent = ring.buf[:, ring.buf.shape[1] - min(span, ring.buf.shape[1], ring.n):]
            if recent.shape[0] == len(self.pairs):
                have = trailing_valid_s(recent[learning], self.step_s)
                need = np.minimum(need, np.maximum(self.arm_span_s - have, 0.0) + first)
        need = np.where(np.isfinite(need), need, self.arm_span_s + first)
        pairs, waiting = {}, {}
        if not lost and not clean_from:  # no signal lost: every learning pair's time is its need
            pairs = dict(zip((tuple(self.pairs[k]) for k in learning), need.tolist()))
        else:
            for j, k in enumerate(learning):
                pair = tuple(self.pairs[k])
                gone = [w for w in pair if w in lost]
                if gone:
                    waiting[pair] = {w: lost[w] for w in gone}
                    pairs[pair] = None
                    continue
                since = max((clean_from.get(w, -math.inf) for w in pair), default=-math.inf)
                n = float(need[j])
                if since > -math.inf:   # after a loss: the span counts from the end of the guard
                    n = max(n, since + self.arm_span_s - self.t_now)
                pairs[pair] = n
        known = [v for v in pairs.values() if v is not None]
        return {"learning": True, "ready_in_s": max(known) if known else None, "pairs": pairs, "waiting": waiting}

    @staticmethod
    def words(state: str) -> str:
        """User-facing words for a detector state."""
        return STATE_WORDS.get(state, state)
