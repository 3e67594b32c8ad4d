"""The view model's reader side as it was before the snapshot kept per-window results (reference for tests).

A frozen copy of ``SessionModel.snapshot`` (with ``_shown_pair_states``, ``_tie_series``, ``_arming``) and of
``person_ties`` from ``ui/model.py`` at commit e4437ec: every field computed from the model's rings and pair states
on every call, one pair dict at a time. :class:`ReferenceModel` is a :class:`SessionModel` whose ``snapshot`` is
that code, so a test can feed one session to both and compare the snapshots field by field.
"""

from __future__ import annotations

import math

import numpy as np

from attune_monitor.dsp.detector import UNARMED_STATES
from attune_monitor.dsp.pipeline import mean_fisher
from attune_monitor.ui.model import (
    _ALERT_STATES,
    TIE_DRIFT_FRAC,
    TIE_DROP,
    SessionModel,
    Snapshot,
    group_episodes,
    trailing_valid_s,
)
from attune_monitor.ui.words import AROUSAL_WORDS, TIE_WORDS, episode_status, pair_state_words, tie_label


def person_ties_reference(participants, pair_states, episodes, connectedness=None, chance=None,
                          tie_evidence=None) -> dict:
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


class ReferenceModel(SessionModel):
    """A :class:`SessionModel` whose reader side is the frozen copy above."""

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
            ties = person_ties_reference(self.participants, self._pair_states, episodes, conn, conn_chance,
                                         self._ties_evidence)
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
