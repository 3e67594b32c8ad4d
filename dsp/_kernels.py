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
_compiled: dict[str, Any] = {}
_lock = threading.RLock()  # held while numba is imported or a kernel compiled / loaded
_preloading: dict[str, threading.Thread] = {}


def _import_numba() -> bool:
    """Import numba once (under ``_lock``); False (and ``HAVE_NUMBA`` False) when it cannot be imported."""
    global numba, HAVE_NUMBA
    if numba is not None:
        return True
    try:
        import numba as nb
    except Exception as exc:  # pragma: no cover - depends on the environment
        logger.warning("numba is installed but cannot be imported (%s): using the numpy paths", exc)
        HAVE_NUMBA = False
        return False
    numba = nb
    return True


def _dispatcher(name: str):
    return numba.njit(cache=True, fastmath=False, parallel=True)(globals()["_" + name])


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


def _tree_sum(X, feature, threshold, missing_left, left, right, is_leaf, value, roots, out):  # pragma: no cover
    """Sum of the leaf values a gradient-boosted ensemble gives each row (compiled).

    Sum of the leaf values a gradient-boosted ensemble gives each row (the compiled twin of
    ``evidence.TreeEnsemble._tree_sum_numpy``); rows run in parallel (numba ``prange``).

    Parameters
    ----------
    X : ndarray, shape (n_rows, n_features), float64, C-contiguous
    feature, left, right, roots : ndarray of int64
    threshold, value : ndarray of float64
    missing_left, is_leaf : ndarray of bool
        The trees' nodes (see ``evidence.TreeEnsemble``): go left when ``x <= threshold``, NaN to
        ``missing_left``.
    out : ndarray, shape (n_rows,)
        Receives the sums.
    """
    n = X.shape[0]
    n_trees = roots.shape[0]
    for i in numba.prange(n):
        s = 0.0
        for k in range(n_trees):
            node = roots[k]
            while not is_leaf[node]:
                x = X[i, feature[node]]
                if math.isnan(x):
                    node = left[node] if missing_left[node] else right[node]
                elif x <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            s += value[node]
        out[i] = s
