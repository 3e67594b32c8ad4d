"""Interpersonal physiological synchrony in sliding windows (batch).

Every function takes ``x`` of shape ``(n_people, n_samples)`` on the common
grid (sample ``k`` at ``origin + k / fs``; NaN = missing) and returns arrays of
shape ``(n_pairs, n_windows)``, pairs ordered as :func:`pair_index`.

Windows
-------
Window ``j`` covers the grid samples ``[j * step, j * step + win)`` in absolute
grid indices, with ``win`` and ``step`` converted from seconds once
(``round(seconds * fs)``). Its end time is ``(j * step + win) / fs`` seconds
after the grid origin (the window is the half-open interval
``[start / fs, end / fs)``). The streaming :class:`attune_monitor.dsp.engine.SynchronyEngine`
uses exactly the same definition, so the same window index means the same
samples in both.

Missing data
------------
A window in which either person of a pair has fewer than ``min_valid`` (default
80 %) valid samples gives NaN with status :data:`MISSING`; a window where one
signal has (numerically) zero variance gives NaN with status :data:`FLAT`.
Windows above the threshold use only the samples valid for both people.

Which metric is "synchrony"
---------------------------
Slow trends (drifting skin conductance, heart rate settling after a task) make
two unrelated people correlate: a windowed r of raw levels can be about as large
against a time-shifted partner as against the true one (a real E4 dyad:
docs/validation.md). The default synchrony metric is therefore the *linearly detrended*
windowed r (``detrend=True``: the partial correlation of the two signals
controlling for time within the window), reported next to a time-shifted
surrogate chance level (:func:`shifted_surrogate`).

Implementation
--------------
Fully valid windows go through fast paths: per-window sums of cross products are prefix sums of
per-block (``step`` samples) cross products, computed in chunks of windows whose data are re-anchored
(minus the chunk mean; minus the chunk's line for the detrended r, which does not change it) so that
precision does not depend on the session length. At lag 0 the block products are the Gram matrices of
the data with a row of ones (and time) appended, so one matmul per chunk also gives the per-person sums;
the windowed cross-correlation multiplies every lead block by the follower blocks of all lags at once.
Windows with missing data, or where the anchored moments would lose precision (near-flat windows), are
recomputed directly from their samples (masked path), which alone decides what is flat.
When numba is importable, the plain (not detrended) lag-0 r uses a compiled kernel
(``dsp._kernels.get("pearson_lag0")``: the same chunk anchoring, running window sums, same precision
checks; faster than the numpy path, which stays the fallback and the reference). So does the windowed
cross-correlation, detrended or not (``dsp._kernels.get("xcorr_lags")``: the same chunk anchoring; per pair,
prefix sums of the lagged products for all lags at once, differenced at the windows' segment bounds; the same
precision checks and peak picking; the numpy path (:func:`_fast_xcorr`) is its reference).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from attune_monitor.dsp import _kernels

__all__ = [
    "OK", "MISSING", "FLAT", "STATUS_NAMES", "R_CLIP", "FAST_REL", "FLAT_ABS", "pair_index", "to_samples",
    "n_windows", "check_fs", "check_min_valid", "fisher_mean", "fisher_mean_z", "WindowedMetric", "window_view",
    "sliding_view",
    "masked_r", "pearson_windows", "xcorr_windows", "concordance_windows", "direction_windows",
    "standardized_windows", "rolling_pearson", "synchrony", "XcorrResult", "summarize_xcorr", "windowed_xcorr",
    "concordance_geometry", "sc_concordance", "single_session_index", "directional_agreement", "group_synchrony",
    "connectedness", "surrogate_shifts", "shifted_surrogate_from_z", "surrogate_stats", "shifted_surrogate",
]

logger = logging.getLogger(__name__)

#: window status codes (``int8``)
OK = 0
MISSING = 1
FLAT = 2
STATUS_NAMES = {OK: "ok", MISSING: "missing_data", FLAT: "flat"}

#: Fisher-z averaging clips |r| to this to keep arctanh finite.
R_CLIP = 1.0 - 1e-12
#: relative precision budget of the fast (anchored-moment) path; worse windows go to the masked path
FAST_REL = 1e-6
#: fast-path windows whose variance is below (1e-9 * level)**2 per sample also go to the masked path,
#: which decides what is flat (its threshold, (1e-10 * level)**2, is 100x lower: no borderline case is
#: decided by the fast path)
FLAT_ABS = 1e-18
#: windows per block in the masked path (bounds temporary memory)
_MASKED_BLOCK = 256
#: windows per chunk of the compiled lag-0 kernel (restart and re-anchor of its running sums)
_KERNEL_CHUNK = 128


# ----------------------------------------------------------------------------- helpers


def pair_index(n_people: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair order used by every ``(n_pairs, ...)`` array.

    Parameters
    ----------
    n_people : int
        Number of people (>= 2).

    Returns
    -------
    i, j : ndarray of int, shape (n_pairs,)
        ``np.triu_indices(n_people, 1)``: pair ``p`` is people ``(i[p], j[p])`` with ``i < j``.
    """
    n_people = int(n_people)
    if n_people < 2:
        raise ValueError(f"Invalid value for 'n_people': expected at least 2, but got {n_people}.")
    return np.triu_indices(n_people, 1)


def to_samples(seconds: float, fs: float, name: str, minimum: int = 1) -> int:
    """Convert a duration in seconds to a whole number of grid samples (``round(seconds * fs)``)."""
    if not (isinstance(seconds, (int, float, np.floating, np.integer)) and math.isfinite(seconds)):
        raise ValueError(f"Invalid value for '{name}': expected a finite number of seconds, but got {seconds!r}.")
    n = int(round(float(seconds) * float(fs)))
    if n < minimum:
        raise ValueError(
            f"Invalid value for '{name}': {seconds} s is {n} sample(s) at {fs} Hz, expected at least "
            f"{minimum}; use a longer duration."
        )
    return n


def n_windows(n_samples: int, win: int, step: int) -> int:
    """Number of complete windows ``[j*step, j*step+win)`` inside ``n_samples`` grid samples."""
    return max(0, (int(n_samples) - win) // step + 1)


def check_fs(fs: float) -> float:
    """``fs`` as a float, or ValueError when it is not a positive, finite sampling rate (Hz)."""
    if not (isinstance(fs, (int, float, np.floating, np.integer)) and math.isfinite(fs) and fs > 0):
        raise ValueError(f"Invalid value for 'fs': expected a positive sampling rate in Hz, but got {fs!r}.")
    return float(fs)


def _check_x(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(
            f"Invalid value for 'x': expected an array of shape (n_people >= 2, n_samples), but got shape {x.shape}."
        )
    if np.isinf(x).any():
        x = np.where(np.isinf(x), np.nan, x)
    return x


def check_min_valid(min_valid: float) -> float:
    """``min_valid`` as a float, or ValueError when it is not a fraction in (0, 1]."""
    if not (0.0 < float(min_valid) <= 1.0):
        raise ValueError(f"Invalid value for 'min_valid': expected a fraction in (0, 1], but got {min_valid!r}.")
    return float(min_valid)


def fisher_mean(r: np.ndarray, axis=0) -> np.ndarray:
    """Mean of correlations through Fisher's z (``tanh(mean(arctanh(r)))``), ignoring NaN.

    ``|r|`` is clipped to ``1 - 1e-12`` first. All-NaN slices give NaN.
    """
    r = np.asarray(r, dtype=np.float64)
    return fisher_mean_z(np.arctanh(np.clip(r, -R_CLIP, R_CLIP)), axis=axis)


def fisher_mean_z(z: np.ndarray, axis=0) -> np.ndarray:
    """:func:`fisher_mean` from the clipped Fisher z of the correlations, ``arctanh(clip(r, -R_CLIP, R_CLIP))``.

    For a caller that keeps the z of correlations it averages again (the view model's per-window columns): the
    same operations as :func:`fisher_mean` after its ``arctanh``, so the result is bitwise the same.

    Parameters
    ----------
    z : ndarray, float64, any shape
    axis : int
    """
    valid = np.isfinite(z)
    cnt = valid.sum(axis=axis)
    s = np.where(valid, z, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.tanh(s / np.maximum(cnt, 1)), np.nan)


@dataclass
class WindowedMetric:
    """One metric for every pair and window.

    Attributes
    ----------
    name : str
    values : ndarray, shape (n_pairs, n_windows)
        float64, NaN where ``status != OK``.
    status : ndarray of int8, shape (n_pairs, n_windows)
        :data:`OK`, :data:`MISSING` or :data:`FLAT`.
    window_index : ndarray of int64, shape (n_windows,)
        Absolute window index ``j``.
    end_sample : ndarray of int64, shape (n_windows,)
        Exclusive end grid index ``j * step + win``.
    fs, win, step : window geometry (samples).
    """

    name: str
    values: np.ndarray
    status: np.ndarray
    window_index: np.ndarray
    end_sample: np.ndarray
    fs: float
    win: int
    step: int
    extra: dict = field(default_factory=dict)

    @property
    def end_s(self) -> np.ndarray:
        """Window end times in seconds after the grid origin, shape (n_windows,)."""
        return self.end_sample / self.fs

    @property
    def start_sample(self) -> np.ndarray:
        """First sample of each window, shape ``(n_windows,)``: ``end_sample - win``."""
        return self.end_sample - self.win


def _setup(x, fs: float, window_s: float, step_s: float):
    """Validated input and window geometry shared by the batch metrics.

    Returns
    -------
    fs, x (n_people, n_samples), win, step, ia, ib, window_index (n_windows,), end_sample (n_windows,), n_windows
    """
    fs = check_fs(fs)
    x = _check_x(x)
    win = to_samples(window_s, fs, "window_s", 3)
    step = to_samples(step_s, fs, "step_s", 1)
    ia, ib = pair_index(x.shape[0])
    idx, end = _geometry(x.shape[1], win, step)
    return fs, x, win, step, ia, ib, idx, end, len(idx)


def _geometry(n_samples, win, step, first=0):
    nw = n_windows(n_samples, win, step)
    idx = np.arange(nw, dtype=np.int64) + first
    return idx, (np.arange(nw, dtype=np.int64) * step + win + first * step)


def window_view(x: np.ndarray, win: int, step: int, nw: int, start: int = 0) -> np.ndarray:
    """Strided read-only view (nw, n_people, win) of windows starting at ``start + j*step``."""
    if nw < 1 or start + (nw - 1) * step + win > x.shape[1]:
        raise ValueError(f"{nw} windows of {win} samples (step {step}) from {start} do not fit in {x.shape[1]}.")
    xs = x[:, start:]
    s0, s1 = xs.strides
    return as_strided(xs, shape=(nw, x.shape[0], win), strides=(step * s1, s0, s1), writeable=False)


def sliding_view(a: np.ndarray, n: int) -> np.ndarray:
    """Read-only view of every run of ``n`` samples along the last axis.

    Read-only view (..., a.shape[-1] - n + 1, n) of every run of ``n`` samples along the last axis
    (``sliding_window_view`` without its per-call overhead, which matters per streaming tick).
    """
    st = a.strides
    return as_strided(a, shape=a.shape[:-1] + (a.shape[-1] - n + 1, n), strides=st + (st[-1],), writeable=False)


# ----------------------------------------------------------------------------- masked (direct) kernel


def masked_r(A: np.ndarray, B: np.ndarray, detrend: bool = False):
    """Pearson r between every row of ``A`` and every row of ``B``, window by window.

    Uses only samples valid (finite) in both rows. With ``detrend`` the linear
    trend in time is removed first (= partial correlation controlling for
    time, fitted on the pair-valid samples).

    Parameters
    ----------
    A : ndarray, shape (n_windows, n_a, n)
    B : ndarray, shape (n_windows, n_b, n)
    detrend : bool

    Returns
    -------
    r : ndarray, shape (n_windows, n_a, n_b)
        NaN where undefined.
    flat : ndarray of bool, shape (n_windows, n_a, n_b)
        True where either (detrended) signal has numerically zero variance.
    """
    MA = np.isfinite(A)
    MB = np.isfinite(B)
    ca = MA.sum(-1)
    cb = MB.sum(-1)
    ma = np.where(MA, A, 0.0).sum(-1) / np.maximum(ca, 1)
    mb = np.where(MB, B, 0.0).sum(-1) / np.maximum(cb, 1)
    XA = np.where(MA, A - ma[..., None], 0.0)
    XB = np.where(MB, B - mb[..., None], 0.0)
    FA = MA.astype(np.float64)
    FBt = MB.astype(np.float64).swapaxes(-1, -2)
    XBt = XB.swapaxes(-1, -2)
    N = FA @ FBt
    Sa = XA @ FBt
    Sb = FA @ XBt
    Saa = (XA * XA) @ FBt
    Sbb = FA @ (XB * XB).swapaxes(-1, -2)
    Sab = XA @ XBt
    with np.errstate(invalid="ignore", divide="ignore"):
        Ni = 1.0 / N
        caa = Saa - Sa * Sa * Ni
        cbb = Sbb - Sb * Sb * Ni
        cab = Sab - Sa * Sb * Ni
        if detrend:
            n = A.shape[-1]
            t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
            FAt = FA * t
            St = FAt @ FBt
            Stt = (FAt * t) @ FBt
            Sat = (XA * t) @ FBt
            Sbt = FAt @ XBt
            ctt = Stt - St * St * Ni
            cat = Sat - Sa * St * Ni
            cbt = Sbt - Sb * St * Ni
            caa = caa - cat * cat / ctt
            cbb = cbb - cbt * cbt / ctt
            cab = cab - cat * cbt / ctt
        sa = (1e-10 * np.maximum(1.0, np.abs(ma)))[..., :, None] ** 2
        sb = (1e-10 * np.maximum(1.0, np.abs(mb)))[..., None, :] ** 2
        flat = ~((caa > N * sa) & (cbb > N * sb))
        r = np.clip(cab / np.sqrt(caa * cbb), -1.0, 1.0)
    r[flat] = np.nan
    return r, flat


def _valid_fraction(W: np.ndarray) -> np.ndarray:
    """(n_windows, n_people) fraction of finite samples."""
    return np.isfinite(W).mean(-1)


def _pair_status(frac, flat_pairs, ia, ib, min_valid):
    """Pair status, shape (n_windows, n_pairs), from per-person valid fraction (n_windows, n_people)."""
    miss = (frac[:, ia] < min_valid) | (frac[:, ib] < min_valid)
    st = np.where(miss, MISSING, np.where(flat_pairs, FLAT, OK)).astype(np.int8)
    return st


# ----------------------------------------------------------------------------- window transforms


def _slopes(W: np.ndarray, n_slope: int) -> np.ndarray:
    """OLS slopes (per sample) over sliding sub-windows of ``n_slope`` samples.

    W (..., n) -> (..., n - n_slope + 1); NaN where any sample of the sub-window is missing.
    """
    t = np.arange(n_slope, dtype=np.float64) - (n_slope - 1) / 2.0
    k = t / (t @ t)
    return sliding_view(W, n_slope) @ k


def _diff(W: np.ndarray) -> np.ndarray:
    return W[..., 1:] - W[..., :-1]


# ----------------------------------------------------------------------------- direct per-window metrics
# Each takes a stack of windows W (n_windows, n_people, win) and returns arrays (n_windows, ...).
# The streaming engine calls these on its newly completed windows; the batch functions call them on
# all windows (or, for the fast-path metrics, on the windows the fast path could not do).


def _z_pairs(Z, ia, ib):
    """Pearson r of pairs from unit-norm rows: (n_windows, n_people, n) -> (n_windows, n_pairs)."""
    M = Z @ Z.swapaxes(-1, -2)
    return np.clip(M[:, ia, ib], -1.0, 1.0)


def pearson_windows(W, ia, ib, *, detrend=False, diff=False, min_valid=0.8):
    """Windowed r for a stack of windows.

    Fully valid windows use unit-norm (detrended) window vectors and one batched matmul; windows with
    missing samples use the masked pair-complete path.

    Parameters
    ----------
    W : ndarray, shape (n_windows, n_people, win)
    ia, ib : ndarray, shape (n_pairs,)
    detrend, diff : bool
        Remove the linear trend within the window / use first differences within the window.

    Returns
    -------
    r : ndarray, shape (n_windows, n_pairs)
    status : ndarray of int8, shape (n_windows, n_pairs)
    """
    frac = _valid_fraction(W)
    full = (frac == 1.0).all(-1)
    r = np.empty((W.shape[0], len(ia)))
    flat = np.zeros(r.shape, dtype=bool)
    if full.any():
        Wf = W if full.all() else W[full]
        rf = _z_pairs(standardized_windows(Wf, detrend=detrend, diff=diff), ia, ib)
        r[full] = rf
        flat[full] = np.isnan(rf)
    if not full.all():
        part = ~full
        D = W[part]
        D = _diff(D) if diff else D
        R, fl = masked_r(D, D, detrend=detrend)
        r[part] = R[:, ia, ib]
        flat[part] = fl[:, ia, ib]
    st = _pair_status(frac, flat, ia, ib, min_valid)
    r = np.where(st == OK, r, np.nan)
    return r, st


def xcorr_windows(W, ia, ib, max_lag: int, *, detrend=False, min_valid=0.8):
    """Windowed cross-correlation for a stack of windows (see :func:`windowed_xcorr`).

    Returns
    -------
    R : ndarray, shape (n_windows, n_pairs, 2 * max_lag + 1)
        r at lags ``-max_lag .. +max_lag`` samples (positive = first person of the pair leads).
    status : ndarray of int8, shape (n_windows, n_pairs)
    """
    nw, P, win = W.shape
    n_seg = win - max_lag
    frac = _valid_fraction(W)
    full = (frac == 1.0).all(-1)
    R = np.full((nw, len(ia), 2 * max_lag + 1), np.nan)
    flat_any = np.zeros((nw, len(ia)), dtype=bool)
    if full.any():
        Wf = W if full.all() else W[full]
        nf = Wf.shape[0]
        Zl = standardized_windows(Wf[..., :n_seg], detrend=detrend)  # (nf, P, n_seg)
        F = sliding_view(Wf, n_seg)  # (nf, P, L+1, n_seg)
        Zf = standardized_windows(F.reshape(nf, P * (max_lag + 1), n_seg), detrend=detrend)
        M = np.clip(Zl @ Zf.swapaxes(-1, -2), -1.0, 1.0).reshape(nf, P, P, max_lag + 1)  # [w, a, b, lag]
        Rf = np.empty((nf, len(ia), 2 * max_lag + 1))
        Rf[..., max_lag:] = M[:, ia, ib, :]
        Rf[..., : max_lag + 1] = M[:, ib, ia, ::-1]
        R[full] = Rf
        flat_any[full] = np.isnan(Rf).any(-1)
    if not full.all():
        part = np.flatnonzero(~full)
        Wp = W[part]
        lead = Wp[..., :n_seg]
        for lag in range(max_lag + 1):  # one block of all pairs per lag
            Rl, fl = masked_r(lead, Wp[..., lag : lag + n_seg], detrend=detrend)
            R[part, :, max_lag + lag] = Rl[:, ia, ib]
            R[part, :, max_lag - lag] = Rl[:, ib, ia]
            flat_any[part] |= fl[:, ia, ib] | fl[:, ib, ia]
    st = _pair_status(frac, flat_any, ia, ib, min_valid)
    R[st != OK] = np.nan
    return R, st


def concordance_windows(W, ia, ib, n_slope: int, min_valid=0.8):
    """SC concordance for a stack of raw windows: r of the 5-s slope series inside each window.

    Returns r, status : (n_windows, n_pairs)
    """
    S = _slopes(W, n_slope)
    frac = _valid_fraction(S)
    R, flat = masked_r(S, S)
    st = _pair_status(frac, flat[:, ia, ib], ia, ib, min_valid)
    return np.where(st == OK, R[:, ia, ib], np.nan), st


def direction_windows(W, ia, ib, min_valid=0.8):
    """Directional agreement for a stack of windows.

    Share of the window's sample-to-sample changes (``win - 1`` first differences) that have the same
    sign in both people (a zero change counts as its own sign), among changes valid for both.

    Returns agree, status : (n_windows, n_pairs)
    """
    D = _diff(W)
    V = np.isfinite(D)
    if V.all():  # the usual case: matmuls of the signs (integer counts: the same numbers)
        sg = np.sign(D)
        # agreements = both up + both down + both unchanged. With s the signs and m = |s| (1 where it changed):
        # up.up' + down.down' = (s.s' + m.m') / 2 and unchanged.unchanged' = n - M_a - M_b + m.m' (M: the changes
        # per person), so two products of the n changes instead of one of 3n indicators, and one (m.m' = n) when
        # every sample changed; every term is an integer (or half of one), so exact
        n = D.shape[-1]
        G = sg @ sg.swapaxes(-1, -2)
        moved = np.abs(sg)
        if moved.all():
            G += n
            G *= 0.5
        else:
            mm = moved @ moved.swapaxes(-1, -2)
            Mv = moved.sum(-1)
            G *= 0.5
            G += 1.5 * mm + n - Mv[..., :, None] - Mv[..., None, :]
        P = G.shape[-1]
        # G[:, ia, ib] (the same numbers and memory order) from one gather of rows: fancy indexing with two index
        # arrays costs several times as much at 64 people (2016 pairs)
        a = np.take(G.reshape(len(G), P * P).T, ia * P + ib, axis=0).T / D.shape[-1]
        return a, np.zeros(a.shape, np.int8)
    frac = V.mean(-1)
    sg = np.sign(np.where(V, D, 0.0))
    Vf = V.astype(np.float64)
    agree = np.zeros(D.shape[:1] + (W.shape[1], W.shape[1]))
    for s in (-1.0, 0.0, 1.0):
        ind = ((sg == s) & V).astype(np.float64)
        agree += ind @ ind.swapaxes(-1, -2)
    N = Vf @ Vf.swapaxes(-1, -2)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (agree / N)[:, ia, ib]
    st = _pair_status(frac, np.zeros(a.shape, bool), ia, ib, min_valid)
    return np.where(st == OK, a, np.nan), st


def standardized_windows(W, *, detrend=True, diff=False):
    """Per-person unit-norm (detrended) window vectors, NaN rows where not fully valid or flat.

    Parameters
    ----------
    W : ndarray, shape (n_windows, n_people, win)

    Returns
    -------
    Z : ndarray, shape (n_windows, n_people, n) with ``n = win`` (``win - 1`` with ``diff``)
        ``Z[j, a] @ Z[j', b]`` is Pearson's r (partial on time with ``detrend``) between a's window j
        and b's window j'.
    """
    D = _diff(W) if diff else W
    n = D.shape[-1]
    scale = np.maximum(1.0, np.abs(D.mean(-1)))
    X = D - D.mean(-1, keepdims=True)
    if detrend:
        t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        X = X - ((X @ t) / (t @ t))[..., None] * t
    nrm = np.sqrt(np.einsum("...i,...i->...", X, X))
    bad = ~(nrm > 1e-10 * scale * math.sqrt(n))  # NaN (missing) or flat
    with np.errstate(invalid="ignore", divide="ignore"):
        Z = X / nrm[..., None]
    Z[bad] = np.nan
    return Z


# ----------------------------------------------------------------------------- fast path


def _fast_pearson(x, step, nw, n_seg, detrend, ia, ib, out, J=None):
    """Windowed r at lag 0 for every pair, fully valid windows (fast path of :func:`rolling_pearson`).

    Window ``j`` is grid samples ``[j*step, j*step + n_seg)`` of ``x``. Per chunk of ``J`` windows the
    data are re-anchored (minus the chunk mean, or the chunk's line with ``detrend``: the partial r on
    time does not change, and hours of drift do not eat the precision), a row of ones (and of time, with
    ``detrend``) is appended, and one batched matmul gives the Gram matrix of every ``step``-sample
    block. Prefix sums of the block Grams (within the chunk) give every window's sums of ``y_a * y_b``,
    ``y_a``, ``t * y_a`` and ``y_a ** 2`` at once; the correlation formula then runs in (pairs, windows)
    layout.

    Parameters
    ----------
    x : ndarray, shape (n_people, n_samples)
    step, nw, n_seg : int
        Window step (samples), number of windows, samples per window.
    detrend : bool
        Partial r on time within the window.
    ia, ib : ndarray, shape (n_pairs,)
    out : ndarray, shape (n_pairs, nw)
        Receives r (clipped to [-1, 1]); undefined where ``redo``.
    J : int, optional
        Windows per chunk (scratch arrays of ~J * (n_people + 2)**2 values); by default ~140k values
        (the block Grams of a chunk then stay in a 2 MB L2 cache).

    Returns
    -------
    redo : ndarray of bool, shape (nw,)
        Windows with a missing sample, or whose anchored moments would lose precision (near-flat):
        recompute them with the masked path.
    """
    P, n = x.shape
    g = step
    q, rem = divmod(n_seg, g)
    K = len(ia)
    Pa = P + 2 if detrend else P + 1  # appended rows: ones (and time, for the detrended r)
    bad = ~np.isfinite(x)
    cb = np.concatenate([[0], np.cumsum(bad.any(0))])
    ctt = n_seg * (n_seg * n_seg - 1) / 12.0
    J = int(min(nw, J or max(64, min(1024, 140_000 // (Pa * Pa)))))
    nbk = J + q - 1
    span = (J - 1) * step + n_seg
    pr = np.arange(P)
    redo = np.zeros(nw, dtype=bool)
    tk = np.arange(span) - (span - 1) / 2.0
    st = np.arange(J) * step
    cj = st + (n_seg - 1) / 2.0 - (span - 1) / 2.0  # window centre in chunk time
    # scratch arrays, reused for every chunk (no page faults on fresh temporaries, stays in cache)
    A = np.empty((Pa, span))
    A[P] = 1.0
    if detrend:
        A[P + 1] = tk
    BlT = np.empty((nbk, g, Pa))
    cs = np.empty((nbk + 1, Pa, Pa))  # block Grams, then (in place) their prefix sums; row 0 = 0
    cs[0] = 0.0
    flat = ia * Pa + ib
    sn = 1.0 / n_seg
    cv = cs.reshape(nbk + 1, Pa * Pa)
    rows = list(cv)  # row views made once: the prefix-sum loop is bound by per-call cost
    add = np.add
    # (pairs, windows) scratch, flat so that the first Jc windows are one contiguous (K, Jc) array
    T1b, T2b, Rb = np.empty(K * J), np.empty(K * J), np.empty(K * J)
    sidx = np.concatenate([pr * Pa + pr, P * Pa + pr] + ([(P + 1) * Pa + pr] if detrend else []))
    for j0 in range(0, nw, J):
        Jc = min(J, nw - j0)
        s0 = j0 * step
        Y = A[:P]
        seg = x[:, s0 : s0 + span]
        m = seg.shape[1]
        full = cb[s0 + m] == cb[s0] and m == span
        if full:
            lvl = np.maximum(seg.max(1), -seg.min(1))
            np.subtract(seg, seg.mean(1)[:, None], out=Y)
            if detrend:  # partial r on time is unchanged by removing a line: anchor on the chunk's line
                Y -= ((Y @ tk) / (tk @ tk))[:, None] * tk
        else:
            lvl = np.where(np.isfinite(seg), np.abs(seg), 0.0).max(1)
            Y[:, :m] = seg
            Y[:, m:] = np.nan
            M = np.isfinite(Y)
            Y0 = np.where(M, Y, 0.0)
            Y -= (Y0.sum(-1) / np.maximum(M.sum(-1), 1))[:, None]
            if detrend:
                Y -= ((np.where(M, Y, 0.0) @ tk) / (tk @ tk))[:, None] * tk
            np.copyto(Y, 0.0, where=~M)
        sc2 = np.maximum(1.0, lvl) ** 2  # level scale per person
        nb = Jc + q - 1
        Av = A[:, : nb * g].reshape(Pa, nb, g)
        # left operand straight from the strided view (BLAS takes its row stride); the right one copied
        np.copyto(BlT[:nb], Av.transpose(1, 2, 0))
        np.matmul(Av.transpose(1, 0, 2), BlT[:nb], out=cs[1 : nb + 1])
        prev = rows[0]
        for r in rows[1 : nb + 1]:  # prefix sums over blocks: row adds beat np.cumsum along axis 0
            add(prev, r, r)
            prev = r
        # (pairs, windows) layout from here: fancy indexing along axis 1 then .T is C-contiguous, so the
        # pair (and per-person) entries of every prefix row are gathered once and differenced as rows
        Cp = cv[: nb + 1, flat].T  # (K, nb + 1)
        R = np.subtract(Cp[:, q : q + Jc], Cp[:, :Jc], out=Rb[: K * Jc].reshape(K, Jc))
        Cs = cv[: nb + 1, sidx].T  # (2 or 3 P, nb + 1): sums of y**2, y (and t * y)
        Sw = Cs[:, q : q + Jc] - Cs[:, :Jc]
        if rem:
            # the last rem samples of each window (step does not divide the window): direct Gram
            Ar = sliding_window_view(A, rem, axis=1)[:, q * g : q * g + (Jc - 1) * step + 1 : step]
            Ar = Ar.transpose(1, 0, 2)
            Gr = np.matmul(Ar, Ar.swapaxes(-1, -2)).reshape(Jc, Pa * Pa)
            R += Gr[:, flat].T
            Sw += Gr[:, sidx].T
        S2, S1 = Sw[:P], Sw[P : 2 * P]  # (P, Jc)
        c = S2 - S1 * S1 * sn
        if detrend:
            St = Sw[2 * P :] - cj[:Jc] * S1  # sum of centred t * y
            c -= St * St / ctt
        low = ((c <= FAST_REL * S2) | (c <= FLAT_ABS * n_seg * sc2[:, None])).any(0)
        # r = w_a w_b (S_ab - u_a u_b - v_a v_b), w = 1 / sqrt(c), u = S1 / sqrt(n), v = St / sqrt(ctt);
        # row gathers (np.take into preallocated scratch) of the per-person (P, Jc) arrays
        T1 = T1b[: K * Jc].reshape(K, Jc)
        T2 = T2b[: K * Jc].reshape(K, Jc)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # redo windows: inf/NaN
            wT = 1.0 / np.sqrt(c)
            uT = S1 * math.sqrt(sn)
            np.take(uT, ia, axis=0, out=T1, mode="clip")
            T1 *= np.take(uT, ib, axis=0, out=T2, mode="clip")
            R -= T1
            if detrend:
                vT = St * (1.0 / math.sqrt(ctt))
                np.take(vT, ia, axis=0, out=T1, mode="clip")
                T1 *= np.take(vT, ib, axis=0, out=T2, mode="clip")
                R -= T1
            np.take(wT, ia, axis=0, out=T1, mode="clip")
            T1 *= np.take(wT, ib, axis=0, out=T2, mode="clip")
            R *= T1
        np.clip(R, -1.0, 1.0, out=R)  # contiguous, then one copy into the strided output columns
        out[:, j0 : j0 + Jc] = R
        sw = s0 + st[:Jc]
        redo[j0 : j0 + Jc] = ((cb[sw + n_seg] - cb[sw]) > 0) | low
    return redo


def _fast_xcorr(x, step, nw, n_seg, L, detrend):
    """Lagged r for every ordered pair and fully valid window, with the peak over lags (generator).

    Window ``j``: person a's lead segment is grid samples ``[j*step, j*step + n_seg)``; person b's
    follower segment for lag ``l`` (``0 .. L``) starts ``l`` samples later. Per chunk of windows the
    data are re-anchored (chunk mean, or the chunk's line with ``detrend``), the cross products of
    every ``step``-sample lead block with the follower blocks of all lags are one batched matmul, and
    window sums are differences of their prefix sums within the chunk. Per-person sums (``y``,
    ``y**2``, ``t*y``) come from prefix sums of the same anchored data.

    Yields
    ------
    j0, Jc : int
        First window and number of windows of the chunk.
    redo : ndarray of bool, shape (Jc,)
        Windows the fast path cannot do exactly (a missing sample, or too little variance for the
        anchored moments): recompute them with the masked path.
    r0 : ndarray, shape (Jc, n_people, n_people)
        ``r0[j, a, b]``: r at lag 0.
    best, arg : ndarray, shape (Jc, n_people, n_people)
        Maximum over lags ``1 .. L`` of r(a's lead segment, b's segment ``l`` later) and the smallest
        lag reaching it (float).
    R : ndarray, shape (Jc, n_people, L + 1, n_people)
        ``R[j, a, l, b]``: every lag. Scratch arrays: all are overwritten at the next yield.
    """
    P, n = x.shape
    g = step
    q, rem = divmod(n_seg, g)
    L1 = L + 1
    bad = ~np.isfinite(x)
    cb = np.concatenate([[0], np.cumsum(bad.any(0))])
    ctt = n_seg * (n_seg * n_seg - 1) / 12.0
    J = int(min(nw, max(16, min(512, 700_000 // (P * P * L1)))))  # (J, P, L+1, P) arrays of ~5 MB
    nbk = J + q - 1
    span = (J - 1) * step + n_seg + L
    tk = np.arange(span) - (span - 1) / 2.0
    st = np.arange(J) * step
    lags = np.arange(L1)
    Yb = np.empty((P, span))
    lead = np.empty((nbk, P, g))
    fol = np.empty((nbk, g, L1, P))
    B = np.empty((nbk + 1, P, L1 * P))
    B[0] = 0.0
    C3 = np.empty((3, P, span + 1))
    C3[:, :, 0] = 0.0
    R = np.empty((J, P, L1, P))
    T = np.empty((J, P, L1, P))
    sn = 1.0 / n_seg
    for j0 in range(0, nw, J):
        Jc = min(J, nw - j0)
        s0 = j0 * step
        seg = x[:, s0 : s0 + span]
        m = seg.shape[1]
        Y = Yb
        Y[:, :m] = seg
        if m < span:
            Y[:, m:] = np.nan
        if cb[s0 + m] == cb[s0] and m == span:
            Y -= Y.mean(1)[:, None]
            if detrend:
                Y -= ((Y @ tk) / (tk @ tk))[:, None] * tk
        else:
            M = np.isfinite(Y)
            Y -= (np.where(M, Y, 0.0).sum(-1) / np.maximum(M.sum(-1), 1))[:, None]
            if detrend:
                Y -= ((np.where(M, Y, 0.0) @ tk) / (tk @ tk))[:, None] * tk
            np.copyto(Y, 0.0, where=~M)
        np.cumsum(np.stack([Y, Y * Y, Y * tk]), 2, out=C3[:, :, 1:])
        # per-person sums of every segment starting l samples after a window start: (3, Jc, L1, P)
        s = st[:Jc, None] + lags
        Sp = (C3[:, :, s + n_seg] - C3[:, :, s]).transpose(0, 2, 3, 1)
        S1, S2 = Sp[0], Sp[1]
        c = S2 - S1 * S1 * sn
        St = None
        if detrend:
            St = Sp[2] - (s + (n_seg - 1) / 2.0 - (span - 1) / 2.0)[:, :, None] * S1  # sum of centred t * y
            c -= St * St / ctt
        sc2 = np.maximum(1.0, np.where(np.isfinite(seg), np.abs(seg), 0.0).max(1)) ** 2  # level scale per person
        low = ((c <= FAST_REL * S2) | (c <= FLAT_ABS * n_seg * sc2)).any(axis=(1, 2))  # (Jc,)
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = 1.0 / np.sqrt(c)  # (Jc, L1, P)
        nb = Jc + q - 1
        Yv = Y[:, : nb * g].reshape(P, nb, g)
        np.copyto(lead[:nb], Yv.transpose(1, 0, 2))
        H = sliding_window_view(Y, L1, axis=1)  # (P, span - L, L1): H[b, i, l] = Y[b, i + l]
        Hs = H.strides
        Fv = as_strided(H, shape=(nb, g, L1, P), strides=(g * Hs[1], Hs[1], Hs[2], Hs[0]), writeable=False)
        np.copyto(fol[:nb], Fv)
        Bv = B[: nb + 1]
        np.matmul(lead[:nb], fol[:nb].reshape(nb, g, L1 * P), out=Bv[1:])
        for i in range(1, nb + 1):  # prefix sums over blocks: row adds beat np.cumsum along axis 0
            np.add(Bv[i - 1], Bv[i], out=Bv[i])
        Rv = R[:Jc]
        Tv = T[:Jc]
        np.subtract(Bv[q : q + Jc], Bv[:Jc], out=Rv.reshape(Jc, P, L1 * P))
        if rem:  # the last rem samples of each segment (step does not divide it): direct products
            o = q * g
            lr = sliding_window_view(Y, rem, axis=1)[:, o : o + (Jc - 1) * step + 1 : step].transpose(1, 0, 2)
            Fr = as_strided(H[:, o:], shape=(Jc, rem, L1, P), strides=(step * Hs[1], Hs[1], Hs[2], Hs[0]))
            Rv.reshape(Jc, P, L1 * P)[...] += np.matmul(lr, np.ascontiguousarray(Fr).reshape(Jc, rem, L1 * P))
        with np.errstate(invalid="ignore", over="ignore"):
            # r = S_ab / (s_a s_b) - (u_a / s_a)(u_b / s_b) - (v_a / s_a)(v_b / s_b) with u = S1 / sqrt(n),
            # v = St / sqrt(ctt) (a = lead at lag 0, b = follower at lag l); both outer products as
            # batched matmuls with an inner dimension of 2 (BLAS; broadcasting is 3x slower here)
            Ua = np.empty((Jc, P, 2))
            Vb = np.empty((Jc, 2, L1 * P))
            Ua[:, :, 0] = inv[:, 0]
            Ua[:, :, 1] = 0.0
            Vb[:, 0] = inv.reshape(Jc, L1 * P)
            Vb[:, 1] = 0.0
            Rf = Rv.reshape(Jc, P, L1 * P)
            Rf *= np.matmul(Ua, Vb, out=Tv.reshape(Jc, P, L1 * P))
            Ua[:, :, 0] = S1[:, 0] * inv[:, 0] * math.sqrt(sn)
            Vb[:, 0] = (S1 * inv).reshape(Jc, L1 * P) * math.sqrt(sn)
            if St is not None:  # detrend
                Ua[:, :, 1] = St[:, 0] * inv[:, 0] / math.sqrt(ctt)
                Vb[:, 1] = (St * inv).reshape(Jc, L1 * P) / math.sqrt(ctt)
            Rf -= np.matmul(Ua, Vb, out=Tv.reshape(Jc, P, L1 * P))
        np.clip(Rv, -1.0, 1.0, out=Rv)
        # peak over lags 1..L (lag axis 2); first (smallest) lag among equal maxima
        best = Rv[:, :, 1:].max(2) if L else np.full(Rv.shape[:2] + Rv.shape[3:], -np.inf)
        arg = np.zeros(best.shape)
        for lag in range(L, 0, -1):
            arg[Rv[:, :, lag] == best] = lag
        sw = s0 + st[:Jc]
        redo = ((cb[sw + n_seg + L] - cb[sw]) > 0) | low
        yield j0, Jc, redo, Rv[:, :, 0], best, arg, Rv


# ----------------------------------------------------------------------------- public batch API


def rolling_pearson(
    x,
    fs: float,
    window_s: float = 30.0,
    step_s: float = 1.0,
    *,
    detrend: bool = False,
    diff: bool = False,
    min_valid: float = 0.8,
    name: str | None = None,
) -> WindowedMetric:
    """Rolling Pearson correlation for every pair.

    Parameters
    ----------
    x : array_like, shape (n_people, n_samples)
        Grid samples, NaN = missing.
    fs : float
        Grid rate in Hz.
    window_s, step_s : float
        Window length and step in seconds.
    detrend : bool
        Remove each person's linear trend within the window first (partial correlation controlling
        for time). This is the honest default for synchrony (see module docstring).
    diff : bool
        Correlate first differences within the window (``win - 1`` values).
    min_valid : float
        Minimum share of valid samples per person and window.

    Returns
    -------
    WindowedMetric
        ``values`` / ``status`` of shape (n_pairs, n_windows).
    """
    fs, x, win, step, ia, ib, idx, end, nw = _setup(x, fs, window_s, step_s)
    min_valid = check_min_valid(min_valid)
    r = np.empty((len(ia), nw))
    st = np.zeros((len(ia), nw), np.int8)
    if nw:
        # window j's differences are d[j*step : j*step + win - 1]; NaN in d covers the raw window's gaps
        src, n_seg = (x[:, 1:] - x[:, :-1], win - 1) if diff else (x, win)
        kernel = None if detrend else _kernels.get("pearson_lag0", wait=False)  # numpy while it loads
        if kernel is not None:
            redo = np.zeros(nw, dtype=bool)
            src = np.ascontiguousarray(src, dtype=np.float64)
            kernel(src, step, nw, n_seg, _KERNEL_CHUNK, ia, ib, r, redo, FAST_REL, FLAT_ABS)
        else:
            redo = _fast_pearson(src, step, nw, n_seg, detrend, ia, ib, r)
        todo = np.flatnonzero(redo)
        for b in range(0, len(todo), _MASKED_BLOCK):
            sel = todo[b : b + _MASKED_BLOCK]
            W = window_view(x, win, step, nw)[sel]
            rr, ss = pearson_windows(W, ia, ib, detrend=detrend, diff=diff, min_valid=min_valid)
            r[:, sel] = rr.T
            st[:, sel] = ss.T
    if name is None:
        name = "pearson" + ("_diff" if diff else "") + ("_detrended" if detrend else "")
    return WindowedMetric(name, r, st, idx, end, fs, win, step)


def synchrony(x, fs: float, window_s: float = 30.0, step_s: float = 1.0, *, min_valid: float = 0.8) -> WindowedMetric:
    """The default synchrony metric: linearly detrended windowed r (see :func:`rolling_pearson`)."""
    return rolling_pearson(x, fs, window_s, step_s, detrend=True, min_valid=min_valid, name="synchrony")


@dataclass
class XcorrResult:
    """Windowed cross-correlation summary, every array of shape (n_pairs, n_windows).

    Attributes
    ----------
    r0 : r at lag 0.
    rmax : maximum r over lags ``-max_lag_s .. +max_lag_s``.
    lag_s : lag (s) of that maximum. Positive: the pair's first person (``i`` of :func:`pair_index`)
        leads — the second person's signal follows ``lag_s`` seconds later. Ties go to the smallest |lag|.
    leader : int16, index of the leading person; -1 when the peak is at lag 0 or undefined.
    status : int8 status codes.
    window_index, end_sample : (n_windows,)
    """

    r0: np.ndarray
    rmax: np.ndarray
    lag_s: np.ndarray
    leader: np.ndarray
    status: np.ndarray
    window_index: np.ndarray
    end_sample: np.ndarray
    fs: float
    win: int
    step: int
    max_lag: int


def summarize_xcorr(R, ia, ib, max_lag, fs, lag_axis=-1):
    """Peak picking on lagged r.

    Parameters
    ----------
    R : ndarray
        r per lag along ``lag_axis`` (length ``2 * max_lag + 1``, lags ascending from ``-max_lag``); the
        pair axis is the last of the remaining axes.

    Returns
    -------
    r0, rmax, lag_s, leader : ndarray, shape of ``R`` without the lag axis
        The maximum r over lags, ties to the smallest |lag| (then the negative one).
    """
    R = np.moveaxis(np.asarray(R), lag_axis, -1)
    # lags in order of preference (0, -1, +1, -2, +2, ...): argmax keeps the first of equal maxima
    order = np.array(sorted(range(-max_lag, max_lag + 1), key=abs), dtype=np.int64)
    Ro = R[..., order + max_lag]
    nan = np.isnan(Ro)
    if nan.any():  # NaN never wins
        Ro[nan] = -np.inf
    k = Ro.argmax(-1)
    best = np.take_along_axis(Ro, k[..., None], -1)[..., 0]
    lag = order[k]
    ok = np.isfinite(best)
    rmax = np.where(ok, best, np.nan)
    lag_s = np.where(ok, lag / fs, np.nan)
    leader = np.where(lag > 0, ia, np.where(lag < 0, ib, -1))
    leader = np.where(ok, leader, -1).astype(np.int16)
    return R[..., max_lag], rmax, lag_s, leader


def windowed_xcorr(
    x,
    fs: float,
    window_s: float = 30.0,
    step_s: float = 1.0,
    max_lag_s: float = 5.0,
    *,
    detrend: bool = False,
    min_valid: float = 0.8,
    return_lags: bool = False,
):
    """Windowed cross-correlation with lag search and peak picking (Boker et al. 2002; rMEA ``MEAccf``).

    Inside window ``j`` (``[j*step, j*step + win)``), for a lag of ``l >= 0`` samples the leading
    person's segment is the window's first ``win - L`` samples (``L`` = max lag in samples) and the
    follower's segment the same length starting ``l`` samples later, so every lag uses the same number
    of samples and nothing outside the window. Lag ``+l``: the pair's first person leads
    (``r(x_i(t), x_j(t + l))``); lag ``-l``: the second person leads.

    Parameters
    ----------
    x : array_like, shape (n_people, n_samples)
    fs, window_s, step_s, max_lag_s : float
    detrend : bool
        Remove the linear trend of each segment (partial r on time) before correlating.
    min_valid : float
    return_lags : bool
        Also return the full ``(n_pairs, n_windows, 2 * L + 1)`` array of r per lag.

    Returns
    -------
    XcorrResult (and the lag array when ``return_lags``)
    """
    fs = check_fs(fs)
    x = _check_x(x)
    min_valid = check_min_valid(min_valid)
    win = to_samples(window_s, fs, "window_s", 3)
    step = to_samples(step_s, fs, "step_s", 1)
    L = to_samples(max_lag_s, fs, "max_lag_s", 0)
    if win - L < 3:
        raise ValueError(
            f"Invalid value for 'max_lag_s': {max_lag_s} s leaves fewer than 3 samples per lagged segment of "
            f"a {window_s} s window; use a smaller lag or a longer window."
        )
    P = x.shape[0]
    ia, ib = pair_index(P)
    idx, end = _geometry(x.shape[1], win, step)
    nw = len(idx)
    K = len(ia)
    # outputs (pairs, windows); the numpy path fills them through their (windows, pairs) transposes
    r0 = np.full((K, nw), np.nan)
    rmax = np.full((K, nw), np.nan)
    lag_s = np.full((K, nw), np.nan)
    leader = np.full((K, nw), -1, np.int16)
    st = np.zeros((K, nw), np.int8)
    Rall = np.full((K, nw, 2 * L + 1), np.nan) if return_lags else None
    lag_i = np.zeros((K, nw), np.int64)
    redo = np.zeros(nw, dtype=bool)
    kernel = _kernels.get("xcorr_lags", wait=False) if nw else None
    if kernel is not None:
        src = np.ascontiguousarray(x, dtype=np.float64)
        rall = Rall if Rall is not None else np.empty((0, 0, 0))
        kernel(src, step, nw, win - L, L, _KERNEL_CHUNK, detrend, ia, ib, r0, rmax, lag_i, rall, redo, FAST_REL,
               FLAT_ABS)
    else:
        r0T, rmaxT, lagT = r0.T, rmax.T, lag_i.T
        RallT = Rall.transpose(1, 2, 0) if Rall is not None else None  # (windows, lags, pairs)
        for j0, J, rd, R0, best, arg, Rl in _fast_xcorr(x, step, nw, win - L, L, detrend):
            # [a, b] is "a leads b": pair lag +l when a < b (a = i of the pair), -l when a > b
            sl = slice(j0, j0 + J)
            p0 = R0[:, ia, ib]
            if L:
                bp, lp = best[:, ia, ib], arg[:, ia, ib]
                use = bp > p0  # lag 0 wins ties
                pos = np.where(use, bp, p0)
                lp = np.where(use, lp, 0.0)
                neg, ln = best[:, ib, ia], arg[:, ib, ia]
                # preference among equal maxima: 0, -1, +1, -2, +2, ... (as summarize_xcorr)
                take_neg = (neg > pos) | ((neg == pos) & (ln <= lp))
                rmaxT[sl] = np.where(take_neg, neg, pos)
                lagT[sl] = np.where(take_neg, -ln, lp)
            else:
                rmaxT[sl] = p0
            r0T[sl] = p0
            redo[sl] = rd
            if RallT is not None:
                RallT[sl, L::-1] = Rl[:, ib, :, ia].transpose(1, 2, 0)  # lags 0, -1, .., -L
                RallT[sl, L:] = Rl[:, ia, :, ib].transpose(1, 2, 0)  # lags 0, 1, .., L
    ok = np.isfinite(rmax)
    lag_s[:] = np.where(ok, lag_i / fs, np.nan)
    leader[:] = np.where(ok, np.where(lag_i > 0, ia[:, None], np.where(lag_i < 0, ib[:, None], -1)), -1)
    todo = np.flatnonzero(redo)
    if len(todo):  # windows the fast path could not do: direct, masked
        Wv = window_view(x, win, step, nw)
        for b0 in range(0, len(todo), _MASKED_BLOCK):
            sel = todo[b0 : b0 + _MASKED_BLOCK]
            Rr, ss = xcorr_windows(Wv[sel], ia, ib, L, detrend=detrend, min_valid=min_valid)
            st[:, sel] = ss.T
            out = summarize_xcorr(Rr, ia, ib, L, fs)
            for arr, v in zip((r0, rmax, lag_s, leader), out):
                arr[:, sel] = v.T
            if Rall is not None:
                Rall[:, sel] = Rr.transpose(1, 0, 2)
    res = XcorrResult(r0, rmax, lag_s, leader, st, idx, end, fs, win, step, L)
    if Rall is not None:  # return_lags
        return res, Rall
    return res


def concordance_geometry(fs, slope_s, window_s, step_s):
    """Samples of the skin-conductance concordance: ``(n_slope, window, step)``.

    ``window`` spans ``window_s`` of slopes plus the ``n_slope - 1`` samples the first slope needs.
    """
    n_slope = to_samples(slope_s, fs, "slope_s", 2)
    n_r = to_samples(window_s, fs, "window_s", 3)
    step = to_samples(step_s, fs, "step_s", 1)
    return n_slope, n_r + n_slope - 1, step


def sc_concordance(
    x, fs: float, slope_s: float = 5.0, window_s: float = 15.0, step_s: float = 1.0, *, min_valid: float = 0.8
) -> WindowedMetric:
    """Skin-conductance concordance (Marci et al. 2007).

    Each person's slope (least-squares, per second) over sliding ``slope_s`` sub-windows (one per grid
    sample), then Pearson r of the two slope series over ``window_s`` of slopes. Window ``j`` covers
    raw grid samples ``[j*step, j*step + win)`` with ``win = window_s*fs + slope_s*fs - 1`` so that every
    slope inside lies entirely in the window.

    Returns
    -------
    WindowedMetric, values (n_pairs, n_windows)
    """
    fs = check_fs(fs)
    x = _check_x(x)
    min_valid = check_min_valid(min_valid)
    n_slope, win, step = concordance_geometry(fs, slope_s, window_s, step_s)
    ia, ib = pair_index(x.shape[0])
    idx, end = _geometry(x.shape[1], win, step)
    nw = len(idx)
    r = np.full((len(ia), nw), np.nan)
    st = np.zeros((len(ia), nw), np.int8)
    if nw:
        # slope series once, then windows over it: window j's slopes are s[j*step : j*step + n_r]
        s = _slopes(x, n_slope)
        n_r = win - n_slope + 1
        Sv = window_view(s, n_r, step, nw)
        for b in range(0, nw, _MASKED_BLOCK):
            sl = slice(b, min(nw, b + _MASKED_BLOCK))
            S = Sv[sl]
            R, flat = masked_r(S, S)
            ss = _pair_status(_valid_fraction(S), flat[:, ia, ib], ia, ib, min_valid)
            r[:, sl] = np.where(ss == OK, R[:, ia, ib], np.nan).T
            st[:, sl] = ss.T
    return WindowedMetric("concordance", r, st, idx, end, fs, win, step, {"slope_samples": n_slope})


def single_session_index(r) -> np.ndarray:
    """Single Session Index (Marci et al. 2007): ``ln(sum(r > 0) / |sum(r < 0)|)`` per pair.

    Parameters
    ----------
    r : array_like, shape (n_pairs, n_windows) or (n_windows,)
        Concordance values (NaN ignored).

    Returns
    -------
    ndarray, shape (n_pairs,) (or scalar): +inf when there is no negative r, -inf when no positive
    r, NaN when there is neither.
    """
    r = np.asarray(r, dtype=np.float64)
    pos = np.where(r > 0, r, 0.0).sum(-1)
    neg = np.abs(np.where(r < 0, r, 0.0).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(pos / neg)


def directional_agreement(
    x, fs: float, window_s: float = 30.0, step_s: float = 1.0, *, min_valid: float = 0.8
) -> WindowedMetric:
    """Share of sample-to-sample changes with the same sign in both people, per window.

    Returns
    -------
    WindowedMetric, values in [0, 1] of shape (n_pairs, n_windows)
    """
    fs, x, win, step, ia, ib, idx, end, nw = _setup(x, fs, window_s, step_s)
    min_valid = check_min_valid(min_valid)
    a = np.full((len(ia), nw), np.nan)
    st = np.zeros((len(ia), nw), np.int8)
    if nw:
        Wv = window_view(x, win, step, nw)
        for b in range(0, nw, _MASKED_BLOCK):
            sl = slice(b, min(nw, b + _MASKED_BLOCK))
            aa, ss = direction_windows(Wv[sl], ia, ib, min_valid)
            a[:, sl] = aa.T
            st[:, sl] = ss.T
    return WindowedMetric("direction", a, st, idx, end, fs, win, step)


def group_synchrony(r) -> np.ndarray:
    """Mean pairwise synchrony of the group per window (Fisher-z mean over pairs).

    Parameters
    ----------
    r : array_like, shape (n_pairs, n_windows)

    Returns
    -------
    ndarray, shape (n_windows,)
    """
    return fisher_mean(np.asarray(r, dtype=np.float64), axis=0)


def connectedness(r, n_people: int) -> np.ndarray:
    """Each person's mean synchrony with the others (Fisher-z mean): who drifts out of the group.

    Parameters
    ----------
    r : array_like, shape (n_pairs, n_windows)
    n_people : int

    Returns
    -------
    ndarray, shape (n_people, n_windows)
    """
    r = np.asarray(r, dtype=np.float64)
    ia, ib = pair_index(n_people)
    if r.shape[0] != len(ia):
        raise ValueError(
            f"Invalid value for 'r': expected {len(ia)} pairs for {n_people} people, but got {r.shape[0]} rows."
        )
    full = np.full((n_people, n_people) + r.shape[1:], np.nan)
    full[ia, ib] = r
    full[ib, ia] = r
    return fisher_mean(full, axis=1)


def surrogate_shifts(shifts_s, fs: float, step: int) -> np.ndarray:
    """Surrogate shifts in windows (each rounded to a whole number of steps), unique and positive."""
    sh = sorted({int(round(float(s) * fs / step)) for s in shifts_s})
    if not sh or sh[0] < 1:
        raise ValueError(
            f"Invalid value for 'surrogate_shifts_s': expected positive shifts of at least one step "
            f"({step / fs} s), but got {list(shifts_s)!r}."
        )
    return np.asarray(sh, dtype=np.int64)


def shifted_surrogate_from_z(Z, Zpast_list, ia, ib):
    """Surrogate r values from standardized windows.

    Parameters
    ----------
    Z : ndarray, shape (n_windows, n_people, n)
    Zpast_list : list of ndarray, each (n_windows, n_people, n)
        The same people's windows ``d`` windows earlier (NaN where unavailable).

    Returns
    -------
    ndarray, shape (n_windows, n_pairs, 2 * n_shifts)
        ``r(a now, b past)`` and ``r(b now, a past)`` for every shift.
    """
    out = []
    for Zp in Zpast_list:  # loop over shifts; all pairs and windows at once
        M = Z @ Zp.swapaxes(-1, -2)
        out.append(M[:, ia, ib])
        out.append(M[:, ib, ia])
    return np.clip(np.stack(out, -1), -1.0, 1.0)


def surrogate_stats(S):
    """Mean and SD (ddof=1) over the last axis ignoring NaN; NaN when fewer than 2 values."""
    v = np.isfinite(S)
    n = v.sum(-1)
    s0 = np.where(v, S, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s0.sum(-1) / n
        var = (np.where(v, S - mean[..., None], 0.0) ** 2).sum(-1) / (n - 1)
    ok = n >= 2
    return np.where(ok, mean, np.nan), np.where(ok, np.sqrt(var), np.nan), n


def shifted_surrogate(
    x,
    fs: float,
    window_s: float = 30.0,
    step_s: float = 1.0,
    shifts_s=(20.0, 40.0, 60.0, 80.0, 100.0, 120.0),
    *,
    detrend: bool = True,
    diff: bool = False,
) -> tuple[WindowedMetric, WindowedMetric]:
    """Causal time-shifted-partner surrogate (pseudo-synchrony, Moulder et al. 2018).

    For window ``j`` and every shift ``d`` in ``shifts_s``: r between a's window j and b's window
    ``d`` seconds earlier, and between b's window j and a's window ``d`` earlier. Only fully valid,
    non-flat windows take part. The mean and SD of these 2 * n_shifts values are a per-pair chance
    level for the value of window j, available as soon as window j completes (also when streaming).

    Returns
    -------
    mean, sd : WindowedMetric, values (n_pairs, n_windows); NaN (status MISSING) with < 2 values.
    """
    fs, x, win, step, ia, ib, idx, end, nw = _setup(x, fs, window_s, step_s)
    sh = surrogate_shifts(shifts_s, fs, step)
    mean = np.full((len(ia), nw), np.nan)
    sd = np.full((len(ia), nw), np.nan)
    if nw:
        Z = standardized_windows(window_view(x, win, step, nw), detrend=detrend, diff=diff)
        for b in range(0, nw, _MASKED_BLOCK):
            sl = np.arange(b, min(nw, b + _MASKED_BLOCK))
            past = []
            for d in sh:
                src = sl - d
                Zp = np.full(Z[sl].shape, np.nan)
                ok = src >= 0
                Zp[ok] = Z[src[ok]]
                past.append(Zp)
            S = shifted_surrogate_from_z(Z[sl], past, ia, ib)
            m, s, _ = surrogate_stats(S)
            mean[:, sl] = m.T
            sd[:, sl] = s.T
    st = np.where(np.isfinite(mean), OK, MISSING).astype(np.int8)
    mk = lambda nm, v: WindowedMetric(nm, v, st.copy(), idx, end, fs, win, step, {"shifts_windows": sh})  # noqa: E731
    return mk("surrogate_mean", mean), mk("surrogate_sd", sd)


def _preload_kernel() -> None:
    """Load the compiled kernels in the background now, when ``ATTUNE_NUMBA_PRELOAD=1`` (opt-in, see ``_kernels``).

    Load the lag-0 and the windowed cross-correlation kernels in the background now
    (:func:`attune_monitor.dsp._kernels.preload`), for the argument types :func:`rolling_pearson` and
    :func:`windowed_xcorr` (not detrended) pass them: the first call of a process then costs what every later one
    does, instead of numba's loading (until a kernel is ready, the numpy path answers).
    """
    ia, ib = pair_index(2)
    nw = 2
    _kernels.preload("pearson_lag0", (np.zeros((2, 4)), 1, nw, 3, _KERNEL_CHUNK, ia, ib, np.empty((1, nw)),
                                      np.zeros(nw, dtype=bool), FAST_REL, FLAT_ABS))
    _kernels.preload("xcorr_lags", (np.zeros((2, 5)), 1, nw, 3, 1, _KERNEL_CHUNK, False, ia, ib, np.empty((1, nw)),
                                    np.empty((1, nw)), np.zeros((1, nw), np.int64), np.empty((0, 0, 0)),
                                    np.zeros(nw, dtype=bool), FAST_REL, FLAT_ABS))


_preload_kernel()
