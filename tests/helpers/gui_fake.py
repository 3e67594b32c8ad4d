"""Synthetic sessions for widget tests and design screenshots (not end-to-end: see test_gui_e2e.py).

Fills a real :class:`attune_monitor.ui.model.SessionModel` with :class:`attune_monitor.dsp.pipeline.Update`
objects whose windows are scripted synchrony series, and whose episode and
signal-loss events come from the real :class:`attune_monitor.dsp.detector.RuptureDetector`
and :class:`attune_monitor.dsp.detector.SignalLossTracker` run on those series.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from attune_monitor.dsp.detector import RuptureDetector, SignalLossTracker, get_preset
from attune_monitor.dsp.pipeline import Update
from attune_monitor.dsp.quality import Quality
from attune_monitor.ui.model import SessionModel

FS = 4.0


def make_model(n_people: int = 2, modalities=("hr", "eda")) -> tuple[SessionModel, RuptureDetector, SignalLossTracker]:
    people = [f"P{i + 1}" for i in range(n_people)]
    # scripted synchrony series without arousal: the analytic evidence flags them as constructed (the learned
    # evidence is tested on simulated sessions, test_evidence.py and the end-to-end tests)
    # a short arming span (30 s instead of 120 s), so the scripted drop at 60 s comes after the pairs are armed
    # (these widget tests are about drawing; arming itself is tested in test_arming.py)
    cfg = dataclasses.replace(get_preset("balanced", "analytic"), arm_span_s=30.0)
    # its windows start at once (no 30-s window to fill first): window_s=1 for the detector and the model alike
    det = RuptureDetector(people, modalities, step_s=1.0, config=cfg, window_s=1.0)
    model = SessionModel(people, modalities, det.pairs, FS, 1.0, 600.0, preset=cfg, window_s=1.0)
    return model, det, SignalLossTracker(FS)


class FakeSession:
    """Scripted session: every pair in tune, ``rupture_pair`` drops to chance in ``rupture`` (s), and one
    person's HR is lost in ``loss`` (s).

    Parameters
    ----------
    n_people : int
    rupture : (float, float) | None
        Onset and end of the synchrony drop.
    rupture_people : tuple of str
        The pair that drops (for a group: all pairs of ``withdrawer`` if given).
    withdrawer : str | None
        In a group, everyone's synchrony with this person drops.
    loss : (str, float, float) | None
        (person, start, end) of missing HR samples.
    """

    def __init__(self, n_people=2, rupture=(60.0, 110.0), withdrawer=None, loss=("P2", 140.0, 150.0), seed=1):
        self.model, self.det, self.loss_tracker = make_model(n_people)
        self.rng = np.random.default_rng(seed)
        self.n = n_people
        self.rupture = rupture
        self.withdrawer = withdrawer
        self.loss = loss
        self.k = 0      # grid samples so far
        self.tw = 0     # windows so far

    def _dropping(self, pair) -> bool:
        if self.withdrawer is not None:
            return self.withdrawer in pair
        return pair == self.det.pairs[0]

    def advance(self, seconds: float) -> Update:
        """Produce and apply ``seconds`` more of session (fractions of a grid sample carry over to the next call)."""
        self._carry = getattr(self, "_carry", 0.0) + seconds * FS
        n_new = int(round(self._carry)) if abs(self._carry - round(self._carry)) < 1e-9 else int(self._carry)
        self._carry -= n_new
        t = (self.k + np.arange(n_new)) / FS
        grid, qual = {}, {}
        base = np.arange(self.n)[:, None]
        hr = 62 + 4 * base + 3 * np.sin(2 * np.pi * t / 17.0 + base) + self.rng.normal(0, 0.8, (self.n, n_new))
        eda = (2.5 + 0.8 * base + 0.6 * np.sin(2 * np.pi * t / 53.0 + base) + 0.05 * t / 10
               + self.rng.normal(0, 0.03, (self.n, n_new)))
        q = np.zeros((self.n, n_new), dtype=np.uint8)
        if self.loss is not None:
            who, a, b = self.loss
            i = self.model.participants.index(who)
            sel = (t >= a) & (t < b)
            hr[i, sel] = np.nan
            q[i, sel] = Quality.NO_DATA
        grid["hr"], grid["eda"] = hr, eda
        qual["hr"], qual["eda"] = q, np.zeros_like(q)
        events = []
        for m in ("hr", "eda"):
            for i, p in enumerate(self.model.participants):
                for ev in self.loss_tracker.update(p, m, self.k, qual[m][i]):
                    # as dsp.pipeline does: the detector drops the windows of a lost signal's pairs
                    self.det.note_signal_loss(ev.participant, ev.onset_s, ev.onset_s + self.loss_tracker.min_n / FS,
                                              ev.offset_s)
                    events.append(ev)
        self.k += n_new
        t_end = self.k / FS
        tw = np.arange(self.tw + 1, int(t_end) + 1, dtype=float)
        self.tw = int(t_end)
        windows = {}
        npairs = len(self.det.pairs)
        for m in ("hr", "eda"):
            s = 0.6 + 0.08 * np.sin(tw / 9.0)[None, :] + self.rng.normal(0, 0.05, (npairs, tw.size))
            if self.rupture is not None:
                a, b = self.rupture
                for p, pair in enumerate(self.det.pairs):
                    if self._dropping(pair):
                        dip = np.clip(np.minimum(tw - a, b - tw) / 8.0, 0, 1)
                        s[p] -= 1.1 * dip   # well below chance (r about -0.5): flagged within ~25 s by any preset
            if self.loss is not None:
                who, a, b = self.loss
                for p, pair in enumerate(self.det.pairs):
                    if who in pair and m == "hr":
                        s[p, (tw >= a) & (tw < b + 20)] = np.nan
            ch = np.full((npairs, tw.size), 0.08)
            windows[m] = {"t": tw, "sync": s, "chance": ch}
            events += self.det.update(m, tw, s, ch)
        upd = Update(grid_start=self.k - n_new, grid=grid, quality=qual, windows=windows, events=events)
        self.model.apply(upd, self.det.pair_states())
        for p in self.model.participants:
            for m in ("hr", "eda"):
                lost = (p, m) in self.loss_tracker.currently_lost()
                self.model.set_status(p, m, "lost" if lost else "ok")
        return upd
