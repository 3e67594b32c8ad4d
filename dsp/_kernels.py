"""Compiled (numba) kernels for :mod:`attune_monitor.dsp.synchrony`; optional.

``get(name)`` returns None when numba is not installed or cannot be imported: callers then use their
numpy paths, which are also the reference the kernels are tested against (equal within 1e-9).

``preload(name, example_args)`` loads a kernel from numba's on-disk cache (compiling it the first time) in a
background thread, so the first call a process makes does not pay it (~0.3-0.5 s: importing numba, then the
cached machine code): ``get(name, wait=False)`` returns None until it is ready, and the caller uses its numpy
path meanwhile. The thread only compiles (``Dispatcher.compile`` for the example's types), it never runs a
kernel: numba's default threading layer may not be entered from two threads at once. A fork waits for the
thread (``os.register_at_fork``), so a child process never inherits a half-held import or compiler lock.
Preloading is opt-in, ``ATTUNE_NUMBA_PRELOAD=1`` (a batch worker that will call the kernel many times): by default
the first call loads the kernel. Every importing process would otherwise pay numba's import and cache load
(~1 s of CPU, as much as the whole analysis of a one-hour dyad, whose one pair the numpy path serves as fast), and
a first compile running beside the main thread made in-process CLI calls lose their stderr line intermittently
(tests/ui/test_cli_help.py in a fresh clone with numba's cache cold).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: numba is installed (imported, and the kernels compiled or loaded from its cache, on first use or by
#: :func:`preload` in the background: importing numba costs ~0.15 s, which every ``import dsp.synchrony``
#: would otherwise pay in the importing thread)
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
numba: Any = None
_trailing_zeros: Any = None  # numba's count-trailing-zeros intrinsic (set with numba's import; used by _tree_sum)
_centre_chunk_row: Any = None  # _centre_chunk_row_py jitted (set with numba's import; used by two kernels)
_compiled: dict[str, Any] = {}
_lock = threading.RLock()  # held while numba is imported or a kernel compiled / loaded
_preloading: dict[str, threading.Thread] = {}


def _import_numba() -> bool:
    """Import numba once (under ``_lock``); False (and ``HAVE_NUMBA`` False) when it cannot be imported."""
    global numba, HAVE_NUMBA, _trailing_zeros, _centre_chunk_row
    if numba is not None:
        return True
    try:
        import numba as nb
        from numba.cpython.unsafe.numbers import trailing_zeros
    except Exception as exc:  # pragma: no cover - depends on the environment
        logger.warning("numba is installed but cannot be imported (%s): using the numpy paths", exc)
        HAVE_NUMBA = False
        return False
    numba = nb
    _trailing_zeros = trailing_zeros
    _centre_chunk_row = nb.njit(cache=True, fastmath=False)(_centre_chunk_row_py)
    for name in ("_select_two", "_median_of"):  # called by _window_medians: compiled with it
        globals()[name] = nb.njit(cache=True, fastmath=False)(globals()[name])
    return True


#: Kernels compiled without numba's threads: their live calls are short (a few ms at 64 people), and on 2 busy
#: cores a second thread mostly adds the wait for it.
_SERIAL = frozenset({"rolling_median", "tree_sum", "pair_rows", "window_medians", "less_others_median"})


def _dispatcher(name: str):
    return numba.njit(cache=True, fastmath=False, parallel=name not in _SERIAL)(globals()["_" + name])


def module_available(module: str) -> bool:
    """True when numba and this package's compiled module ``module`` (e.g. ``"_pair_kernels"``) can be imported."""
    if not HAVE_NUMBA:
        return False
    try:
        importlib.import_module(f"{__package__}.{module}")
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def loaded() -> bool:
    """Whether numba is imported in this process already (by any kernel): its load is paid."""
    return numba is not None


def get(name: str, wait: bool = True):
    """The compiled kernel ``name`` (e.g. ``"pearson_lag0"``), or None when numba cannot be used.

    The first call imports numba and compiles (or loads from numba's on-disk cache) the kernel; if numba
    fails to import (e.g. it does not support the installed numpy), ``HAVE_NUMBA`` becomes False and
    callers use their numpy paths. With ``wait=False``, None while :func:`preload` is still loading the
    kernel (the caller's numpy path gives the same numbers within 1e-9, without waiting for it).
    """
    if not HAVE_NUMBA:
        return None
    fn = _compiled.get(name)
    if fn is not None:
        return fn
    loading = _preloading.get(name)
    if not wait and loading is not None and loading.is_alive():
        return None
    with _lock:
        fn = _compiled.get(name)
        if fn is None:
            if not _import_numba():
                return None
            fn = _compiled[name] = _dispatcher(name)
    return fn


def preload(name: str, example_args: tuple) -> threading.Thread | None:
    """Load kernel ``name`` in a daemon thread; the thread, or None when there is nothing to load.

    Load kernel ``name`` for the argument types of ``example_args`` in a daemon thread (see the module
    notes); returns the thread, or None when numba is missing, preloading is off or the kernel is loaded.
    """
    if not HAVE_NUMBA or name in _compiled or name in _preloading or os.environ.get("ATTUNE_NUMBA_PRELOAD") != "1":
        return None

    def load():
        with _lock:
            if name in _compiled or not _import_numba():
                return
            fn = _dispatcher(name)
            try:
                fn.compile(tuple(numba.typeof(a) for a in example_args))
            except Exception as exc:  # pragma: no cover - a first real call compiles it instead
                logger.debug("preloading kernel %s failed: %s", name, exc)
            _compiled[name] = fn

    thread = _preloading[name] = threading.Thread(target=load, name=f"attune-numba-{name}", daemon=True)
    thread.start()
    return thread


def _wait_for_preloads() -> None:
    """Before a fork: let the preload threads finish (a child must not inherit their locks half-held)."""
    for thread in list(_preloading.values()):
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_wait_for_preloads)


def _centre_chunk_row_py(x, p, s0, span, Y, badc):  # pragma: no cover - compiled (see _import_numba)
    """Person ``p``'s chunk ``x[p, s0:s0 + span]`` less the mean of its finite samples, into ``Y[p, :span]``.

    Missing samples become 0 (the anchor) and mark their column in ``badc``. Returns the largest absolute
    finite value (the level of the flatness test). Shared by the compiled kernels that re-anchor per chunk;
    jitted with numba's import, since a kernel resolves it when it compiles.
    """
    tot = 0.0
    cnt = 0
    lvl = 0.0
    for i in range(span):
        v = x[p, s0 + i]
        if np.isfinite(v):
            tot += v
            cnt += 1
            av = abs(v)
            if av > lvl:
                lvl = av
    mu = tot / max(cnt, 1)
    for i in range(span):
        v = x[p, s0 + i]
        if np.isfinite(v):
            Y[p, i] = v - mu
        else:
            Y[p, i] = 0.0
            badc[i] = True
    return lvl


def _pearson_lag0(x, step, nw, n_seg, J, ia, ib, out, redo, rel, flat_abs):  # pragma: no cover
    """Windowed r at lag 0 for every pair (the compiled twin of ``synchrony._fast_pearson``, no detrend).

    Window ``j`` is grid samples ``[j*step, j*step + n_seg)`` of ``x``. Per chunk of ``J`` windows the
    data are re-anchored on the chunk mean of the finite samples (missing samples count as the anchor,
    their windows are flagged in ``redo``); then, per person and per pair, the first window's sums are
    direct and each further window's sums are the previous ones plus the ``step`` entering samples'
    products minus the ``step`` leaving ones' (direct sums when ``2 * step >= n_seg``). Re-anchoring
    and restarting every chunk keeps the rounding of the running sums to ~J additions. Chunks run in
    parallel (numba ``prange``).

    Parameters
    ----------
    x : ndarray, shape (n_people, n_samples), float64, C-contiguous
    step, nw, n_seg, J : int
        Window step (samples), number of windows, samples per window, windows per chunk.
    ia, ib : ndarray of int64, shape (n_pairs,)
    out : ndarray, shape (n_pairs, nw)
        Receives r clipped to [-1, 1]; undefined where ``redo``.
    redo : ndarray of bool, shape (nw,)
        Receives True for windows with a missing sample or a near-flat person (``c <= rel * S2`` or
        ``c <= flat_abs * n_seg * max(1, level) ** 2``, as in the numpy path).
    rel, flat_abs : float
    """
    P = x.shape[0]
    K = ia.shape[0]
    nch = (nw + J - 1) // J
    sn = 1.0 / n_seg
    rsn = math.sqrt(sn)
    slide = 2 * step < n_seg  # else direct sums are as cheap (and exact to the last additions)
    for ch in numba.prange(nch):
        j0 = ch * J
        Jc = min(J, nw - j0)
        s0 = j0 * step
        span = (Jc - 1) * step + n_seg
        Y = np.empty((P, span))
        badc = np.zeros(span, np.bool_)
        sc2 = np.empty(P)
        for p in range(P):
            lvl = _centre_chunk_row(x, p, s0, span, Y, badc)
            sc2[p] = max(1.0, lvl) ** 2
        # windows with a missing sample: running count of bad columns
        nbad = 0
        for i in range(n_seg):
            nbad += badc[i]
        low = np.zeros(Jc, np.bool_)
        for j in range(Jc):
            if j:
                for i in range(step):
                    nbad += badc[(j - 1) * step + n_seg + i] - badc[(j - 1) * step + i]
            low[j] = nbad > 0
        # per-person window sums of y and y**2 -> w = 1 / sqrt(c), u = S1 / sqrt(n)
        W = np.empty((P, Jc))
        U = np.empty((P, Jc))
        for p in range(P):
            s1 = 0.0
            s2 = 0.0
            for i in range(n_seg):
                v = Y[p, i]
                s1 += v
                s2 += v * v
            for j in range(Jc):
                if j and slide:
                    e = (j - 1) * step + n_seg
                    b = (j - 1) * step
                    for i in range(step):
                        ve = Y[p, e + i]
                        vb = Y[p, b + i]
                        s1 += ve - vb
                        s2 += ve * ve - vb * vb
                elif j:
                    s1 = 0.0
                    s2 = 0.0
                    for i in range(j * step, j * step + n_seg):
                        v = Y[p, i]
                        s1 += v
                        s2 += v * v
                c = s2 - s1 * s1 * sn
                if c <= rel * s2 or c <= flat_abs * n_seg * sc2[p]:
                    low[j] = True
                W[p, j] = 1.0 / math.sqrt(c) if c > 0.0 else np.nan
                U[p, j] = s1 * rsn
        for j in range(Jc):
            redo[j0 + j] = low[j]
        # per-pair running sums of y_a * y_b
        for k in range(K):
            a = ia[k]
            b = ib[k]
            sab = 0.0
            for i in range(n_seg):
                sab += Y[a, i] * Y[b, i]
            for j in range(Jc):
                if j and slide:
                    e = (j - 1) * step + n_seg
                    l0 = (j - 1) * step
                    d = 0.0
                    for i in range(step):
                        d += Y[a, e + i] * Y[b, e + i] - Y[a, l0 + i] * Y[b, l0 + i]
                    sab += d
                elif j:
                    sab = 0.0
                    for i in range(j * step, j * step + n_seg):
                        sab += Y[a, i] * Y[b, i]
                r = (sab - U[a, j] * U[b, j]) * (W[a, j] * W[b, j])
                if r > 1.0:
                    r = 1.0
                elif r < -1.0:
                    r = -1.0
                out[k, j0 + j] = r


def _tree_sum(X, tree_start, node_feature, node_threshold, node_missing_left, node_mask, node_left_splits,
              node_right_splits, leaf_value, out):  # pragma: no cover
    """Sum of the leaf values a gradient-boosted ensemble gives each row (compiled, bit vectors).

    The compiled twin of ``evidence.TreeEnsemble._tree_sum_numpy`` (the same sums, bitwise): instead of walking
    each tree from its root (a chain of dependent loads and unpredictable branches per row and level), every
    split is tested against a block of rows at once (contiguous, vectorised) and removes the leaves on its other
    side from each row's set of reachable leaves (QuickScorer, Lucchese et al., SIGIR 2015). Per tree and row the
    set is a 64-bit word over the tree's leaves numbered left to right; a row's exit leaf is the lowest leaf left
    in it (every split on the way goes left, or removed that leaf's left neighbours). The leaf values are then
    added per row in tree order from 0.0, as the walk adds them. Serial (see ``_SERIAL``).

    Per block of rows, a split whose threshold lies at or above every value of the block (every row goes left,
    NaN too or there is none) is not tested, and neither is any split under its right child: those only remove
    leaves to the right of every row's exit leaf. A split below every value (every row goes right) removes its
    left subtree's leaves from the tree's word shared by the block, and the splits under its left child are not
    tested either.

    Parameters
    ----------
    X : ndarray, shape (n_rows, n_features), float64, C-contiguous
    tree_start : ndarray of int64, shape (n_trees + 1,)
        Tree ``h``'s splits are ``[tree_start[h], tree_start[h + 1])``, in pre-order (a split, its left subtree's
        splits, its right subtree's).
    node_feature : ndarray of int64, shape (n_splits,)
    node_threshold : ndarray of float64, shape (n_splits,)
        Go left when ``x <= threshold``.
    node_missing_left : ndarray of bool, shape (n_splits,)
        NaN goes left (else right).
    node_mask : ndarray of uint64, shape (n_splits,)
        The leaves of the split's tree that are not in its left subtree (bit ``q``: the tree's ``q``-th leaf from
        the left).
    node_left_splits, node_right_splits : ndarray of int64, shape (n_splits,)
        How many splits the split's left / right subtree holds.
    leaf_value : ndarray of float64, shape (n_trees, max_leaves)
        Each tree's leaf values, left to right.
    out : ndarray, shape (n_rows,)
        Receives the sums.
    """
    n, F = X.shape
    n_trees = leaf_value.shape[0]
    B = min(512, n)  # rows per block: the block's words (n_trees x B) stay in the second-level cache
    xt = np.empty((F, B))  # the block's values feature by feature (contiguous along rows)
    words = np.empty((n_trees, B), np.uint64)
    shared = np.empty(n_trees, np.uint64)
    skip_to = np.zeros(node_feature.shape[0], np.int64)  # > 0 at the first split of a subtree not to test
    lo = np.empty(F)
    hi = np.empty(F)
    has_nan = np.empty(F, np.bool_)
    every = ~np.uint64(0)
    for b0 in range(0, n, B):
        nb = min(B, n - b0)
        for f in range(F):
            low = np.inf
            high = -np.inf
            nan = False
            for r in range(nb):
                x = X[b0 + r, f]
                xt[f, r] = x
                if x != x:
                    nan = True
                else:
                    low = min(low, x)
                    high = max(high, x)
            lo[f] = low
            hi[f] = high
            has_nan[f] = nan
        words[:, :nb] = every
        shared[:] = every
        for h in range(n_trees):
            q = tree_start[h]
            end = tree_start[h + 1]
            while q < end:
                if skip_to[q] > 0:  # (the right subtree of a split every row passes on the left)
                    nxt = skip_to[q]
                    skip_to[q] = 0
                    q = nxt
                    continue
                f = node_feature[q]
                t = node_threshold[q]
                nan_left = node_missing_left[q]
                if t >= hi[f] and (nan_left or not has_nan[f]):  # every row of the block goes left
                    if node_right_splits[q] > 0:
                        right = q + 1 + node_left_splits[q]
                        skip_to[right] = right + node_right_splits[q]
                    q += 1
                    continue
                mask = node_mask[q]
                if t < lo[f] and (not nan_left or not has_nan[f]):  # every row goes right
                    shared[h] &= mask
                    q += 1 + node_left_splits[q]
                    continue
                w = words[h]
                xf = xt[f]
                if nan_left:  # right when x > t (False for NaN)
                    for r in range(nb):
                        w[r] &= mask if xf[r] > t else every
                else:  # right unless x <= t (NaN: right)
                    for r in range(nb):
                        w[r] &= every if xf[r] <= t else mask
                q += 1
        for r in range(nb):
            out[b0 + r] = 0.0
        for h in range(n_trees):
            values = leaf_value[h]
            w = words[h]
            common = shared[h]
            for r in range(nb):
                out[b0 + r] += values[_trailing_zeros(w[r] & common)]


def _rolling_median(hist, head, z, win, min_count, srt, cnt, first, init, med):  # pragma: no cover
    """Median of each row's last values in a window sliding one step at a time (compiled).

    The compiled twin of the running median in ``evidence.PairFeatures.push``: the same values (the two middle
    order statistics of the window's non-NaN values, averaged), from a sorted copy of each row's window kept
    between calls and updated per step (one value leaves, one enters) instead of a sort per step. Values are
    NaN (missing) or finite. Serial (see ``_SERIAL``).

    Parameters
    ----------
    hist : ndarray, shape (H, n_rows), float64, C-contiguous
        The last ``H`` values before this call, step by step, a ring: the oldest at row ``head``, then
        ``head + 1``, ... (modulo ``H``). This call's values enter it (overwriting the oldest; the caller moves
        ``head`` on by ``T`` modulo ``H``), so a live step writes one row instead of shifting every pair's
        history, and reads the two values it needs (leaving, entering) from two contiguous rows.
    head : int
    z : ndarray, shape (T, n_rows)
        This call's values, step by step.
    win : int
        Window length: step ``s`` takes positions ``[s, s + win)`` of the ``H`` values before the call followed
        by ``z`` (``win <= H``).
    min_count : int
        Fewer non-NaN values than this give NaN.
    srt : ndarray, shape (n_rows, win)
        The window of the step before this call, sorted, its ``cnt`` non-NaN values first then NaN (updated).
    cnt : ndarray of int64, shape (n_rows,)
    first : ndarray, shape (n_rows,)
        The first (oldest) value of the window of the step before this call (updated).
    init : bool
        ``srt``, ``cnt`` and ``first`` hold nothing yet: the first step's window is sorted afresh.
    med : ndarray, shape (n_rows, T)
        Receives the medians.
    """
    H, n = hist.shape
    T = z.shape[0]
    for i in range(n):
        c = cnt[i]
        s0 = 0
        if init:
            c = 0
            for p in range(win):
                v = hist[(head + p) % H, i] if p < H else z[p - H, i]
                if v == v:
                    srt[i, c] = v
                    c += 1
            srt[i, :c] = np.sort(srt[i, :c])
            srt[i, c:] = np.nan
            s0 = 1
            if c >= min_count:
                med[i, 0] = 0.5 * (srt[i, (c - 1) // 2] + srt[i, c // 2])
            else:
                med[i, 0] = np.nan
        for s in range(s0, T):
            if s == 0:
                out_v = first[i]
            elif s - 1 < H:
                pos = head + s - 1  # (head < H: one wrap at most)
                out_v = hist[pos - H if pos >= H else pos, i]
            else:
                out_v = z[s - 1 - H, i]
            p = s + win - 1
            if p < H:
                pos = head + p
                in_v = hist[pos - H if pos >= H else pos, i]
            else:
                in_v = z[p - H, i]
            # the place of a value equal to the leaving one (it is in the window: the count of values below it)
            # and the place after the values <= the entering one, counted in one branch-free pass over the sorted
            # values (a binary search's unpredictable branches cost more at a few hundred values)
            below_out = 0
            upto_in = 0
            for r in range(c):
                x = srt[i, r]
                below_out += x < out_v
                upto_in += x <= in_v
            p_out = below_out if out_v == out_v else -1
            q = upto_in if in_v == in_v else c
            # only the values between the leaving and the entering one move
            if p_out >= 0 and in_v == in_v:
                if q > p_out:  # in_v >= out_v: [p_out + 1, q) one to the left, in_v at q - 1
                    for r in range(p_out, q - 1):
                        srt[i, r] = srt[i, r + 1]
                    srt[i, q - 1] = in_v
                else:  # [q, p_out) one to the right, in_v at q
                    for r in range(p_out, q, -1):
                        srt[i, r] = srt[i, r - 1]
                    srt[i, q] = in_v
            elif p_out >= 0:  # a value leaves, a missing one enters
                for r in range(p_out, c - 1):
                    srt[i, r] = srt[i, r + 1]
                c -= 1
                srt[i, c] = np.nan
            elif in_v == in_v:  # a missing value leaves, a value enters
                for r in range(c, q, -1):
                    srt[i, r] = srt[i, r - 1]
                srt[i, q] = in_v
                c += 1
            if c >= min_count:
                med[i, s] = 0.5 * (srt[i, (c - 1) // 2] + srt[i, c // 2])
            else:
                med[i, s] = np.nan
        cnt[i] = c
        first[i] = hist[(head + T - 1) % H, i] if T - 1 < H else z[T - 1 - H, i]
        for q in range(max(0, T - H), T):  # the new values enter the ring, each over the oldest
            hist[(head + q) % H, i] = z[q, i]


def _pair_rows(X, a_first, D, pi, pj, ring, head, lag_cols, lags, div_col, base):  # pragma: no cover
    """The person-level and lagged columns of the learned evidence's feature rows (compiled; copies only).

    The compiled twin of the numpy column assignments in ``evidence.PairFeatures.push`` (the same values: every
    one is copied, none computed): each pair's two people's divergence features, the larger ratio's first, and
    the lagged columns from the ring of the steps before or from this call's rows; then this call's last steps
    enter the ring. Serial (see ``_SERIAL``).

    Parameters
    ----------
    X : ndarray, shape (T, n_pairs, n_features)
        The rows, with the columns ``lag_cols`` filled (read) and the divergence and lagged ones filled here.
    a_first : ndarray of bool, shape (T, n_pairs)
        The pair's first person (``pi``) has the larger ratio.
    D : ndarray, shape (T, n_people, nf)
        Each person's divergence features.
    pi, pj : ndarray of int64, shape (n_pairs,)
    ring : ndarray, shape (H, n_pairs, len(lag_cols))
        The lagged columns of the last ``H`` steps before this call, step ``k`` back at ``(head - k) % H``
        (updated: this call's last ``min(T, H)`` steps overwrite the oldest; the caller moves ``head`` on by ``T``).
    head : int
    lag_cols : ndarray of int64, shape (n_lagged,)
    lags : ndarray of int64, shape (n_lags,)
        Steps back of each lagged block (each at most ``H``).
    div_col, base : int
        The first divergence column (``nf`` of the first person, then ``nf`` of the other) and the first lagged
        column (``n_lagged`` per lag, in ``lags`` order).
    """
    T, P = X.shape[0], X.shape[1]
    nf = D.shape[2]
    H = ring.shape[0]
    nl = lag_cols.shape[0]
    for s in range(T):
        for p in range(P):
            if a_first[s, p]:
                a, b = pi[p], pj[p]
            else:
                a, b = pj[p], pi[p]
            for f in range(nf):
                X[s, p, div_col + f] = D[s, a, f]
                X[s, p, div_col + nf + f] = D[s, b, f]
            for q in range(lags.shape[0]):
                lag = lags[q]
                c0 = base + q * nl
                if s < lag:
                    r = (head + H - lag + s) % H
                    for c in range(nl):
                        X[s, p, c0 + c] = ring[r, p, c]
                else:
                    for c in range(nl):
                        X[s, p, c0 + c] = X[s - lag, p, lag_cols[c]]
    for s in range(max(T - H, 0), T):
        r = (head + s) % H
        for p in range(P):
            for c in range(nl):
                ring[r, p, c] = X[s, p, lag_cols[c]]


def _select_two(a, n, k):  # pragma: no cover - compiled with its callers
    """The ``k``-th and ``k + 1``-th smallest of ``a[:n]`` (0-based; NaN-free; ``a[:n]`` reordered).

    Hoare's selection: when it returns, ``a[:k]`` are at most ``a[k]`` and ``a[k + 1:n]`` at least, so the next
    order statistic is the least of those. The ``k + 1``-th is ``a[k]`` again when ``k + 1 == n``.
    """
    lo, hi = 0, n - 1
    while hi > lo:
        pivot = a[(lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                x = a[i]
                a[i] = a[j]
                a[j] = x
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    first = a[k]
    nxt = first
    if k + 1 < n:
        nxt = a[k + 1]
        for r in range(k + 2, n):
            if a[r] < nxt:
                nxt = a[r]
    return first, nxt


def _median_of(a, n):  # pragma: no cover - compiled with its callers
    """``divergence._nanmedian_last`` of one row whose non-NaN values are ``a[:n]``: (median, finite count).

    The count is of the finite values; the median reads the sorted row at ``(count - 1) // 2`` and ``count // 2``
    (an infinity sorts among the values, as in numpy's sort), NaN when no value is finite.
    """
    c = 0
    for r in range(n):
        if math.isfinite(a[r]):
            c += 1
    if c == 0:
        return math.nan, 0
    lo = (c - 1) // 2
    x, y = _select_two(a, n, lo)
    if c // 2 == lo:
        y = x
    return 0.5 * (x + y), c


def _window_medians(win, away, with_mad, med, cnt, mad, buf):  # pragma: no cover
    """Per person and feature, the median of a window's values without the seconds found diverged (compiled).

    The compiled twin of ``divergence.ArousalDivergence._relative``'s refresh: ``np.where(_keep(away, win), win,
    NaN)`` then ``_nanmedian_last`` (and, ``with_mad``, ``_nanmedian_last`` of the absolute deviations from that
    median), the same values: each median is an average of the same two order statistics, found by selection
    instead of a sort. Only a value -0.0 could leave a sort in another order than the selection's (0.0 and -0.0 are
    equal): the kernel then stops and returns False, and the caller takes the numpy path. Serial (``_SERIAL``).

    Parameters
    ----------
    win : ndarray, shape (n_people, F, W)
    away : ndarray of bool, shape (n_people, W)
        The seconds to leave out, unless they are most of the window (then every second is used).
    with_mad : bool
    med, mad : ndarray, shape (n_people, F)
        Receive the medians (NaN: no finite value) and the medians of the absolute deviations (``with_mad``).
    cnt : ndarray of int64, shape (n_people, F)
        Receives the counts of finite values.
    buf : ndarray, shape (W,)
        Scratch.

    Returns
    -------
    bool
        False when a kept value is -0.0 (the outputs are then incomplete).
    """
    n, F, W = win.shape
    for i in range(n):
        n_keep = 0
        for t in range(W):
            if not away[i, t]:
                n_keep += 1
        every = n_keep / W < 0.5
        for f in range(F):
            m = 0
            for t in range(W):
                if every or not away[i, t]:
                    v = win[i, f, t]
                    if v == v:
                        if v == 0.0 and math.copysign(1.0, v) < 0.0:
                            return False
                        buf[m] = v
                        m += 1
            md, c = _median_of(buf, m)
            med[i, f] = md
            cnt[i, f] = c
            if with_mad:
                k = 0
                for t in range(W):
                    if every or not away[i, t]:
                        v = win[i, f, t]
                        if v == v:
                            d = abs(v - md)
                            if d == d:
                                buf[k] = d
                                k += 1
                mad[i, f] = _median_of(buf, k)[0]
    return True


def _less_others_median(z, nan, out):  # pragma: no cover
    """Each person's value less the median of the other people's, per feature and second (compiled).

    The compiled twin of ``divergence._less_others_median`` (for values none of which is 0.0 or -0.0, as there),
    with its arithmetic: the people's values sorted once (NaN last), person ``i``'s others read from that order
    without one copy of ``z[i]`` (element ``k`` is the ``k``-th below ``z[i]``'s place, the ``k + 1``-th from it),
    their two middle values averaged, and ``z[i]`` less that (less ``nan[0]`` when no other value is finite,
    as numpy subtracts its NaN). Serial (see ``_SERIAL``).

    Parameters
    ----------
    z : ndarray, shape (n_people, F, n_sec)
    nan : ndarray, shape (1,)
        Holds NaN (passed, not a constant, so that the subtraction is the one numpy does).
    out : ndarray, shape (n_people, F, n_sec)
        Receives the divergences.
    """
    n, F, T = z.shape
    col = np.empty(n)
    srt = np.empty(n)
    for f in range(F):
        for t in range(T):
            n_nan = 0
            n_fin = 0
            for i in range(n):
                v = z[i, f, t]
                col[i] = v
                srt[i] = v
                if v != v:
                    n_nan += 1
                elif math.isfinite(v):
                    n_fin += 1
            srt.sort()  # NaN last
            for i in range(n):
                v = col[i]
                if v != v:
                    place = n - n_nan
                else:
                    place = 0
                    for j in range(n):
                        if col[j] < v:
                            place += 1
                cnt = n_fin - 1 if math.isfinite(v) else n_fin
                if cnt > 0:
                    lo = (cnt - 1) // 2
                    hi = cnt // 2
                    if lo >= place:
                        lo += 1
                    if hi >= place:
                        hi += 1
                    out[i, f, t] = v - 0.5 * (srt[lo] + srt[hi])
                else:
                    out[i, f, t] = v - nan[0]


def _xcorr_lags(x, step, nw, n_seg, L, J, detrend, ia, ib, r0, rmax, lag, rall, redo, rel,  # pragma: no cover
                flat_abs):
    """Windowed cross-correlation of every pair at lags ``-L .. L`` with the peak over lags (compiled).

    The compiled twin of ``synchrony._fast_xcorr`` + the peak picking of ``synchrony.windowed_xcorr``.
    Window ``j``: the leading person's segment is grid samples ``[j*step, j*step + n_seg)``, the
    follower's segment for lag ``l`` (``0 .. L``) starts ``l`` samples later. Per chunk of ``J`` windows
    (span ``(Jc - 1) * step + n_seg + L`` samples) the data are re-anchored on the chunk mean of the finite
    samples (and, with ``detrend``, on the chunk's line: the partial r on time does not change; missing
    samples count as the anchor, their windows are flagged in ``redo``). Per-person sums over the segment at
    every offset (``y``, ``y**2``, centred ``t * y``) are differences of prefix sums within the chunk. Per
    pair, one pass over the chunk's samples accumulates, for every lag at once (contiguous, vectorised),
    the prefix sums of ``y_a(s) * y_b(s + l)`` and ``y_b(s) * y_a(s + l)``; they are kept only where a
    window's lead segment starts or ends, and their differences are the windows' cross products. Restarting
    every chunk keeps the rounding to ~one chunk of additions. Chunks run in parallel (numba ``prange``).

    Parameters
    ----------
    x : ndarray, shape (n_people, n_samples), float64, C-contiguous
    step, nw, n_seg, L, J : int
        Window step (samples), number of windows, samples per lagged segment, max lag (samples), windows
        per chunk.
    detrend : bool
        Partial r on time within each segment.
    ia, ib : ndarray of int64, shape (n_pairs,)
    r0, rmax : ndarray, shape (n_pairs, nw)
        Receive r at lag 0 and the maximum r over lags ``-L .. L`` (every r clipped to [-1, 1]); among
        equal maxima the lag preferred is 0, then -1, +1, -2, +2, ... (as ``synchrony.summarize_xcorr``).
    lag : ndarray of int64, shape (n_pairs, nw)
        Receives the lag (samples) of that maximum: ``+l`` when the pair's first person leads.
    rall : ndarray, shape (n_pairs, nw, 2 * L + 1) or (0, 0, 0)
        When not empty, receives r at every lag, lags ascending from ``-L``.
    redo : ndarray of bool, shape (nw,)
        Receives True for windows with a missing sample or a near-flat segment at some lag (``c <= rel * S2``
        or ``c <= flat_abs * n_seg * max(1, level) ** 2``, as in the numpy path); their other outputs are
        undefined (the caller recomputes them with the masked path).
    rel, flat_abs : float
    """
    P = x.shape[0]
    K = ia.shape[0]
    L1 = L + 1
    nch = (nw + J - 1) // J
    sn = 1.0 / n_seg
    rsn = math.sqrt(sn)
    ctt = n_seg * (n_seg * n_seg - 1) / 12.0
    rct = 1.0 / math.sqrt(ctt)
    want_all = rall.shape[0] > 0
    for ch in numba.prange(nch):
        j0 = ch * J
        Jc = min(J, nw - j0)
        s0 = j0 * step
        span = (Jc - 1) * step + n_seg + L
        noff = span - n_seg + 1  # segment offsets 0 .. (Jc - 1) * step + L within the chunk
        half = (span - 1) / 2.0
        Y = np.empty((P, span))
        badc = np.zeros(span, np.bool_)
        sc2 = np.empty(P)
        for p in range(P):
            lvl = _centre_chunk_row(x, p, s0, span, Y, badc)
            if detrend:  # remove the chunk's line (fitted with missing samples as 0, as the numpy path)
                tyy = 0.0
                ttt = 0.0
                for i in range(span):
                    tki = i - half
                    tyy += tki * Y[p, i]
                    ttt += tki * tki
                beta = tyy / ttt
                for i in range(span):
                    if np.isfinite(x[p, s0 + i]):
                        Y[p, i] -= beta * (i - half)
            sc2[p] = max(1.0, lvl) ** 2
        # per-person sums of the segment at every offset -> w = 1 / sqrt(c), u = S1 / sqrt(n), v = St / sqrt(ctt)
        W = np.empty((P, noff))
        U = np.empty((P, noff))
        V = np.zeros((P, noff))
        lowo = np.zeros(noff, np.bool_)  # some person's segment at this offset is near-flat
        C1 = np.empty(span + 1)
        C2 = np.empty(span + 1)
        Ct = np.empty(span + 1)
        for p in range(P):
            a1 = 0.0
            a2 = 0.0
            at = 0.0
            C1[0] = 0.0
            C2[0] = 0.0
            Ct[0] = 0.0
            for i in range(span):
                v = Y[p, i]
                a1 += v
                a2 += v * v
                at += (i - half) * v
                C1[i + 1] = a1
                C2[i + 1] = a2
                Ct[i + 1] = at
            for o in range(noff):
                s1 = C1[o + n_seg] - C1[o]
                s2 = C2[o + n_seg] - C2[o]
                c = s2 - s1 * s1 * sn
                if detrend:
                    stt = (Ct[o + n_seg] - Ct[o]) - (o + (n_seg - 1) / 2.0 - half) * s1  # sum of centred t * y
                    c -= stt * stt / ctt
                    V[p, o] = stt * rct
                if c <= rel * s2 or c <= flat_abs * n_seg * sc2[p]:
                    lowo[o] = True
                W[p, o] = 1.0 / math.sqrt(c) if c > 0.0 else np.nan
                U[p, o] = s1 * rsn
        # the same per lag and window, [p, l, j] = offset j * step + l: the pair loop runs along windows
        U3 = np.empty((P, L1, Jc))
        W3 = np.empty((P, L1, Jc))
        V3 = np.empty((P, L1, Jc))
        for p in range(P):
            for ll in range(L1):
                for j in range(Jc):
                    U3[p, ll, j] = U[p, j * step + ll]
                    W3[p, ll, j] = W[p, j * step + ll]
                    V3[p, ll, j] = V[p, j * step + ll]
        # windows to redo: a missing sample in [start, start + n_seg + L), or a near-flat segment at some lag
        nbad = 0
        for i in range(n_seg + L):
            nbad += badc[i]
        for j in range(Jc):
            if j:
                for i in range(step):
                    nbad += badc[(j - 1) * step + n_seg + L + i] - badc[(j - 1) * step + i]
            flag = nbad > 0
            for ll in range(L1):
                if lowo[j * step + ll]:
                    flag = True
            redo[j0 + j] = flag
        # per pair: prefix sums of the lagged products for all lags, kept at the windows' segment starts / ends.
        # Events in sample order: position, window, start (-1: subtract the prefix sum) or end (+1: add it)
        ne = 2 * Jc
        epos = np.empty(ne, np.int64)
        ewin = np.empty(ne, np.int64)
        esgn = np.empty(ne, np.int64)
        js = 0
        je = 0
        for e in range(ne):
            if js < Jc and js * step <= je * step + n_seg:  # a start first where a start meets an end
                epos[e] = js * step
                ewin[e] = js
                esgn[e] = -1
                js += 1
            else:
                epos[e] = je * step + n_seg
                ewin[e] = je
                esgn[e] = 1
                je += 1
        acp = np.empty(L1)
        acn = np.empty(L1)
        # rows padded (Jc + 9 values): a power-of-two row length maps the lags' rows to the same cache sets
        Dp = np.empty((L1, Jc + 9))  # [l, j]: sum over window j's lead segment of y_a(s) y_b(s + l)
        Dn = np.empty((L1, Jc + 9))  # the same with b leading
        Rp = np.empty((L1, Jc + 9))  # r; [l, j] with a leading, b following l samples later
        Rn = np.empty((L1, Jc + 9))  # r; b leading
        bp = np.empty(Jc)  # running peak over lags and its lag, a leading (from lag 0) and b leading (lags >= 1)
        lp = np.empty(Jc, np.int64)
        bn = np.empty(Jc)
        ln = np.empty(Jc, np.int64)
        for k in range(K):
            a = ia[k]
            b = ib[k]
            ya = Y[a]
            yb = Y[b]
            acp[:] = 0.0
            acn[:] = 0.0
            i = 0
            for e in range(ne):
                q = epos[e]
                for t in range((q - i) // 4):  # four samples per pass over the lags: fewer loads, stores of the sums
                    i4 = i + 4 * t
                    a0 = ya[i4]
                    a1 = ya[i4 + 1]
                    a2 = ya[i4 + 2]
                    a3 = ya[i4 + 3]
                    b0 = yb[i4]
                    b1 = yb[i4 + 1]
                    b2 = yb[i4 + 2]
                    b3 = yb[i4 + 3]
                    fa = ya[i4:]  # views: indices from 0 up, which the compiler vectorises
                    fb = yb[i4:]
                    for ll in range(L1):
                        acp[ll] += (a0 * fb[ll] + a1 * fb[ll + 1]) + (a2 * fb[ll + 2] + a3 * fb[ll + 3])
                        acn[ll] += (b0 * fa[ll] + b1 * fa[ll + 1]) + (b2 * fa[ll + 2] + b3 * fa[ll + 3])
                i += (q - i) // 4 * 4
                for i1 in range(i, q):
                    a0 = ya[i1]
                    b0 = yb[i1]
                    fa = ya[i1:]
                    fb = yb[i1:]
                    for ll in range(L1):
                        acp[ll] += a0 * fb[ll]
                        acn[ll] += b0 * fa[ll]
                i = q
                j = ewin[e]
                if esgn[e] < 0:
                    for ll in range(L1):
                        Dp[ll, j] = -acp[ll]
                        Dn[ll, j] = -acn[ll]
                else:
                    for ll in range(L1):
                        Dp[ll, j] += acp[ll]
                        Dn[ll, j] += acn[ll]
            ua = U3[a, 0]  # the lead segments' (lag 0) values, (Jc,)
            ub = U3[b, 0]
            wa = W3[a, 0]
            wb = W3[b, 0]
            va = V3[a, 0]
            vb = V3[b, 0]
            # r per lag along windows (contiguous, vectorised), clipped; running peak per window: the first
            # (smallest) lag of a strictly larger r, lag 0 included on a's side
            for ll in range(L1):
                Ub = U3[b, ll]
                Ua = U3[a, ll]
                Wb = W3[b, ll]
                Wa = W3[a, ll]
                dp = Dp[ll]
                dn = Dn[ll]
                rp = Rp[ll]
                rn = Rn[ll]
                if detrend:
                    Vb = V3[b, ll]
                    Va = V3[a, ll]
                    for j in range(Jc):
                        rp[j] = (dp[j] - ua[j] * Ub[j] - va[j] * Vb[j]) * (wa[j] * Wb[j])
                        rn[j] = (dn[j] - ub[j] * Ua[j] - vb[j] * Va[j]) * (wb[j] * Wa[j])
                else:
                    for j in range(Jc):
                        rp[j] = (dp[j] - ua[j] * Ub[j]) * (wa[j] * Wb[j])
                        rn[j] = (dn[j] - ub[j] * Ua[j]) * (wb[j] * Wa[j])
                for j in range(Jc):
                    rp[j] = min(1.0, max(-1.0, rp[j]))
                    rn[j] = min(1.0, max(-1.0, rn[j]))
                if ll == 0:
                    for j in range(Jc):
                        bp[j] = rp[j]
                        lp[j] = 0
                        bn[j] = -np.inf
                        ln[j] = 0
                else:
                    for j in range(Jc):
                        up = rp[j] > bp[j]
                        bp[j] = rp[j] if up else bp[j]
                        lp[j] = ll if up else lp[j]
                        un = rn[j] > bn[j]
                        bn[j] = rn[j] if un else bn[j]
                        ln[j] = ll if un else ln[j]
            # b leading wins over a leading when larger, or equal at a smaller or the same |lag|
            for j in range(Jc):
                best = bp[j]
                lj = lp[j]
                if L and (bn[j] > best or (bn[j] == best and ln[j] <= lj)):
                    best = bn[j]
                    lj = -ln[j]
                r0[k, j0 + j] = Rp[0, j]
                rmax[k, j0 + j] = best
                lag[k, j0 + j] = lj
            if want_all:
                for j in range(Jc):
                    for ll in range(L1):
                        rall[k, j0 + j, L + ll] = Rp[ll, j]
                        rall[k, j0 + j, L - ll] = Rn[ll, j]
