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
from attune_monitor.dsp.detector import STATE_WORDS, UNARMED_STATES, episode_dict, get_preset
from attune_monitor.dsp.divergence import AROUSAL_STATES, ArousalTracker
from attune_monitor.dsp.events import EpisodeEvent, SignalBack, SignalLost
from attune_monitor.dsp.pipeline import mean_fisher

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

    Each signal's synchrony above chance (Fisher z) over the arming span with its standard error, e.g. ``"vs chance:
    heart +0.05±0.21 · skin -0.02±0.12"`` (``""`` while there is nothing to show or the pair is armed).
    """
    if not pair_state or pair_state.get("armed", True):
        return ""
    names = {"hr": "heart", "eda": "skin"}
    parts = []
    for m, d in (pair_state.get("modalities") or {}).items():
        ex, se = d.get("excess"), d.get("excess_se")
        if ex is not None and se is not None:
            parts.append(f"{names.get(m, m)} {ex:+.2f}\u00b1{se:.2f}")
    return ("vs chance: " + " \u00b7 ".join(parts)) if parts else ""


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
    n = len(participants)
    if n < 3:
        return {}
    states = {tuple(ps["pair"]): ps.get("state", "calibrating") for ps in pair_states}
    drops = {tuple(ps["pair"]): ps.get("drop") for ps in pair_states}
    named = set()
    for ep in episodes:
        people = ep.get("people") or []
        if (len(people) == 1 and ep.get("open", True) and not ep.get("repaired") and ep.get("review") != "dismiss"
                and states.get(tuple(ep["pair"])) in ("drifting", "possible_rupture")):
            named.add(people[0])
    # each person's pair states, armed pairs and dropping pairs, in pair order (one pass over the pairs)
    mine: dict = {who: ([], [], []) for who in participants}
    for pair, s in states.items():
        armed = s not in UNARMED_STATES
        if armed:
            d = drops.get(pair)
            dropping = s in _ALERT_STATES or (d is not None and np.isfinite(d) and d >= TIE_DROP)
        for who in dict.fromkeys(pair):
            lists = mine.get(who)
            if lists is not None:
                lists[0].append(s)
                if armed:
                    lists[1].append(pair)
                    if dropping:
                        lists[2].append(pair)
    frac = {who: len(dropping) / len(armed) if armed else 0.0 for who, (_, armed, dropping) in mine.items()}
    out = {}
    for i, who in enumerate(participants):
        st, armed, dropping = mine[who]
        others = [frac[o] for o in participants if o != who]
        ev = None if not tie_evidence else tie_evidence.get(who)
        most = (len(armed) >= 2 and len(dropping) >= max(2, (len(armed) + 1) // 2)
                and frac[who] > float(np.median(others)))
        if who in named or (ev is not None and ev >= TIE_DRIFT_FRAC) or most:
            state = "drifting_away"
        elif armed:
            state = "with_group"
        elif any(s == "calibrating" for s in st) or not st:
            state = "calibrating"
        else:
            state = "not_in_tune"
        c = float(connectedness[i]) if connectedness is not None and i < len(connectedness) else float("nan")
        ch = float(chance[i]) if chance is not None and i < len(chance) else float("nan")
        out[who] = {"state": state, "words": TIE_WORDS[state], "label": tie_label(state), "conn": c, "chance": ch,
                    "armed": len(armed), "ties": n - 1, "dropping": len(dropping), "evidence": ev}
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

    ``buf`` (n_rows, n_cols) and ``t`` (n_cols,) are views of a store a quarter wider, written forward: a new
    column costs its own copy, and only when the store's end is reached are the newest ``n_cols`` columns moved
    back to its front (a 64-person session's pair rings are 2016 x 600: moving every column on every window was
    most of the model's share of the heavy tick). Read them at once; a later ``extend`` moves the views.
    """

    def __init__(self, n_rows: int, n_cols: int, dtype=float, fill=np.nan):
        self._cap = int(n_cols)
        width = self._cap + max(1, self._cap // 4)
        self._store = np.full((n_rows, width), fill, dtype=dtype)
        self._t_store = np.full(width, np.nan)
        self._end = self._cap  # the ring is store[:, end - cap: end]
        self.n = 0  # total columns ever written
        self.fill = fill

    @property
    def buf(self) -> np.ndarray:
        """The ring, shape (n_rows, n_cols), oldest column first (a view)."""
        return self._store[:, self._end - self._cap: self._end]

    @property
    def t(self) -> np.ndarray:
        """Time of each column, shape (n_cols,) (a view)."""
        return self._t_store[self._end - self._cap: self._end]

    def extend(self, t: np.ndarray, cols: np.ndarray) -> None:
        k = cols.shape[1]
        if k == 0:
            return
        cap, end = self._cap, self._end
        if k >= cap:
            self._store[:, :cap] = cols[:, -cap:]
            self._t_store[:cap] = t[-cap:]
            self._end = cap
        else:
            if end + k > self._store.shape[1]:  # move the newest cap - k columns to the front
                keep = cap - k
                self._store[:, :keep] = self._store[:, end - keep: end]
                self._t_store[:keep] = self._t_store[end - keep: end]
                end = keep
            self._store[:, end: end + k] = cols
            self._t_store[end: end + k] = t
            self._end = end + k
        self.n += k

    def last(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(n, self.buf.shape[1], self.n)
        return self.t[self.buf.shape[1] - n:].copy(), self.buf[:, self.buf.shape[1] - n:].copy()


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
    pair_states : list of dict
        Per pair: ``pair``, ``state``, ``words`` (what every view says:
        :func:`attune_monitor.ui.words.pair_state_words`, e.g.
        "in tune · dipping"), ``drop`` and per-modality ``baseline``/``chance``/``sync``.
    matrix : ndarray, shape (n_people, n_people)
        Current combined synchrony of every pair (NaN diagonal).
    connectedness : ndarray, shape (n_people,)
        Each person's mean current synchrony with the others.
    status : dict
        ``participant -> {modality: "ok" | "noisy" | "lost" | "recovered" | "absent"}``.
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
    pair_states: list
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
        """A consistent copy of the last ``seconds`` of the session."""
        with self._lock:
            pending = self._pair_states
        rows = getattr(pending, "rows", None)
        if rows is not None:  # a pair-state table: its dicts built once, outside the lock (the writer goes on)
            rows()
        with self._lock:
            n_grid = int(seconds * self.fs)
            n_win = int(seconds / self.step_s)
            grid = {m: r.last(n_grid) for m, r in self._grid.items()}
            sync = {}
            for m in self.modalities:
                ts, s = self._sync[m].last(n_win)
                _, c = self._chance[m].last(n_win)
                sync[m] = (ts, s, c)
            if self.modalities:
                ts = sync[self.modalities[0]][0]
                if all(sync[m][0].shape == ts.shape for m in self.modalities):
                    comb = mean_fisher(np.stack([sync[m][1] for m in self.modalities]), axis=0)
                    ch = mean_fisher(np.stack([sync[m][2] for m in self.modalities]), axis=0)
                    sync["combined"] = (ts, comb, ch)
            n = len(self.participants)
            matrix = np.full((n, n), np.nan)
            chance_matrix = np.full((n, n), np.nan)
            iu = np.triu_indices(n, 1)
            key = "combined" if "combined" in sync else (self.modalities[0] if self.modalities else None)
            if key is not None and sync[key][1].shape[1]:
                with np.errstate(all="ignore"):
                    cur = mean_fisher(sync[key][1][:, -5:], axis=1)
                    cch = mean_fisher(sync[key][2][:, -5:], axis=1)
                matrix[iu], matrix[(iu[1], iu[0])] = cur, cur
                chance_matrix[iu], chance_matrix[(iu[1], iu[0])] = cch, cch
            with np.errstate(all="ignore"):
                conn = mean_fisher(matrix, axis=1) if n else np.zeros(0)
                conn_chance = mean_fisher(chance_matrix, axis=1) if n else np.zeros(0)
            tie_series = self._tie_series(sync.get(key) if key is not None else None)
            arming = self._arming()
            at, al = self._arousal_l.last(n_win)
            _, ac = self._arousal_code.last(n_win)
            people_arousal = {}
            for i, who in enumerate(self.participants):
                # now = the shown state after the newest second the pipeline reported (hysteresis: class notes)
                llr = float(self._arousal_l.buf[i, -1]) if self._arousal_l.n else float("nan")
                st = self._shown[i]
                people_arousal[who] = {"state": st, "words": AROUSAL_WORDS[st], "llr": llr}
            pair_arousal = {}
            pstates = {tuple(ps["pair"]): ps for ps in self._pair_states}
            for pair in self.pairs:
                away = {w: people_arousal[w]["state"] for w in pair if people_arousal[w]["state"] in ("climbing",
                                                                                                      "flattening")}
                ps = pstates.get(tuple(pair), {})
                evidence = None
                if ps.get("state") in _ALERT_STATES:
                    drop = ps.get("drop")
                    sync_says = drop is not None and np.isfinite(drop) and drop >= self._sync_k
                    evidence = ("synchrony+arousal" if sync_says else "arousal") if away else "synchrony"
                pair_arousal[tuple(pair)] = {"away": away, "evidence": evidence}
            pstate = {tuple(ps["pair"]): ps.get("state") for ps in self._pair_states}
            episodes = []
            for e in self._episodes.values():
                e2 = {**e, "arousal": dict(e.get("arousal") or {})}
                e2["status"] = episode_status(e2, pstate.get(tuple(e2["pair"])))
                episodes.append(e2)
            ties = person_ties(self.participants, self._pair_states, episodes, conn, conn_chance, self._ties_evidence)
            return Snapshot(
                version=self.version, t_now=self.t_now, participants=list(self.participants), pairs=list(self.pairs),
                modalities=self.modalities, grid=grid, sync=sync, pair_states=self._shown_pair_states(),
                matrix=matrix, connectedness=conn, status={p: dict(d) for p, d in self._status.items()},
                episodes=episodes, signal_loss=[dict(x) for x in self._loss],
                markers=[dict(m) for m in self._markers],
                recording=None if self.recording is None else dict(self.recording),
                replay=None if self.replay is None else dict(self.replay), messages=list(self._messages),
                label=self.label, arousal=(at, al, ac), people_arousal=people_arousal, pair_arousal=pair_arousal,
                arousal_threshold=self.arousal_threshold, chance_matrix=chance_matrix,
                connectedness_chance=conn_chance, ties=ties, tie_series=tie_series,
                groups=group_episodes(episodes, self.participants), arming=arming,
            )

    def _shown_pair_states(self) -> list[dict]:
        """Copies of the detector's pair states with the words every view shows.

        The words of :func:`attune_monitor.ui.words.pair_state_words`: "in tune · dipping" while an in-tune pair's
        smoothed drop is past the repair threshold.
        """
        out = []
        for ps in self._pair_states:
            d = dict(ps)
            if "state" in d:
                d["words"] = pair_state_words(d["state"], d.get("words"), d.get("drop"), self._repair_frac)
            out.append(d)
        return out

    def _tie_series(self, series) -> tuple:
        """Each person's mean synchrony with the others over time and its chance level (see :class:`Snapshot`)."""
        n = len(self.participants)
        if series is None or n < 2:
            return np.zeros(0), np.zeros((n, 0)), np.zeros((n, 0))
        t, s, c = series
        index = {p: i for i, p in enumerate(self.participants)}
        inc = np.zeros((n, len(self.pairs)))
        for k, (a, b) in enumerate(self.pairs):
            inc[index[a], k] = inc[index[b], k] = 1.0
        out = []
        for x in (s, c):
            z = np.arctanh(np.clip(x, -0.999, 0.999))
            ok = np.isfinite(z)
            with np.errstate(all="ignore"):
                m = (inc @ np.where(ok, z, 0.0)) / (inc @ ok)
            out.append(np.tanh(m))
        return t, out[0], out[1]

    def _arming(self) -> dict:
        """How long until each pair still learning its baseline has a full arming span (see :class:`Snapshot`).

        A pair arms (or reads "not measurably in tune") once one of its signals has ``arm_span_s`` of unbroken
        windows that the detector counts: none while either person has a signal lost (it drops every window of
        their pairs then), nor for ``window_s + loss_guard_s`` after the signal is back. Such a pair waits for
        the signal (``ready_in_s`` None, the person named in ``waiting``).
        """
        learning = [k for k, ps in enumerate(self._pair_states) if ps.get("state") == "calibrating"]
        if not self._pair_states:
            learning = list(range(len(self.pairs)))
        if not learning:
            return {"learning": False, "ready_in_s": None, "pairs": {}, "waiting": {}}
        need = np.full(len(self.pairs), np.inf)
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
            _, s = self._sync[m].last(span)
            have = trailing_valid_s(s, self.step_s)
            if have.shape[0] == len(self.pairs):
                need = np.minimum(need, np.maximum(self.arm_span_s - have, 0.0) + first)
        need = np.where(np.isfinite(need), need, self.arm_span_s + first)
        pairs, waiting = {}, {}
        for k in learning:
            if k >= len(self.pairs):
                continue
            pair = tuple(self.pairs[k])
            gone = [w for w in pair if w in lost]
            if gone:
                waiting[pair] = {w: lost[w] for w in gone}
                pairs[pair] = None
                continue
            since = max((clean_from.get(w, -math.inf) for w in pair), default=-math.inf)
            n = float(need[k])
            if since > -math.inf:   # after a loss: the span counts from the end of the guard
                n = max(n, since + self.arm_span_s - self.t_now)
            pairs[pair] = n
        known = [v for v in pairs.values() if v is not None]
        return {"learning": True, "ready_in_s": max(known) if known else None, "pairs": pairs, "waiting": waiting}

    @staticmethod
    def words(state: str) -> str:
        """User-facing words for a detector state."""
        return STATE_WORDS.get(state, state)
