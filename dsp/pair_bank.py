"""Every pair of a large group in arrays, stepped together by one compiled function (the detector's fast path).

:class:`attune_monitor.dsp.detector.PairMachine` and :class:`~attune_monitor.dsp.detector.ModalityTrack` are the
reference: one Python object per pair and modality, stepped one by one. For a group of many people (hundreds to
thousands of pairs) that loop dominates the live tick, so :class:`~attune_monitor.dsp.detector.RuptureDetector`
holds the same state here instead, as a struct of arrays, and steps every pair of a time step, the shared events
before it and the person-to-group ties after it in one call of the numba kernel
(:func:`attune_monitor.dsp._pair_kernels.step_all`), which returns compact records that the detector turns into
the same typed events, in the same order. ``detector.machines`` then holds :class:`PairView` objects: read-only
views with the reference classes' attributes and methods (``state``, ``evidence``, ``tracks[m].baseline_z``,
``snapshots()``, ...), read from the arrays.

The bank is used above a size (``detector.PAIR_BANK_MIN_PAIRS``) and only with arming and without the group prior
(the presets); numba is imported only then (``_pair_kernels`` imports it), so a dyad never loads it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from . import _kernels
from .detector import (
    STATES,
    DetectorConfig,
    ModalityTrack,
    PairEpisodeDraft,
    PairMachine,
    PairState,
    arm_tail,
    pair_words,
)

__all__ = ["available", "PairBank", "PairStateTable", "PairView", "TrackView", "round4", "trim_mean_rows"]


def available() -> bool:
    """True when numba can be imported (the bank needs its kernel)."""
    return _kernels.module_available("_pair_kernels")


def trim_mean_rows(values: np.ndarray, proportiontocut: float) -> np.ndarray:
    """:func:`attune_monitor.dsp.detector.trim_mean` of each row, bitwise (the same partition and mean per row).

    Parameters
    ----------
    values : ndarray, shape (n_rows, n), float64
    proportiontocut : float
        Share cut at each end, 0 <= proportiontocut <= 0.5.

    Returns
    -------
    ndarray, shape (n_rows,)
        NaN for a row that holds a NaN, and for every row when ``n`` is 0 or everything is cut.
    """
    values = np.asarray(values, dtype=np.float64)
    k, n = values.shape
    lowercut = int(proportiontocut * n)
    uppercut = n - lowercut
    if lowercut > uppercut:
        raise ValueError(f"Invalid value for 'proportiontocut': at most half of the values can be cut at each end, "
                         f"but got {proportiontocut}.")
    if n == 0 or lowercut == uppercut or k == 0:
        return np.full(k, np.nan)
    # np.partition and np.mean along the last axis treat each row as they treat one 1-D array
    out = np.mean(np.partition(values, (lowercut, uppercut - 1), axis=-1)[:, lowercut:uppercut], axis=-1)
    out[np.isnan(values).any(axis=-1)] = np.nan
    return out


class PairBank:
    """The state of every pair's :class:`PairMachine` and its tracks, as arrays (arming, no group prior).

    Parameters
    ----------
    modalities : sequence of str
    config : DetectorConfig
        With ``arming`` and ``group_prior_weight == 0``.
    step_s, window_s : float
        As :class:`PairMachine`.
    pairs : tuple of ndarray
        ``(i, j)`` person indices of each pair (``np.triu_indices(n_people, 1)``), shape (n_pairs,) each.
    n_people : int
    h_scale : float
        Every pair's threshold factor (:attr:`PairMachine.h_scale`).
    tie_h : float | None
        The person-to-group tie threshold (``threshold * tie_h_scale``); None: no ties (fewer than 3 people).

    Attributes
    ----------
    PF, PI, EPM, TF, TI, ARM : ndarray
        The state (layout: :mod:`attune_monitor.dsp._pair_kernels`): pair floats (n_pairs, NPF), pair ints
        (n_pairs, NPI), the open draft's modalities (n_pairs, n_mod), track floats (n_pairs, n_mod, NTF), track
        ints (n_pairs, n_mod, NTI), arming spans (n_pairs, n_mod, maxlen, 3).
    tie_ev : ndarray, shape (n_people,)
        Each person's tie evidence (:attr:`RuptureDetector._tie_ev`).
    """

    def __init__(self, modalities, config: DetectorConfig, step_s: float, window_s: float, pairs, n_people: int,
                 h_scale: float, tie_h: float | None):
        from . import _pair_kernels as K

        if not config.arming or config.group_prior_weight > 0:
            raise ValueError("Invalid config for the pair bank: it needs arming=True and group_prior_weight=0 "
                             "(use the per-pair machines for other configs).")
        self.K = K
        layout = (K.T_LASTV, K.T_S0, K.T_TEST, K.T_NEED, K.J_FULL, K.J_USED, K.P_HSCALE, K.E_NADIR, K.I_NMODS)
        assert layout == (9, 12, 17, 18, 1, 4, 11, 15, 2), "_bind_fields' columns must follow _pair_kernels' layout"
        self.modalities = tuple(modalities)
        self.cfg = config
        self.step_s, self.window_s = float(step_s), float(window_s)
        self.pa, self.pb = (np.ascontiguousarray(x, dtype=np.int64) for x in pairs)
        n_pairs, n_mod = self.pa.size, len(self.modalities)
        self.n_pairs, self.n_mod = n_pairs, n_mod
        maxlen = max(2, int(round(config.arm_span_s / self.step_s)))
        nan = math.nan
        self.PF = np.full((n_pairs, K.NPF), nan)
        self.PF[:, K.P_EV] = 0.0
        self.PF[:, K.P_FLOOR] = -math.inf
        self.PF[:, K.P_HSCALE] = h_scale
        self.PI = np.zeros((n_pairs, K.NPI), dtype=np.int64)
        self.PI[:, K.I_STATE] = K.S_CAL
        self.EPM = np.full((n_pairs, max(n_mod, 1)), -1, dtype=np.int64)
        self.TF = np.full((n_pairs, n_mod, K.NTF), nan)
        self.TF[:, :, K.T_VALID] = 0.0
        self.TF[:, :, K.T_GUARD] = -math.inf
        self.TF[:, :, K.T_S0:K.T_S0 + 5] = 0.0
        self.TI = np.zeros((n_pairs, n_mod, K.NTI), dtype=np.int64)
        self.ARM = np.zeros((n_pairs, n_mod, maxlen, 3))
        self.tie_ev = np.zeros(n_people)
        if tie_h is not None:
            self.pairs_of = np.array([np.flatnonzero((self.pa == i) | (self.pb == i)) for i in range(n_people)],
                                     dtype=np.int64).reshape(n_people, n_people - 1)
        else:
            self.pairs_of = np.zeros((0, 0), dtype=np.int64)
        self.weights = np.array([config.weight(m) for m in self.modalities], dtype=float)
        self.prm = self._params(config, tie_h)
        self._rec_cap = 0
        self.rec_i = self.rec_f = np.zeros((0, 0))
        self._no_shared = np.zeros(0)
        self._no_block = np.zeros(n_pairs, dtype=np.bool_)
        self._words = [pair_words(st) for st in STATES]  # each state's words (out of tune: without its "since")

    def _params(self, cfg: DetectorConfig, tie_h: float | None) -> np.ndarray:
        """The config vector of the kernel (``_pair_kernels.C_*``), derived exactly as the Python classes do."""
        K, step = self.K, self.step_s
        prm = np.zeros(K.N_PRM)
        prm[K.C_STEP], prm[K.C_WINDOW] = step, self.window_s
        prm[K.C_A_SMOOTH] = 1.0 - math.exp(-step / max(cfg.smooth_s, 1e-9))
        prm[K.C_A_BASE] = 1.0 - 0.5 ** (step / max(cfg.baseline_halflife_s, 1e-9))
        prm[K.C_A_CHANCE] = 1.0 - 0.5 ** (step / max(cfg.chance_halflife_s, 1e-9))
        prm[K.C_GUARD], prm[K.C_MIN_MARGIN] = cfg.loss_guard_s, cfg.min_margin
        prm[K.C_ARM_MIN], prm[K.C_ARM_SIGMA], prm[K.C_TRIM] = cfg.arm_min_excess, cfg.arm_sigma, cfg.calibration_trim
        prm[K.C_DROP_CLIP], prm[K.C_Z_SD], prm[K.C_REF_SD] = cfg.drop_clip, cfg.z_sd, cfg.ref_chance_sd
        prm[K.C_SINGLE_H] = cfg.single_h_factor
        prm[K.C_LEARNED] = 1.0 if cfg.evidence == "learned" else 0.0
        prm[K.C_AR_EVIDENCE] = 1.0 if cfg.arousal_evidence else 0.0
        prm[K.C_CUSUM_K], prm[K.C_CUSUM_H] = cfg.cusum_k, cfg.cusum_h
        prm[K.C_AR_FLOOR], prm[K.C_AR_CLIP], prm[K.C_AR_K], prm[K.C_AR_H] = (
            cfg.arousal_floor, cfg.arousal_clip, cfg.arousal_k, cfg.arousal_h)
        prm[K.C_AR_IN_TUNE], prm[K.C_AR_RUPTURE] = cfg.arousal_in_tune, cfg.arousal_rupture
        prm[K.C_L_CLIP], prm[K.C_L_K], prm[K.C_L_GATE] = cfg.learned_clip, cfg.learned_k, cfg.learned_sync_gate
        prm[K.C_THRESHOLD], prm[K.C_DRIFT] = cfg.threshold, cfg.drift_threshold
        prm[K.C_ONSET_FRAC], prm[K.C_LEARN_EV] = cfg.onset_frac, cfg.learn_evidence
        prm[K.C_MIN_REPAIRED], prm[K.C_REPAIR], prm[K.C_REPAIRED], prm[K.C_RELAPSE] = (
            cfg.min_repaired_s, cfg.repair_frac, cfg.repaired_frac, cfg.relapse_frac)
        prm[K.C_REPAIR_DELAY], prm[K.C_ONSET_DELAY], prm[K.C_LAPSE] = (
            cfg.repair_delay_s, cfg.onset_delay_s, cfg.lapse_s)
        prm[K.C_CAP_DOWN], prm[K.C_CAP_UP] = cfg.baseline_cap_down, cfg.baseline_cap_up
        prm[K.C_TIE_H] = math.nan if tie_h is None else tie_h
        prm[K.C_TWO] = 2.0
        prm[K.C_MULTI] = 1.0 if len(self.modalities) >= 2 else 0.0
        prm[K.C_ARMING] = 1.0
        prm[K.C_ARM_TAIL], prm[K.C_ARM_SPAN] = arm_tail(cfg), cfg.arm_span_s
        return prm

    def step(self, t: float, sync: np.ndarray, chance: np.ndarray, chance_sd: np.ndarray, blocked: np.ndarray | None,
             arousal: np.ndarray, llr: np.ndarray, shared_t: list[float]) -> tuple[list, list]:
        """Step every pair once (after the shared events ``shared_t`` reached at ``t``).

        Parameters
        ----------
        t : float
        sync, chance, chance_sd : ndarray, shape (n_pairs, n_mod)
            This step's windows (NaN where missing).
        blocked : ndarray of bool, shape (n_pairs,) | None
            Pairs whose windows hold a signal loss (None: none).
        arousal, llr : ndarray, shape (n_pairs,)
        shared_t : list of float
            Times of the shared events the detector reached at this step, in order.

        Returns
        -------
        records : list of list
            Per record ``[kind, pair, a, b, c, d]`` (``_pair_kernels.K_*``; armed tracks are settled here and not
            returned).
        times : list of list
            Per record ``[t, x, y]``.
        """
        K = self.K
        need = self.n_pairs * (8 + 2 * self.n_mod) * (1 + len(shared_t)) + 16
        if need > self._rec_cap:
            self._rec_cap = need
            self.rec_i = np.zeros((need, K.NRI), dtype=np.int64)
            self.rec_f = np.zeros((need, K.NRF))
        n = K.step_all(float(t), np.asarray(shared_t, dtype=float) if shared_t else self._no_shared,
                       sync, chance, chance_sd, self._no_block if blocked is None else blocked,
                       arousal, llr, self.prm, self.weights, self.PF, self.PI, self.EPM, self.TF, self.TI, self.ARM,
                       self.pa, self.pb, self.pairs_of, self.tie_ev, self.rec_i, self.rec_f)
        if n > self._rec_cap:  # pragma: no cover - the capacity bounds what one step can emit
            raise RuntimeError(f"pair bank: {n} records in one step, more than the {self._rec_cap} allowed")
        recs, times = self.rec_i[:n].tolist(), self.rec_f[:n].tolist()
        if any(r[0] == K.K_ARMED for r in recs):
            keep, armed = [], []
            for r, tm in zip(recs, times):
                if r[0] == K.K_ARMED:
                    armed.append(r)
                else:
                    keep.append((r, tm))
            self._settle_baselines(armed)
            recs, times = [r for r, _ in keep], [tm for _, tm in keep]
        return recs, times

    def arm_span(self, p: int, m: int) -> np.ndarray:
        """The arming span of pair ``p``, modality index ``m``, oldest first, shape (n_windows, 3)."""
        K = self.K
        head, ln = int(self.TI[p, m, K.J_HEAD]), int(self.TI[p, m, K.J_LEN])
        idx = (head + np.arange(ln)) % self.ARM.shape[2]
        return self.ARM[p, m, idx]

    def _settle_baselines(self, armed: list) -> None:
        """The baselines of the tracks armed this step: ``trim_mean`` of each span's z, as ``ModalityTrack.step``.

        ``armed``: the step's :data:`~attune_monitor.dsp._pair_kernels.K_ARMED` records ``[kind, pair, modality,
        first, ., .]`` (each track at most once). The spans of one length are trimmed together
        (:func:`trim_mean_rows`, bitwise ``trim_mean`` of each): when a group arms, most of its tracks arm within a
        few steps.
        """
        K = self.K
        rec = np.array(armed, dtype=np.int64).reshape(-1, K.NRI)
        p, m, first = rec[:, 1], rec[:, 2], rec[:, 3] != 0
        head, ln = self.TI[p, m, K.J_HEAD], self.TI[p, m, K.J_LEN]
        for n in np.unique(ln).tolist():
            sel = ln == n
            idx = (head[sel, None] + np.arange(n)) % self.ARM.shape[2]
            b = trim_mean_rows(self.ARM[p[sel, None], m[sel, None], idx, 0], self.cfg.calibration_trim)
            self.TF[p[sel], m[sel], K.T_BASE] = b
            again = first[sel]
            self.TF[p[sel][again], m[sel][again], K.T_FIRST] = b[again]

    def states(self, pairs: list) -> list[dict]:
        """``RuptureDetector.pair_states()`` of the bank: per pair the dict the per-pair machines give, in bulk.

        The rows of :meth:`table` (the same keys and values as ``PairMachine`` / ``ModalityTrack.snapshot``).
        """
        return self.table(pairs).rows()

    def any_calibrating(self) -> bool:
        """True while some pair is still learning its baseline (state calibrating)."""
        return bool(np.any(self.PI[:, self.K.I_STATE] == self.K.S_CAL))

    def table(self, pairs: list) -> PairStateTable:
        """Every pair's state now, as a :class:`PairStateTable` (a copy of a few columns; no dict is built here).

        Parameters
        ----------
        pairs : list of (str, str)
            The pairs' names, in the bank's order.
        """
        K = self.K
        return PairStateTable(pairs, self.modalities, self.PI[:, K.I_STATE].copy(),
                              self.PF[:, [K.P_OOT, K.P_EV, K.P_SDROP]],
                              self.TF[:, :, [K.T_BASE, K.T_CZ, K.T_SZ, K.T_DROP, K.T_EXC, K.T_SE, K.T_NEED]],
                              self.TI[:, :, K.J_FULL].copy(), self._words, (K.S_CAL, K.S_NIT, K.S_OOT))


class LazyRows(Sequence):
    """A read-only sequence of dicts built when first read (:meth:`rows`) and shared by later readers.

    Subclasses give ``__len__`` (without building) and ``_build``; indexing and iteration read :meth:`rows`.
    """

    _rows: list[dict] | None = None

    def rows(self) -> list[dict]:
        """The dicts (built on the first call; the same list after)."""
        if self._rows is None:
            self._rows = self._build()
        return self._rows

    def _build(self) -> list[dict]:
        raise NotImplementedError

    def __getitem__(self, k):
        return self.rows()[k]

    def __iter__(self):
        return iter(self.rows())


class PairStateTable(LazyRows):
    """Every pair's state at one moment, column by column; each pair's dict built when first read.

    ``RuptureDetector.pair_states()`` of a large group without its cost on the live tick: the detector hands the
    view model this table (a copy of the bank's columns, taken once per time step), and the per-pair dicts, with
    their per-modality dicts, are built by the first reader (:meth:`rows`) and shared by later ones. As a sequence
    it reads like the list ``pair_states()`` returns: ``len``, indexing and iteration give the same dicts, which
    are to be treated as read-only.

    Parameters
    ----------
    pairs : list of (str, str)
        Shape (n_pairs,).
    modalities : tuple of str
        Shape (n_mod,).
    codes : ndarray of int, shape (n_pairs,)
        Each pair's state, an index into :data:`attune_monitor.dsp.detector.STATES`.
    pair_cols : ndarray, shape (n_pairs, 3)
        Per pair: out of tune since (NaN: not), evidence, smoothed drop.
    track_cols : ndarray, shape (n_pairs, n_mod, 6)
        Per pair and modality, in Fisher z: baseline (NaN until armed), chance, smoothed synchrony, drop,
        the arming excess over chance and its standard error.
    full : ndarray of int, shape (n_pairs, n_mod)
        Nonzero where the track's arming span has been full (an unarmed track is then not in tune).
    words : list of str
        Each state's words (:func:`attune_monitor.dsp.detector.pair_words` without a "since").
    unarmed : tuple of int
        The state codes of a pair that is not armed: calibrating, not in tune, out of tune.
    """

    def __init__(self, pairs: list, modalities: tuple, codes: np.ndarray, pair_cols: np.ndarray,
                 track_cols: np.ndarray, full: np.ndarray, words: list, unarmed: tuple):
        self.pairs = pairs
        self.modalities = tuple(modalities)
        self.codes = codes
        self.pair_cols, self.track_cols, self.full = pair_cols, track_cols, full
        self._words, self._unarmed = words, unarmed

    def __len__(self) -> int:
        return len(self.pairs)

    def states(self) -> list:
        """Each pair's ``"state"`` (a :class:`~attune_monitor.dsp.detector.PairState`), in pair order, no dict built.

        Returns
        -------
        list, length n_pairs
        """
        return [STATES[c] for c in self.codes.tolist()]

    def drops(self) -> np.ndarray:
        """Each pair's smoothed drop, shape (n_pairs,): the dicts' ``"drop"`` with NaN where they say None."""
        d = self.pair_cols[:, 2].astype(float)
        d[~np.isfinite(d)] = np.nan
        return d

    def rows(self) -> list[dict]:
        """Per pair the dict of ``RuptureDetector.pair_states()`` (built on the first call; the same list after).

        The same keys and values, each number computed by the same Python function (``math.tanh``, ``round``)
        as ``PairMachine`` / ``ModalityTrack.snapshot``, from per-field lists instead of attribute reads.
        """
        return super().rows()

    def _build(self) -> list[dict]:
        isfinite, tanh = math.isfinite, math.tanh
        cal, nit = STATES[self._unarmed[0]], STATES[self._unarmed[1]]
        codes = self.codes.tolist()
        states = [STATES[c] for c in codes]
        oot = [None if x != x else x for x in self.pair_cols[:, 0].tolist()]
        evidence = self.pair_cols[:, 1].tolist()
        drop = [x if isfinite(x) else None for x in self.pair_cols[:, 2].tolist()]
        snaps = []
        for m in range(len(self.modalities)):
            tc = self.track_cols[:, m]
            base, chance, sync, d = (tc[:, c].tolist() for c in range(4))
            ex, se = round4(tc[:, 4]), round4(tc[:, 5])
            need = [round(x, 2) if isfinite(x) else None for x in tc[:, 6].tolist()]
            full = self.full[:, m].tolist()
            snaps.append([
                {"state": st if armed else (nit if f else cal),
                 "baseline": tanh(b) if armed else None,
                 "chance": tanh(c) if isfinite(c) else None,
                 "sync": tanh(sz) if isfinite(sz) else None,
                 "drop": dd if isfinite(dd) else None,
                 "armed": armed,
                 "excess": e,
                 "excess_se": s,
                 "arm_need": nd}
                for st, b, c, sz, dd, e, s, nd, f, armed in zip(states, base, chance, sync, d, ex, se, need, full,
                                                               map(isfinite, base))])
        mods = self.modalities
        unarmed, words = self._unarmed, self._words
        return [{"pair": pair, "state": st, "words": words[code] if since is None else pair_words(st, since),
                 "evidence": ev, "drop": dr,
                 "armed": code not in unarmed, "out_of_tune_since": since, "modalities": dict(zip(mods, row))}
                for pair, st, code, since, ev, dr, row in zip(self.pairs, states, codes, oot, evidence, drop,
                                                              zip(*snaps))]


def round4(x: np.ndarray) -> list:
    """``[round(v, 4) if math.isfinite(v) else None for v in x]``, bit for bit, mostly vectorised.

    ``round`` is the dearest call of :meth:`PairBank.states`. Where ``y = x * 1e4`` is more than 1e-6 from a
    half-integer (and below 1e15), the integer nearest to ``x * 10**4`` is ``rint(y)`` (the product's rounding
    error is far smaller than that distance), and ``k / 1e4`` (both exact) is the double nearest to ``k * 10**-4``,
    which is what ``round(v, 4)`` returns; the others (halfway cases) are rounded by ``round`` itself.

    Parameters
    ----------
    x : ndarray, shape (n,)

    Returns
    -------
    list of float or None, length n
    """
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        y = x * 1e4
        k = np.rint(y)
        easy = (np.abs(np.abs(y - k) - 0.5) > 1e-6) & (np.abs(y) < 1e15)
        r = k / 1e4
    out = r.tolist()
    finite = np.isfinite(x)
    for i in np.flatnonzero(~(easy & finite)).tolist():
        v = float(x[i])
        out[i] = round(v, 4) if math.isfinite(v) else None
    return out


class _Field:
    """An attribute of a view read from (and written to) one column of a bank array row."""

    def __init__(self, row: str, col: int, kind: str = "float"):
        self.row, self.col, self.kind = row, col, kind

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        v = getattr(obj, self.row)[self.col]
        if self.kind == "optional":
            return None if v != v else float(v)
        if self.kind == "bool":
            return bool(v)
        if self.kind == "state":
            return STATES[int(v)]
        return float(v)

    def __set__(self, obj, value) -> None:
        if self.kind == "optional":
            value = math.nan if value is None else value
        elif self.kind == "state":
            value = STATES.index(PairState(value))
        getattr(obj, self.row)[self.col] = value


class TrackView(ModalityTrack):
    """One pair's track in one modality of a :class:`PairBank`, with :class:`ModalityTrack`'s attributes (read)."""

    def __init__(self, bank: PairBank, p: int, m: int):  # (no ModalityTrack.__init__: the state is the bank's)
        self.modality = bank.modalities[m]
        self.cfg = bank.cfg
        self.step_s, self.window_s = bank.step_s, bank.window_s
        self._bank, self._p, self._m = bank, p, m
        self._tf, self._ti = bank.TF[p, m], bank.TI[p, m]

    def _arm_view(self) -> deque:
        """``ModalityTrack._arm``: the arming span (a copy)."""
        span = self._bank.arm_span(self._p, self._m)
        return deque((tuple(x) for x in span.tolist()), maxlen=self._bank.ARM.shape[2])

    def _arm_sums_view(self) -> list:
        """``ModalityTrack._arm_sums`` (a copy)."""
        return self._tf[12:17].tolist()

    def step(self, *args, **kwargs):
        """Not available: the bank steps every track (:meth:`PairBank.step`)."""
        raise TypeError("a TrackView is read-only: the PairBank steps its tracks")

    reset = learn = step


class PairView(PairMachine):
    """One pair of a :class:`PairBank`, with :class:`PairMachine`'s attributes and read methods."""

    def __init__(self, bank: PairBank, p: int):  # (no PairMachine.__init__: the state is the bank's)
        self.modalities = bank.modalities
        self.cfg = bank.cfg
        self.step_s, self.window_s = bank.step_s, bank.window_s
        self._bank, self._p = bank, p
        self._pf, self._pi = bank.PF[p], bank.PI[p]
        self._weight = {m: bank.cfg.weight(m) for m in self.modalities}
        self.tracks = {m: TrackView(bank, p, k) for k, m in enumerate(self.modalities)}

    n_used = 0

    def _used_view(self) -> list:
        """``PairMachine.used``: the modalities that gave evidence at the last step, in order."""
        ti = self._bank.TI[self._p]
        return [m for k, m in enumerate(self.modalities) if ti[k, 4]]

    def _episode_view(self) -> PairEpisodeDraft | None:
        """``PairMachine.episode``: the possible rupture being followed (a copy, built from the bank)."""
        pi, pf = self._pi, self._pf
        if not pi[1]:
            return None
        mods = [self.modalities[k] for k in self._bank.EPM[self._p, :int(pi[2])].tolist()]
        return PairEpisodeDraft(float(pf[12]), float(pf[13]), float(pf[14]), float(pf[15]), mods)

    def step(self, *args, **kwargs):
        """Not available: the bank steps every pair (:meth:`PairBank.step`)."""
        raise TypeError("a PairView is read-only: the PairBank steps its pairs")

    flag = shared_event = _set = _close_unarmed = step


def _bind_fields() -> None:
    """The views' data attributes, by column (``_pair_kernels``' layout, repeated here to keep numba lazy).

    (Attached with ``setattr``: they replace the reference classes' instance attributes by descriptors.)
    """
    track: dict = {name: _Field("_tf", col) for name, col in (
        ("valid_s", 0), ("baseline_z", 1), ("first_baseline_z", 2), ("chance_z", 3), ("chance_sd", 4), ("z", 5),
        ("smooth_z", 6), ("drop", 7), ("_guard_until", 8), ("excess", 10), ("excess_se", 11),
        ("testable_since", 17), ("arm_need", 18))}
    track.update(_last_valid_t=_Field("_tf", 9, "optional"), just_calibrated=_Field("_ti", 0, "bool"),
                 ever_full=_Field("_ti", 1, "bool"), _arm=property(TrackView._arm_view),
                 _arm_sums=property(TrackView._arm_sums_view))
    pair: dict = {name: _Field("_pf", col) for name, col in (
        ("evidence", 1), ("drop", 4), ("smooth_drop", 5), ("smooth_arousal", 6), ("last_inc", 7),
        ("_onset_floor", 10), ("h_scale", 11))}
    pair.update({name: _Field("_pf", col, "optional") for name, col in (
        ("state_since", 0), ("_run_start", 2), ("_low_t", 3), ("out_of_tune_since", 8), ("_cand_since", 9))})
    pair.update(state=_Field("_pi", 0, "state"), used=property(PairView._used_view),
                episode=property(PairView._episode_view))
    for cls, fields in ((TrackView, track), (PairView, pair)):
        for name, descriptor in fields.items():
            setattr(cls, name, descriptor)


_bind_fields()
