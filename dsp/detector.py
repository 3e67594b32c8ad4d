"""Possible-rupture and repair detection from pairwise synchrony (causal, live == offline).

A *rupture* here is a sustained drop of a pair's physiological synchrony from
the level that pair showed while attuned down towards chance (the surrogate
level); *repair* is its return. A flag is a prompt for the facilitator to
check in, never a diagnosis.

Per pair and modality a small state machine with hysteresis runs on every new
synchrony window::

    attuned -> drifting -> possible_rupture -> repairing -> repaired (-> attuned)
                  |                               |
                  +-> attuned (drift recovered)   +-> possible_rupture (relapse)

The drop is measured as a fraction of the distance between the pair's own
baseline and its chance level::

    drop = (baseline_z - sync_z) / (baseline_z - chance_z)      (Fisher z)

so ``drop = 0`` is "as attuned as usual" and ``drop = 1`` is "no more in tune
than two strangers". Because a rupture must fall *towards chance*, the end of a
shared stressor (synchrony high, then back to usual, still far above chance)
does not flag; and because synchrony is NaN wherever either person's signal is
missing, signal loss freezes the machine instead of flagging (it is reported
separately by :class:`SignalLossTracker`).

Pair episodes from the per-modality machines are fused by
:class:`RuptureDetector`: a modality alone flags at lower confidence, both
together at higher confidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .quality import REASONS, Quality

#: States of the per-pair machine, in words for the UI.
STATES = ("calibrating", "attuned", "drifting", "possible_rupture", "repairing", "repaired")
STATE_WORDS = {
    "calibrating": "learning baseline",
    "attuned": "in tune",
    "drifting": "drifting",
    "possible_rupture": "possible rupture",
    "repairing": "repairing",
    "repaired": "repaired",
}


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of the detector; see :data:`PRESETS`.

    All times in seconds of session time.

    Attributes
    ----------
    calibration_s : float
        Seconds of valid synchrony a pair needs before its baseline is trusted
        and anything can be flagged.
    baseline_halflife_s : float
        Half-life of the running (attuned-only) baseline.
    min_margin : float
        Fisher-z distance the baseline must keep above chance; a pair that was
        never clearly in tune cannot "lose" attunement.
    drift_frac, rupture_frac : float
        ``drop`` above which the pair is drifting / in a possible rupture.
    repair_frac, repaired_frac : float
        ``drop`` below which a rupture is repairing / repaired.
    min_rupture_s : float
        How long ``drop`` must stay above ``rupture_frac`` before flagging.
    min_repaired_s : float
        How long ``drop`` must stay below ``repaired_frac`` to call it repaired.
    smooth_s : float
        Time constant of the exponential smoothing of synchrony before the
        state machine (suppresses flicker).
    loss_guard_s : float
        After either person's signal returns from a loss, this long is not
        used for onsets (windows straddling the gap are not trustworthy).
    chance_halflife_s : float
        Half-life of the running mean of the per-window surrogate (chance)
        level; one window's surrogate is too noisy to compare against.
    merge_gap_s : float
        A modality that flags within this long after the pair's last episode
        was repaired reopens that episode instead of starting a new one (HR
        and EDA do not drop and recover at exactly the same moment).
    """

    calibration_s: float = 40.0
    baseline_halflife_s: float = 240.0
    min_margin: float = 0.2
    drift_frac: float = 0.5
    rupture_frac: float = 0.8
    repair_frac: float = 0.6
    repaired_frac: float = 0.4
    min_rupture_s: float = 6.0
    min_repaired_s: float = 8.0
    smooth_s: float = 3.0
    loss_guard_s: float = 20.0
    chance_halflife_s: float = 60.0
    merge_gap_s: float = 20.0

    def validate(self) -> DetectorConfig:
        """Check the hysteresis ordering; return self."""
        if not (0 < self.repaired_frac < self.repair_frac <= self.rupture_frac and self.drift_frac <= self.rupture_frac):
            raise ValueError(
                "Invalid detector thresholds: expected 0 < repaired_frac < repair_frac <= rupture_frac "
                f"and drift_frac <= rupture_frac, but got {self}."
            )
        return self


#: Sensitivity presets. ``conservative`` flags only deep, sustained drops (fewer
#: false alarms, later and fewer flags); ``sensitive`` flags shallower, shorter
#: drops sooner (more prompts, more of them false).
PRESETS = {
    "conservative": DetectorConfig(rupture_frac=0.95, drift_frac=0.6, min_rupture_s=12.0, min_repaired_s=12.0, min_margin=0.25),
    "balanced": DetectorConfig(),
    "sensitive": DetectorConfig(rupture_frac=0.65, drift_frac=0.4, repair_frac=0.5, repaired_frac=0.3, min_rupture_s=3.0, min_repaired_s=6.0, min_margin=0.15),
}


def get_preset(name: str) -> DetectorConfig:
    """Return the :class:`DetectorConfig` of a preset by name."""
    if name not in PRESETS:
        raise ValueError(f"Invalid value for 'preset': expected one of {', '.join(PRESETS)}, but got {name!r}.")
    return PRESETS[name]


def _fisher(r: float) -> float:
    return math.atanh(min(max(r, -0.999), 0.999))


@dataclass
class ModalityEpisode:
    """A possible rupture seen in one modality of one pair."""

    modality: str
    onset_s: float
    flagged_s: float
    nadir_s: float
    nadir_drop: float
    offset_s: float | None = None
    repaired: bool = False


class PairModalityMachine:
    """Streaming state machine for one pair and one modality.

    Feed it one synchrony window at a time with :meth:`step`; it is a pure
    function of the sequence of windows it has seen.
    """

    def __init__(self, modality: str, config: DetectorConfig, step_s: float):
        self.modality = modality
        self.cfg = config
        self.step_s = float(step_s)
        self.state = "calibrating"
        self.state_since = None  # type: float | None
        self.valid_s = 0.0
        self._calib: list[float] = []
        self.baseline_z = math.nan
        self.chance_z = math.nan
        self.smooth_z = math.nan
        self.drop = math.nan
        self._cand_since: float | None = None  # candidate for a transition (rupture or repaired)
        self._drift_since: float | None = None
        self._guard_until = -math.inf
        self._last_valid_t: float | None = None
        self.episode: ModalityEpisode | None = None
        self._alpha_smooth = 1.0 - math.exp(-self.step_s / max(config.smooth_s, 1e-9))
        self._alpha_base = 1.0 - 0.5 ** (self.step_s / max(config.baseline_halflife_s, 1e-9))
        self._alpha_chance = 1.0 - 0.5 ** (self.step_s / max(config.chance_halflife_s, 1e-9))

    # -- helpers ---------------------------------------------------------------------------
    def _set(self, state: str, t: float, events: list) -> None:
        if state != self.state:
            events.append({"type": "state", "modality": self.modality, "state": state, "previous": self.state, "t": t})
            self.state = state
            self.state_since = t

    def step(self, t: float, sync: float, chance: float) -> list[dict]:
        """Advance by one window.

        Parameters
        ----------
        t : float
            Session time of the window's end (s).
        sync : float
            Pearson r of the window (NaN when not computable: signal loss).
        chance : float
            Chance (surrogate) level of r for this pair (NaN when unknown yet).

        Returns
        -------
        events : list of dict
            State changes and episode events (``{"type": "state" | "episode_open" |
            "episode_repaired" ...}``).
        """
        cfg = self.cfg
        events: list[dict] = []
        if not np.isfinite(sync):
            # Signal loss (or not computable): freeze; after it, guard against straddling windows.
            if self._last_valid_t is not None and t - self._last_valid_t > 2 * self.step_s:
                self._guard_until = t + cfg.loss_guard_s
            self._cand_since = None
            return events
        if self._last_valid_t is not None and t - self._last_valid_t > 2 * self.step_s:
            self._guard_until = max(self._guard_until, t + cfg.loss_guard_s)
        self._last_valid_t = t
        z = _fisher(float(sync))
        if np.isfinite(chance):
            c = _fisher(float(chance))
            self.chance_z = c if not np.isfinite(self.chance_z) else self.chance_z + self._alpha_chance * (c - self.chance_z)
        cz = self.chance_z if np.isfinite(self.chance_z) else 0.0
        self.smooth_z = z if not np.isfinite(self.smooth_z) else self.smooth_z + self._alpha_smooth * (z - self.smooth_z)
        self.valid_s += self.step_s

        if self.state == "calibrating":
            self._calib.append(z)
            if self.valid_s >= cfg.calibration_s:
                self.baseline_z = float(np.mean(self._calib))
                self._calib = []
                self._set("attuned", t, events)
            return events

        margin = self.baseline_z - cz
        if margin < cfg.min_margin:
            # Never clearly above chance: nothing to lose. Keep learning the baseline.
            self.drop = math.nan
            self.baseline_z += self._alpha_base * (self.smooth_z - self.baseline_z)
            if self.state in ("drifting",):
                self._set("attuned", t, events)
            return events
        drop = (self.baseline_z - self.smooth_z) / margin
        self.drop = drop
        guarded = t < self._guard_until

        if self.state in ("attuned", "repaired"):
            # Only attuned time teaches the baseline (a rupture must not lower the bar).
            self.baseline_z += self._alpha_base * (self.smooth_z - self.baseline_z)
            if drop >= cfg.drift_frac and not guarded:
                self._drift_since = t
                self._cand_since = t if drop >= cfg.rupture_frac else None
                self._set("drifting", t, events)
            elif self.state == "repaired" and self.state_since is not None and t - self.state_since >= cfg.min_repaired_s:
                self._set("attuned", t, events)
        elif self.state == "drifting":
            if drop < cfg.drift_frac * 0.8 or guarded:
                self._cand_since = None
                self._set("attuned", t, events)
            elif drop >= cfg.rupture_frac:
                if self._cand_since is None:
                    self._cand_since = t
                if t - self._cand_since >= cfg.min_rupture_s:
                    onset = self._drift_since if self._drift_since is not None else self._cand_since
                    self.episode = ModalityEpisode(self.modality, onset, t, t, drop)
                    events.append({"type": "modality_rupture", "modality": self.modality, "t": t, "onset_s": onset})
                    self._cand_since = None
                    self._set("possible_rupture", t, events)
            else:
                self._cand_since = None
        elif self.state in ("possible_rupture", "repairing"):
            ep = self.episode
            if ep is not None and drop > ep.nadir_drop:
                ep.nadir_drop, ep.nadir_s = drop, t
            if self.state == "possible_rupture":
                if drop < cfg.repair_frac:
                    self._set("repairing", t, events)
                    self._cand_since = t if drop < cfg.repaired_frac else None
            else:  # repairing
                if drop >= cfg.rupture_frac:
                    self._cand_since = None
                    self._set("possible_rupture", t, events)
                elif drop < cfg.repaired_frac:
                    if self._cand_since is None:
                        self._cand_since = t
                    if t - self._cand_since >= cfg.min_repaired_s:
                        if ep is not None:
                            ep.offset_s, ep.repaired = self._cand_since, True
                        events.append({"type": "modality_repaired", "modality": self.modality, "t": t,
                                       "offset_s": self._cand_since})
                        self._cand_since = None
                        self.episode = None
                        self._set("repaired", t, events)
                else:
                    self._cand_since = None
        return events

    def snapshot(self) -> dict:
        """Current numbers for the UI (baseline and chance as r)."""
        return {
            "state": self.state,
            "baseline": math.tanh(self.baseline_z) if np.isfinite(self.baseline_z) else None,
            "chance": math.tanh(self.chance_z) if np.isfinite(self.chance_z) else None,
            "sync": math.tanh(self.smooth_z) if np.isfinite(self.smooth_z) else None,
            "drop": None if not np.isfinite(self.drop) else float(self.drop),
        }


@dataclass
class Episode:
    """A possible rupture of one pair (all modalities fused).

    Times are seconds of session time (from the session origin). ``depth`` is
    the deepest ``drop`` reached: 1.0 means synchrony fell to chance level.
    """

    id: int
    pair: tuple[str, str]
    people: list[str]
    onset_s: float
    flagged_s: float
    nadir_s: float
    offset_s: float | None
    repaired: bool
    depth: float
    modalities: list[str]
    confidence: float
    context: dict[str, str] = field(default_factory=dict)
    open: bool = True

    @property
    def time_to_repair_s(self) -> float | None:
        """Seconds from onset to repair (``None`` while unrepaired)."""
        return None if self.offset_s is None or not self.repaired else self.offset_s - self.onset_s

    def to_json(self, time_offset: float = 0.0) -> dict:
        """The ``attune.analysis/1`` episode record; ``time_offset`` is added to every time."""
        r = lambda x: None if x is None else round(float(x) + time_offset, 3)  # noqa: E731
        return {
            "kind": "rupture",
            "pair": list(self.pair),
            "people": list(self.people),
            "onset_s": r(self.onset_s),
            "nadir_s": r(self.nadir_s),
            "offset_s": r(self.offset_s),
            "repaired": bool(self.repaired),
            "time_to_repair_s": None if self.time_to_repair_s is None else round(self.time_to_repair_s, 3),
            "depth": round(float(self.depth), 3),
            "modalities": list(self.modalities),
            "confidence": round(float(self.confidence), 3),
            "context": dict(self.context),
        }


def _confidence(n_modalities_available: int, modal_eps: list[ModalityEpisode]) -> float:
    """Confidence in [0, 1]: more when modalities agree and the drop is deep."""
    depth = max((e.nadir_drop for e in modal_eps), default=0.0)
    depth_term = min(max(depth - 0.8, 0.0) / 0.6, 1.0)  # 0 at threshold, 1 at well below chance
    if len(modal_eps) >= 2:
        return round(0.75 + 0.25 * depth_term, 3)
    # one modality: lower when the other one was available and stayed in tune
    base = 0.45 if n_modalities_available >= 2 else 0.55
    return round(base + 0.25 * depth_term, 3)


class RuptureDetector:
    """All pairs, all modalities: per-modality machines fused into pair episodes.

    Parameters
    ----------
    participants : list of str
        Participant ids; pairs are ``itertools.combinations`` order, i.e.
        ``np.triu_indices(n, 1)``.
    modalities : sequence of str
        Synchrony modalities, e.g. ``("hr", "eda")``.
    step_s : float
        Seconds between consecutive synchrony windows.
    config : DetectorConfig | str
        A config or a preset name.
    """

    def __init__(self, participants, modalities=("hr", "eda"), step_s: float = 1.0, config="balanced"):
        self.participants = list(participants)
        self.modalities = tuple(modalities)
        self.cfg = (get_preset(config) if isinstance(config, str) else config).validate()
        n = len(self.participants)
        iu = np.triu_indices(n, 1)
        self.pairs = [(self.participants[i], self.participants[j]) for i, j in zip(*iu)]
        self.machines = {
            (p, m): PairModalityMachine(m, self.cfg, step_s) for p in range(len(self.pairs)) for m in self.modalities
        }
        self.episodes: list[Episode] = []
        self._open: dict[int, Episode] = {}
        self._modal_eps: dict[int, dict[str, ModalityEpisode]] = {}
        self._pending: dict[str, list] = {}
        self._last_closed: dict[int, Episode] = {}

    def update(self, modality: str, t_end: np.ndarray, sync: np.ndarray, chance: np.ndarray) -> list[dict]:
        """Feed new synchrony windows of one modality.

        Windows are queued per modality and processed in time order once every
        modality has delivered that time, each time step visiting the
        modalities in a fixed order. So the episodes do not depend on how the
        windows were chunked or in which order the modalities were fed.

        Parameters
        ----------
        modality : str
        t_end : ndarray, shape (n_windows,)
            Session time of each window's end (s), increasing.
        sync : ndarray, shape (n_pairs, n_windows)
            Synchrony (Pearson r, NaN where missing).
        chance : ndarray, shape (n_pairs, n_windows) or (n_pairs,)
            Chance level of r per pair.

        Returns
        -------
        events : list of dict
            State changes (``type="state"``, with ``pair``) and pair-episode
            events (``type="episode_open"`` / ``"episode_update"`` /
            ``"episode_repaired"``, with ``episode`` an :class:`Episode`).
        """
        if modality not in self.modalities:
            raise ValueError(
                f"Invalid value for 'modality': expected one of {', '.join(self.modalities)}, but got {modality!r}."
            )
        t_end = np.asarray(t_end, dtype=float)
        sync = np.asarray(sync, dtype=float).reshape(len(self.pairs), -1)
        chance = np.asarray(chance, dtype=float)
        if chance.ndim == 1:
            chance = np.repeat(chance[:, None], t_end.size, axis=1)
        q = self._pending.setdefault(modality, [])
        for w, t in enumerate(t_end):
            q.append((float(t), sync[:, w], chance[:, w]))
        return self._drain(final=False)

    def _drain(self, final: bool) -> list[dict]:
        events: list[dict] = []
        queues = [self._pending.get(m, []) for m in self.modalities]
        if final:
            horizon = max((q[-1][0] for q in queues if q), default=-np.inf)
        else:
            if any(not q for q in queues):
                return events
            horizon = min(q[-1][0] for q in queues)
        heads = [0] * len(queues)
        while True:
            ts = [queues[i][heads[i]][0] for i in range(len(queues)) if heads[i] < len(queues[i])]
            if not ts:
                break
            t = min(ts)
            if t > horizon + 1e-9:
                break
            for i, m in enumerate(self.modalities):
                if heads[i] < len(queues[i]) and abs(queues[i][heads[i]][0] - t) < 1e-6:
                    _, sv, cv = queues[i][heads[i]]
                    heads[i] += 1
                    for p in range(len(self.pairs)):
                        for ev in self.machines[(p, m)].step(t, float(sv[p]), float(cv[p])):
                            ev["pair"] = self.pairs[p]
                            events.extend(self._fuse(p, ev))
        for i, m in enumerate(self.modalities):
            self._pending[m] = queues[i][heads[i]:]
        return events

    def _fuse(self, p: int, ev: dict) -> list[dict]:
        out = [ev] if ev["type"] == "state" else []
        eps = self._modal_eps.setdefault(p, {})
        if ev["type"] == "modality_rupture":
            mep = self.machines[(p, ev["modality"])].episode
            eps[ev["modality"]] = mep
            ep = self._open.get(p)
            last = self._last_closed.get(p)
            if ep is None and last is not None and ev["t"] - last.offset_s <= self.cfg.merge_gap_s + self.cfg.min_repaired_s:
                # the same rupture seen late in another modality (or a relapse): reopen it
                ep = last
                ep.open, ep.repaired, ep.offset_s = True, False, None
                self._open[p] = ep
            if ep is None:
                ep = Episode(
                    id=len(self.episodes) + 1, pair=self.pairs[p], people=self._who(p), onset_s=mep.onset_s,
                    flagged_s=ev["t"], nadir_s=mep.nadir_s, offset_s=None, repaired=False, depth=mep.nadir_drop,
                    modalities=[ev["modality"]], confidence=0.0,
                )
                self._open[p] = ep
                self.episodes.append(ep)
                kind = "episode_open"
            else:
                ep.onset_s = min(ep.onset_s, mep.onset_s)
                if ev["modality"] not in ep.modalities:
                    ep.modalities.append(ev["modality"])
                kind = "episode_update"
            ep.confidence = _confidence(self._available(p), list(eps.values()))
            out.append({"type": kind, "pair": self.pairs[p], "t": ev["t"], "episode": ep})
        elif ev["type"] == "modality_repaired":
            ep = self._open.get(p)
            eps.pop(ev["modality"], None)
            if ep is not None and not any(
                self.machines[(p, m)].state in ("possible_rupture", "repairing") for m in self.modalities
            ):
                ep.offset_s, ep.repaired, ep.open = ev["offset_s"], True, False
                del self._open[p]
                self._last_closed[p] = ep
                self._modal_eps[p] = {}
                out.append({"type": "episode_repaired", "pair": self.pairs[p], "t": ev["t"], "episode": ep})
        # keep nadir/depth of the open episode current
        ep = self._open.get(p)
        if ep is not None:
            for m in self.modalities:
                mep = self.machines[(p, m)].episode
                if mep is not None and mep.nadir_drop >= ep.depth:
                    ep.depth, ep.nadir_s = mep.nadir_drop, mep.nadir_s
        return out

    def _available(self, p: int) -> int:
        return sum(1 for m in self.modalities if self.machines[(p, m)].state != "calibrating")

    def _who(self, p: int) -> list[str]:
        """Who is disconnecting: in a group, the member of the pair most of whose pairs are dropping."""
        a, b = self.pairs[p]
        if len(self.participants) < 3:
            return [a, b]
        score = {}
        for person in (a, b):
            mine = [q for q, pr in enumerate(self.pairs) if person in pr]
            dropping = sum(
                1 for q in mine
                if any(self.machines[(q, m)].state in ("drifting", "possible_rupture", "repairing") for m in self.modalities)
            )
            score[person] = dropping / len(mine)
        if abs(score[a] - score[b]) < 1e-9:
            return [a, b]
        return [max(score, key=score.get)]

    def pair_states(self) -> list[dict]:
        """Per pair: overall state (worst over modalities) and per-modality snapshots."""
        order = {s: i for i, s in enumerate(("calibrating", "attuned", "repaired", "drifting", "repairing", "possible_rupture"))}
        out = []
        for p, pair in enumerate(self.pairs):
            snaps = {m: self.machines[(p, m)].snapshot() for m in self.modalities}
            worst = max((s["state"] for s in snaps.values()), key=lambda s: order[s])
            if all(s["state"] == "calibrating" for s in snaps.values()):
                worst = "calibrating"
            out.append({"pair": pair, "state": worst, "words": STATE_WORDS[worst], "modalities": snaps})
        return out

    def finish(self, t_end: float | None = None) -> list[Episode]:
        """Close the session: process what is queued; open episodes stay unrepaired.

        Returns
        -------
        episodes : list of Episode
        """
        self._drain(final=True)
        for ep in self._open.values():
            ep.open = False
        self._open.clear()
        return self.episodes


class SignalLossTracker:
    """Streaming runs of unusable samples per participant and modality.

    Feed it each new block of grid quality codes; it reports periods of at
    least ``min_duration_s`` during which the signal was missing or
    unreliable, with the most common reason.
    """

    def __init__(self, fs: float, min_duration_s: float = 2.0):
        self.fs = float(fs)
        self.min_n = max(1, int(round(min_duration_s * fs)))
        self._runs: dict[tuple[str, str], dict] = {}
        self.periods: list[dict] = []

    def update(self, participant: str, modality: str, start: int, quality: np.ndarray) -> list[dict]:
        """Feed codes for grid indices ``start .. start + len(quality) - 1``.

        Returns
        -------
        events : list of dict
            ``{"type": "signal_loss", ...}`` when a run reaches the minimum duration,
            ``{"type": "signal_back", ...}`` when it ends.
        """
        q = np.asarray(quality)
        bad = ~((q == Quality.OK) | (q == Quality.CORRECTED))
        key = (participant, modality)
        run = self._runs.get(key)
        events = []
        if q.size == 0:
            return events
        # boundaries of bad runs within the block, vectorised
        edges = np.flatnonzero(np.diff(np.r_[0, bad.astype(np.int8), 0]))
        starts, stops = edges[::2], edges[1::2]
        for s, e in zip(starts, stops):
            codes = q[s:e]
            if run is not None and s == 0 and run["end"] == start:
                run["end"] = start + e
                run["codes"] = np.bincount(codes, minlength=len(Quality)) + run["codes"]
            else:
                if run is not None:
                    events += self._close(key, run)
                run = {"start": start + s, "end": start + e, "codes": np.bincount(codes, minlength=len(Quality)), "reported": None}
            if run["reported"] is None and run["end"] - run["start"] >= self.min_n:
                rec = {"participant": participant, "modality": modality, "onset_s": run["start"] / self.fs,
                       "offset_s": None, "reason": self._reason(run["codes"])}
                run["reported"] = rec
                self.periods.append(rec)
                events.append({"type": "signal_loss", **rec})
            if e < q.size:  # the run ended inside this block
                events += self._close(key, run)
                run = None
        if run is not None and run["end"] < start + q.size:
            events += self._close(key, run)
            run = None
        if run is None:
            self._runs.pop(key, None)
        else:
            self._runs[key] = run
        return events

    def _close(self, key, run) -> list[dict]:
        rec = run.get("reported")
        if rec is None:
            return []
        rec["offset_s"] = run["end"] / self.fs
        rec["reason"] = self._reason(run["codes"])
        return [{"type": "signal_back", **rec}]

    @staticmethod
    def _reason(counts: np.ndarray) -> str:
        counts = np.asarray(counts).copy()
        counts[[Quality.OK, Quality.CORRECTED]] = 0
        # warm-up is the least informative reason: prefer any other
        if counts.sum() > counts[Quality.WARMUP]:
            counts[Quality.WARMUP] = 0
        return REASONS.get(Quality(int(np.argmax(counts))), "unknown")

    def currently_lost(self) -> list[tuple[str, str]]:
        """(participant, modality) whose signal is lost right now."""
        return [k for k, r in self._runs.items() if r.get("reported") is not None]


def arousal_trend(times: np.ndarray, level: np.ndarray, onset: float, end: float, threshold: float = 0.3) -> str:
    """Arousal context of one person during an episode.

    Parameters
    ----------
    times : ndarray, shape (n,)
        Session times (s).
    level : ndarray, shape (n,)
        The person's arousal level, standardised to their own session
        variability (e.g. z-scored HR; NaN allowed).
    onset, end : float
        The episode's span (s).
    threshold : float
        Change (in standard deviations) over the span that counts as a trend.

    Returns
    -------
    trend : {"rising", "falling", "steady"}
    """
    sel = (times >= onset) & (times <= end) & np.isfinite(level)
    if sel.sum() < 4:
        return "steady"
    t, y = times[sel], level[sel]
    slope = np.polyfit(t - t[0], y, 1)[0]
    change = slope * (t[-1] - t[0])
    if change > threshold:
        return "rising"
    if change < -threshold:
        return "falling"
    return "steady"


def episode_dict(ep: Episode) -> dict:
    """A plain dict of an :class:`Episode` (for events and the recorder)."""
    d = asdict(ep)
    d["pair"] = list(ep.pair)
    d["time_to_repair_s"] = ep.time_to_repair_s
    return d
