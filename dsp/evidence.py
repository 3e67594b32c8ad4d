"""Learned rupture evidence: per pair and second, how much likelier "in a rupture" is than "in tune" (streaming).

The analytic evidence of :mod:`attune_monitor.dsp.detector` adds the synchrony drop (weighted by its signal-to-noise
ratio) and the arousal divergence log-likelihood ratio, each compared with a fixed reference. It cannot use how the
two interact (a modest drop of heart-rate synchrony *while* one person's skin conductance climbs alone), how
a pair's synchrony moved over the last 20 s, or which way each person's features moved. This module computes
those as a feature row per pair and second (:data:`FEATURES`) and turns each row into a log-likelihood ratio
with a small gradient-boosted tree ensemble fitted on the simulator's tune split (``bench/train_evidence.py``;
never on the eval split). The detector accumulates it in the same CUSUM (``DetectorConfig.evidence ==
"learned"``).

Features (Fisher z for synchrony; all causal, from values up to that second)
---------------------------------------------------------------------------
=====================  ==============================================================================
``hr_z``, ``eda_z``     the windowed synchrony the detector follows (heart rate r, skin-conductance phasic r)
``hr_chance_z`` ...     its chance (surrogate) level
``hr_rel``, ``eda_rel``  synchrony minus the pair's own median over ``[t - 300 s, t - 30 s)`` (>= 20 values)
``arousal_max/min``     the two people's arousal divergence ratios (:mod:`~attune_monitor.dsp.divergence`), larger first
``a_*``, ``b_*``        the divergence features of the person with the larger ratio (``a``) and the other
``*_lag10``, ``_lag20``  ``hr_z``, ``eda_z``, ``hr_rel``, ``eda_rel``, ``arousal_max/min`` 10 and 20 steps back
=====================  ==============================================================================

NaN (a modality missing, a person without EDA, the first minutes) is a value the trees route explicitly.

Limits: the trees learned the simulator's ruptures (:mod:`attune_monitor.acquisition.physiology`). They rank what they
have not seen (a real dyad's competition rounds) by the same features, but nothing here was fitted on real
people; the analytic evidence (``evidence="analytic"``) stays available and is what the unit tests of the
state machine use.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from . import _kernels
from .divergence import FEATURES as DIVERGENCE_FEATURES

__all__ = [
    "LAGGED", "LAGS", "FEATURES", "REL_SPAN", "REL_MIN", "MODEL_PATH", "PairFeatures", "TreeEnsemble", "shipped_model"
]

#: Columns that are also given 10 and 20 steps back.
LAGGED = ("hr_z", "eda_z", "hr_rel", "eda_rel", "arousal_max", "arousal_min")
#: Steps (s at the detector's 1 s step) of the lagged copies.
LAGS = (10, 20)
#: The feature row, in column order.
FEATURES = (("hr_z", "hr_chance_z", "eda_z", "eda_chance_z", "hr_rel", "eda_rel", "arousal_max", "arousal_min")
            + tuple(f"a_{f}" for f in DIVERGENCE_FEATURES) + tuple(f"b_{f}" for f in DIVERGENCE_FEATURES)
            + tuple(f"{c}_lag{lag}" for lag in LAGS for c in LAGGED))
#: The pair's own synchrony level: median of ``[t - REL_SPAN[0], t - REL_SPAN[1])`` steps back, at least
#: ``REL_MIN`` finite values.
REL_SPAN = (300, 30)
REL_MIN = 20
#: Steps per block of the running median (bounds the sorted copy: n_pairs x block x 270 values).
_MEDIAN_BLOCK = 128
#: Rows per :meth:`TreeEnsemble.log_odds` call from which the compiled (numba) evaluator is used; smaller calls
#: walk the trees in numpy. numba's first use in a process (importing it, and scipy.linalg and llvmlite with it,
#: then loading the cached kernel) costs about what the numpy walk of ~20,000 rows does, and a row costs several
#: times less compiled. A batch call holds ~116 windows per pair: a one-hour dyad's 3,600 rows (31 calls) stay in
#: numpy, and from 4 people (6 pairs, ~700 rows per call, ~22,000 an hour) the load is about repaid within the
#: hour. A live call holds one row per pair: sessions of 33+ people (528+ pairs) get the compiled evaluator from
#: the first step; smaller ones pay ~40 us per pair and step in numpy. The two paths give bitwise the same sums (both
#: add the leaf values in tree order), so this bound changes speed only. Figures: docs/validation.md
#: ("Performance", the analyze startup paragraph). :meth:`PairFeatures.push` switches its running median to the
#: compiled one (``_kernels._rolling_median``, bitwise the same) and its per-pair copies of the people's
#: divergence features and of the lagged columns to ``_kernels._pair_rows`` at the same bound (steps x pairs of a
#: push), so a process that walks the trees compiled loads numba for all three.
TREE_SUM_NUMBA_ROWS = 512
#: Rows per call from which the compiled evaluator (and running median) is used once numba is loaded in the
#: process anyway: the pair bank of a live group of 8+ people (:data:`detector.PAIR_BANK_MIN_PAIRS` pairs) loads it,
#: so a live group of 8-32 people (28-496 rows a step) no longer walks its trees in numpy. Bitwise the same sums.
TREE_SUM_LOADED_ROWS = 28


def use_compiled(rows: int) -> bool:
    """Whether a call of ``rows`` rows uses the compiled kernels.

    From :data:`TREE_SUM_NUMBA_ROWS` rows, or from :data:`TREE_SUM_LOADED_ROWS` when numba is already loaded (a
    dyad's calls stay in numpy: it never loads it).
    """
    return rows >= TREE_SUM_NUMBA_ROWS or (rows >= TREE_SUM_LOADED_ROWS and _kernels.loaded())


#: The shipped ensemble (``bench/train_evidence.py`` writes it).
MODEL_PATH = Path(__file__).with_name("evidence_model.npz")


class PairFeatures:
    """Streaming feature rows of every pair (explicit state: any chunking of the steps gives the same rows).

    Parameters
    ----------
    n_people : int
    pairs : tuple of ndarray
        ``(i, j)`` person indices of each pair (``np.triu_indices(n_people, 1)``).
    """

    def __init__(self, n_people: int, pairs: tuple[np.ndarray, np.ndarray]):
        self.n = int(n_people)
        self.i, self.j = (np.ascontiguousarray(x, np.int64) for x in pairs)
        self.n_pairs = self.i.size
        span = REL_SPAN[0]
        self._sync_hist = np.full((2, span, self.n_pairs), np.nan)  # hr_z, eda_z of the last `span` steps
        self._hist_head = 0  # the oldest step's row in _sync_hist (the compiled path keeps it as a ring)
        # the compiled running median's state (``_kernels._rolling_median``): per pair the last step's window sorted,
        # its count of values and its oldest value; valid only right after a compiled call
        self._sorted = np.full((2, self.n_pairs, span - REL_SPAN[1]), np.nan)
        self._sorted_count = np.zeros((2, self.n_pairs), np.int64)
        self._sorted_first = np.full((2, self.n_pairs), np.nan)
        self._sorted_valid = False
        self._seen_inf = False  # an infinite z was pushed: the numpy median from then on (it counts inf as missing)
        # the lagged columns of the last max(LAGS) steps, a ring: step k's (n_pairs, n_lagged) at (head + k) % H
        self._lag_ring = np.full((max(LAGS), self.n_pairs, len(LAGGED)), np.nan)
        self._lag_head = 0
        self._lag_cols = [FEATURES.index(c) for c in LAGGED]
        self._lag_col_arr = np.array(self._lag_cols, np.int64)
        self._lags = np.array(LAGS, np.int64)

    def push(self, hr_z, hr_chance_z, eda_z, eda_chance_z, arousal, divergence) -> np.ndarray:
        """Feature rows of the next steps.

        Parameters
        ----------
        hr_z, hr_chance_z, eda_z, eda_chance_z : ndarray, shape (n_steps, n_pairs)
            Synchrony and its chance level as Fisher z (NaN where missing).
        arousal : ndarray, shape (n_steps, n_people)
            Each person's arousal divergence log-likelihood ratio (NaN: unknown).
        divergence : ndarray, shape (n_steps, n_people, len(dsp.divergence.FEATURES))
            The divergence features behind it.

        Returns
        -------
        X : ndarray, shape (n_steps, n_pairs, len(FEATURES))
        """
        hz, ez = np.asarray(hr_z, float), np.asarray(eda_z, float)
        T = hz.shape[0]
        compiled = use_compiled(T * self.n_pairs)
        rows = _kernels.get("pair_rows") if compiled else None
        # every column is written below (the compiled columns too): no need to fill X first then
        shape = (T, self.n_pairs, len(FEATURES))
        X = np.empty(shape) if rows is not None else np.full(shape, np.nan)
        if T == 0:
            return X
        X[:, :, 0], X[:, :, 1], X[:, :, 2], X[:, :, 3] = hz, hr_chance_z, ez, eda_chance_z
        # the pair's own level: median over [t - 300, t - 30) of the steps before
        self._seen_inf = self._seen_inf or bool(np.isinf(hz).any() or np.isinf(ez).any())
        kernel = _kernels.get("rolling_median") if compiled and not self._seen_inf else None
        if kernel is not None:
            self._rel_compiled(kernel, X, hz, ez)
        else:
            self._sorted_valid = False
            self._rel_numpy(X, hz, ez)
        L = np.asarray(arousal, float)
        la, lb = L[:, self.i], L[:, self.j]
        with np.errstate(invalid="ignore"):
            a_first = np.nan_to_num(la, nan=-np.inf) >= np.nan_to_num(lb, nan=-np.inf)
        X[:, :, 6] = np.fmax(la, lb)
        X[:, :, 7] = np.fmin(la, lb)
        D = np.asarray(divergence, float)
        if rows is not None:  # the same copies, compiled (``_kernels._pair_rows``)
            rows(X, np.ascontiguousarray(a_first), np.ascontiguousarray(D), self.i, self.j, self._lag_ring,
                 self._lag_head, self._lag_col_arr, self._lags, 8, 8 + 2 * len(DIVERGENCE_FEATURES))
            self._lag_head = (self._lag_head + T) % self._lag_ring.shape[0]
            return X
        da, db = D[:, self.i], D[:, self.j]  # (T, n_pairs, F)
        nf = len(DIVERGENCE_FEATURES)
        X[:, :, 8: 8 + nf] = np.where(a_first[..., None], da, db)
        X[:, :, 8 + nf: 8 + 2 * nf] = np.where(a_first[..., None], db, da)
        # lagged copies: the columns `lag` steps back (from the ring of the steps before, or from this push)
        base = 8 + 2 * nf
        cur = X[:, :, self._lag_cols]  # (T, n_pairs, n_lagged)
        ring, H, nl = self._lag_ring, self._lag_ring.shape[0], len(LAGGED)
        steps = np.arange(T)
        for q, lag in enumerate(LAGS):
            cols = slice(base + q * nl, base + (q + 1) * nl)
            old = steps < lag  # step s takes step s - lag: the ring's (H - lag + s)-th oldest, or this push's
            X[old, :, cols] = ring[(self._lag_head + H - lag + steps[old]) % H]
            X[lag:, :, cols] = cur[: max(T - lag, 0)]
        kept = steps[max(T - H, 0):]  # this push's last H steps enter the ring, each over the oldest
        ring[(self._lag_head + kept) % H] = cur[kept]
        self._lag_head = (self._lag_head + T) % H
        return X

    def _rel_numpy(self, X, hz, ez) -> None:
        """Fill columns ``hr_rel`` / ``eda_rel`` of ``X`` (shape (T, n_pairs, n_features)); advance the history.

        z less the pair's median of the steps ``[t - 300, t - 30)``, by sorting each step's window (the reference).
        """
        T = hz.shape[0]
        lo, gap = REL_SPAN
        if self._hist_head:  # the compiled path's ring, oldest first again
            self._sync_hist = np.roll(self._sync_hist, -self._hist_head, axis=1)
            self._hist_head = 0
        for k, z in enumerate((hz, ez)):
            hist = np.concatenate([self._sync_hist[k].T, z.T], axis=1)  # (n_pairs, lo + T)
            win = np.lib.stride_tricks.sliding_window_view(hist[:, : hist.shape[1] - gap], lo - gap, axis=1)
            win = win[:, :T]  # step s (at lo + s in hist) takes [s, s + lo - gap)
            med = np.empty((self.n_pairs, T))
            for b0 in range(0, T, _MEDIAN_BLOCK):  # blocks of steps: a whole file at once stays small in memory
                w = win[:, b0: b0 + _MEDIAN_BLOCK]
                srt = np.sort(w, axis=-1)  # NaN sorts last
                cnt = np.isfinite(w).sum(axis=-1)
                lo_i, hi_i = np.maximum(cnt - 1, 0) // 2, cnt // 2
                m = 0.5 * (np.take_along_axis(srt, lo_i[..., None], -1)[..., 0]
                           + np.take_along_axis(srt, hi_i[..., None], -1)[..., 0])
                med[:, b0: b0 + _MEDIAN_BLOCK] = np.where(cnt >= REL_MIN, m, np.nan)
            X[:, :, 4 + k] = z - med.T
            self._sync_hist[k] = hist[:, -lo:].T

    def _rel_compiled(self, kernel, X, hz, ez) -> None:
        """As :meth:`_rel_numpy`, with the compiled running median (bitwise the same medians).

        Each pair's window is kept sorted between calls and updated per step (one value leaves, one enters), so
        a live step costs a few hundred moves per pair instead of a sort of 270 values; the history is a ring
        (the step's values overwrite the oldest) rather than shifted.
        """
        lo, gap = REL_SPAN
        med = np.empty((self.n_pairs, hz.shape[0]))
        for k, z in enumerate((hz, ez)):
            kernel(self._sync_hist[k], self._hist_head, np.ascontiguousarray(z), lo - gap, REL_MIN, self._sorted[k],
                   self._sorted_count[k], self._sorted_first[k], not self._sorted_valid, med)
            X[:, :, 4 + k] = z - med.T
        self._hist_head = (self._hist_head + hz.shape[0]) % lo
        self._sorted_valid = True


class TreeEnsemble:
    """A gradient-boosted tree ensemble for binary classes, evaluated with numpy (no scikit-learn at run time).

    The arrays are those of scikit-learn's ``HistGradientBoostingClassifier`` predictors (``bench/train_evidence.py``
    exports them): per node ``feature``, ``threshold`` (go left when ``x <= threshold``), ``missing_left``
    (where NaN goes), ``left``, ``right``, ``is_leaf`` and ``value``, all trees' nodes in one array with
    ``roots`` the index of each tree's first node; ``baseline`` the initial log-odds; ``prior_logit`` the
    log-odds of the training labels' rupture share, subtracted so the output is a likelihood ratio.
    """

    def __init__(self, arrays: dict):
        self.feature = np.asarray(arrays["feature"], np.int64)
        self.threshold = np.asarray(arrays["threshold"], np.float64)
        self.missing_left = np.asarray(arrays["missing_left"], bool)
        self.left = np.asarray(arrays["left"], np.int64)
        self.right = np.asarray(arrays["right"], np.int64)
        self.is_leaf = np.asarray(arrays["is_leaf"], bool)
        self.value = np.asarray(arrays["value"], np.float64)
        self.roots = np.asarray(arrays["roots"], np.int64)
        self.baseline = float(arrays["baseline"])
        self.prior_logit = float(arrays["prior_logit"])
        self.depth = int(arrays["depth"])
        self._child = np.stack([self.right, self.left], axis=1).ravel()  # [2 * node + go_left]: the next node
        self._split_tables: tuple | None = None  # split_tables(), built on first use
        names = tuple(str(x) for x in arrays["features"])
        if names != FEATURES:
            raise ValueError(f"Invalid evidence model: it was fitted on features {names}, but this version computes "
                             f"{FEATURES}. Retrain it with bench/train_evidence.py.")

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> TreeEnsemble:
        """The ensemble saved in the ``.npz`` at ``path`` (default: the packaged model)."""
        with np.load(path, allow_pickle=False) as z:
            return cls({k: z[k] for k in z.files})

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        """Raw log-odds of "in a rupture" per row, shape ``X.shape[:-1]``.

        Calls of at least :data:`TREE_SUM_NUMBA_ROWS` rows (:data:`TREE_SUM_LOADED_ROWS` once numba is loaded:
        :func:`use_compiled`) use the compiled evaluator of
        :mod:`attune_monitor.dsp._kernels` when numba is there (and no tree has more than 64 leaves), smaller ones
        (and every call without numba) numpy; the two give bitwise the same sums.
        """
        X = np.asarray(X, float)
        flat = np.ascontiguousarray(X.reshape(-1, X.shape[-1]))
        out = np.zeros(flat.shape[0])
        if flat.shape[0]:
            kernel = _kernels.get("tree_sum") if use_compiled(flat.shape[0]) else None
            tables = self.split_tables() if kernel is not None else None
            if kernel is not None and tables is not None:
                kernel(flat, *tables, out)
            else:
                out = self._tree_sum_numpy(flat)
        return (self.baseline + out).reshape(X.shape[:-1])

    def split_tables(self) -> tuple | None:
        """The ensemble as the compiled evaluator reads it (``_kernels._tree_sum``; built once), None past 64 leaves.

        Returns
        -------
        tuple of (tree_start, node_feature, node_threshold, node_missing_left, node_mask, node_left_splits,
        node_right_splits, leaf_value) | None
            The split nodes of tree 0, then tree 1, ... (tree ``h``: ``[tree_start[h], tree_start[h + 1])``), each
            tree's in pre-order; per split its feature, threshold, where NaN goes, the bits of its tree's leaves
            outside its left subtree (leaves numbered left to right) and how many splits its left and right
            subtrees hold, shapes (n_splits,); ``leaf_value`` shape (n_trees, max_leaves). None when a tree has more
            than 64 leaves (they do not fit a word: numpy's walk serves them).
        """
        if self._split_tables is None:
            self._split_tables = self._make_split_tables()
        return self._split_tables or None

    def _make_split_tables(self) -> tuple:
        """:meth:`split_tables` (an empty tuple when a tree has more than 64 leaves)."""
        n_trees = self.roots.size
        tree_start = [0]
        feature: list[int] = []
        threshold: list[float] = []
        nan_left: list[bool] = []
        mask: list[int] = []
        n_left: list[int] = []
        n_right: list[int] = []
        leaves: list[list[float]] = []

        def visit(node: int, values: list[float]) -> tuple[int, int]:
            """Number the leaves under ``node`` (left first, into ``values``), list its splits in pre-order.

            Returns (its first leaf, its number of splits).
            """
            if self.is_leaf[node]:
                values.append(float(self.value[node]))
                return len(values) - 1, 0
            at = len(feature)
            feature.append(int(self.feature[node]))
            threshold.append(float(self.threshold[node]))
            nan_left.append(bool(self.missing_left[node]))
            mask.append(0)
            n_left.append(0)
            n_right.append(0)
            first, n_l = visit(int(self.left[node]), values)
            left_bits = ((1 << len(values)) - 1) ^ ((1 << first) - 1)
            _, n_r = visit(int(self.right[node]), values)
            mask[at] = ((1 << 64) - 1) & ~left_bits
            n_left[at], n_right[at] = n_l, n_r
            return first, 1 + n_l + n_r

        for h in range(n_trees):
            values: list[float] = []
            visit(int(self.roots[h]), values)
            if len(values) > 64:
                return ()
            leaves.append(values)
            tree_start.append(len(feature))
        leaf_value = np.zeros((n_trees, max((len(v) for v in leaves), default=1)))
        for h, values in enumerate(leaves):
            leaf_value[h, :len(values)] = values
        return (np.array(tree_start, np.int64), np.array(feature, np.int64), np.array(threshold, np.float64),
                np.array(nan_left, bool), np.array(mask, np.uint64), np.array(n_left, np.int64),
                np.array(n_right, np.int64), leaf_value)

    def _tree_sum_numpy(self, flat: np.ndarray) -> np.ndarray:
        """Sum of every tree's leaf value per row, shape (n_rows,).

        All (row, tree) walks at once, one level per step, dropping the walks that reached a leaf; the leaf
        values are then added up in tree order from 0 (a running sum, not numpy's pairwise one), as the compiled
        walker adds them, so both give the same bits.
        """
        n, n_trees = flat.shape[0], self.roots.size
        if n_trees == 0:
            return np.zeros(n)
        values = np.ascontiguousarray(flat, np.float64).ravel()
        node = np.tile(self.roots, n)
        at = np.repeat(np.arange(n) * flat.shape[1], n_trees)  # where each walk's row starts in ``values``
        walk = np.arange(node.size)
        leaf_of = np.empty(node.size, np.int64)
        for _ in range(self.depth + 1):
            done = self.is_leaf[node]
            n_done = np.count_nonzero(done)
            if n_done:
                leaf_of[walk[done]] = node[done]
                if n_done == node.size:
                    break
                keep = ~done
                node, walk, at = node[keep], walk[keep], at[keep]
            x = values[at + self.feature[node]]
            go_left = (x <= self.threshold[node]) | (np.isnan(x) & self.missing_left[node])  # NaN <= t is False
            node = self._child[2 * node + go_left]
        leaves = self.value[leaf_of].reshape(n, n_trees)
        leaves[:, 0] += 0.0  # the compiled evaluator starts from 0.0 (a -0.0 first leaf becomes 0.0 there too)
        return np.cumsum(leaves, axis=1)[:, -1]

    def llr(self, X: np.ndarray) -> np.ndarray:
        """Log-likelihood ratio "in a rupture" vs "in tune" per row (log-odds less the training prior)."""
        return self.log_odds(X) - self.prior_logit


@lru_cache(maxsize=2)
def shipped_model(path: str = str(MODEL_PATH)) -> TreeEnsemble:
    """The ensemble shipped with Attune (loaded once per process)."""
    return TreeEnsemble.load(path)

