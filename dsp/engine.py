"""Streaming synchrony engine: push grid samples, get the newest completed windows.

Window ``j`` of a metric covers grid samples ``[j * step, j * step + win)``, exactly as in the batch
functions of :mod:`attune_monitor.dsp.synchrony`; the engine computes each completed window from its own samples with
the same per-window functions, so feeding a session in chunks of any size gives the batch numbers
(within 1e-9), also across NaN gaps, and nothing accumulates over a long session. Memory is bounded:
only the samples (and standardized windows) needed by the longest window / surrogate shift are kept.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attune_monitor.dsp import synchrony as sy
from attune_monitor.dsp.limits import Limit, check_fields, check_flag, check_names, config_error

__all__ = [
    "FAST_CONCORDANCE_PEOPLE", "LAGS_AHEAD_PEOPLE", "RING_CHANCE_OF", "EngineConfig", "METRICS", "SynchronyEngine",
    "one_blas_thread",
]

logger = logging.getLogger(__name__)


#: windows per computation block (bounds temporaries when one push completes many windows)
_BLOCK = 256

_blas: Any = None  # threadpoolctl's controller of the loaded BLAS (created on first use), or False without it
_blas_libs: list = []  # its BLAS libraries' controllers


def one_blas_thread():
    """A context in which BLAS (numpy's matmul) runs on one thread.

    Where windows complete, the engine's
    matmuls are small (tens of MFLOP at 64 people), and a second BLAS thread only waits for a core that the
    GUI, the inlets and other processes also want. On 2 busy cores (load ~5) the 64-person tick's p99 fell from
    ~650 ms to ~100 ms with it. Needs threadpoolctl (a dependency; without it, a no-op). When every BLAS already
    runs on one thread (``OPENBLAS_NUM_THREADS=1``, or a limit around the caller) there is nothing to limit: the
    context is empty, instead of threadpoolctl's limit (which inspects every library on entering and leaving,
    ~10 us, several times per live tick).
    """
    global _blas, _blas_libs
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController()
            _blas_libs = [lib for lib in _blas.lib_controllers if lib.user_api == "blas"]
        except Exception:  # not installed (or it cannot inspect the libraries): BLAS keeps its threads
            _blas = False
    if _blas is False or all(lib.num_threads == 1 for lib in _blas_libs):
        return contextlib.nullcontext()
    return _blas.limit(limits=1, user_api="blas")


def _standardize_both(W):
    """Windows standardized without and with detrending, sharing the centring.

    ``(standardized_windows(W, detrend=False), standardized_windows(W, detrend=True))``, sharing the
    centring (the same operations, so the same numbers).
    """
    n = W.shape[-1]
    mean = W.mean(-1)
    lim = (1e-10 * np.sqrt(n)) * np.maximum(1.0, np.abs(mean))
    X = W - mean[..., None]
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    Xd = X - ((X @ t) / (t @ t))[..., None] * t
    out = []
    for Y in (X, Xd):
        nrm = np.sqrt(np.einsum("...i,...i->...", Y, Y))
        with np.errstate(invalid="ignore", divide="ignore"):
            Z = Y / nrm[..., None]
        Z[~(nrm > lim)] = np.nan
        out.append(Z)
    return out[0], out[1]


class _Scratch:
    """Work arrays kept between ticks, one buffer per name.

    A live tick at 64 people multiplies arrays of megabytes; allocated afresh each time, every 4 KiB page of
    them is faulted in again (glibc hands the freed top of the heap back to the system), which cost as much as
    the arithmetic. Each name keeps one flat buffer, as large as the largest request of that name so far, and
    every call gets a C-ordered view of its front in the shape asked for: the windows a tick brings (and so the
    shapes) vary with load, and keeping one array per shape kept an array for every backlog size ever seen.
    Only buffers up to :attr:`max_bytes` are kept (a batch push's blocks are allocated as usual), so the kept
    memory is at most :attr:`max_bytes` per name.
    """

    max_bytes = 8 << 20

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple) -> np.ndarray:
        """An uninitialised float64 array of ``shape``, C-ordered: a view of ``name``'s buffer when it fits.

        Two calls with the same name share memory: use each name for one array at a time.
        """
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            if size * 8 > self.max_bytes:
                return np.empty(shape)
            buf = self._buffers[name] = np.empty(size)
        return buf[:size].reshape(shape)

    @property
    def nbytes(self) -> int:
        """Bytes kept in all buffers."""
        return sum(b.nbytes for b in self._buffers.values())


def _xcorr_full(W, ia, ib, L, detrend, fs, scratch: _Scratch | None = None, prepared=None):
    """WCC summary of fully valid windows from sums (one matmul for all lags).

    The numbers of
    :func:`sy.xcorr_windows` + :func:`sy.summarize_xcorr` (within rounding).

    Parameters
    ----------
    W : ndarray, shape (n_windows, n_people, win)
    ia, ib : pair index; L : max lag (samples); detrend : bool; fs : grid rate (Hz)
    scratch : _Scratch, optional
        Where the large work arrays are kept between calls (None: allocated per call).
    prepared : tuple of ndarray, optional
        ``(r0, best, arg)``, each of shape (n_windows, n_people, n_people): r at lag 0 (``[w, a, b]``: a's lead
        segment with b's segment at lag 0), the largest r over lags 1..L and its first lag, prepared while the
        windows' samples arrived (:meth:`SynchronyEngine._lags_ahead_many`; the same r within rounding); used once the
        stack is found not flat.

    Returns
    -------
    r0, rmax, lag_s, leader : ndarray, shape (n_windows, n_pairs), or None when a segment is (nearly)
        flat: such stacks go to :func:`sy.xcorr_windows`, which decides what is flat.
    """
    n_w, P, win = W.shape
    n = win - L
    L1 = L + 1
    mean = W.mean(-1)
    Y = W - mean[..., None]  # anchored on the window mean: no cancellation from the level
    parts = [Y, Y * Y, Y * np.arange(win, dtype=np.float64)] if detrend else [Y, Y * Y]  # t-term: detrend only
    scratch = scratch or _Scratch()
    C = scratch.get("xcorr_cumsum", (len(parts), n_w, P, win + 1))
    C[..., 0] = 0.0
    for k, part in enumerate(parts):
        np.cumsum(part, -1, out=C[k, ..., 1:])
    lo = np.arange(L1)
    S = C[..., lo + n] - C[..., lo]  # (len(parts), n_w, P, L1): sums over the segment starting at each lag
    S1, S2 = S[0], S[1]
    c = S2 - S1 * S1 / n
    if detrend:
        ctt = n * (n * n - 1) / 12.0
        St = S[2] - (lo + (n - 1) / 2.0) * S1  # sum of centred t * y
        c = c - St * St / ctt
    scale = np.maximum(1.0, np.abs(mean))[..., None]
    if ((c <= sy.FAST_REL * S2) | (c <= sy.FLAT_ABS * n * scale * scale)).any():
        return None
    if prepared is not None:
        r0, best, arg = prepared
        return _xcorr_pairs(r0, best, arg, ia, ib, L, fs)
    inv = 1.0 / np.sqrt(c)
    if P < XCORR_GEMM_PEOPLE:  # few people: a matrix-vector product per person (the numbers of the code before)
        F = sy.sliding_view(Y, n)  # (n_w, P, L1, n): F[.., b, l, :] = Y[b, l:l+n]
        Sab = np.matmul(Y[..., None, :n], np.ascontiguousarray(F).reshape(n_w, 1, P * L1, n).swapaxes(-1, -2))
        Sab = Sab.reshape(n_w, P, P, L1)  # [w, a, b, l] = sum y_a(s) y_b(s + l)
        cov = Sab - (S1[..., 0] / n)[..., None, None] * S1[:, None]
        if detrend:
            cov -= (St[..., 0] / ctt)[..., None, None] * St[:, None]
        rl = np.clip(cov * inv[..., 0, None, None] * inv[:, None], -1.0, 1.0)
        if not L:
            return _xcorr_pairs(rl[..., 0], None, None, ia, ib, L, fs)
        return _xcorr_pairs(rl[..., 0], rl[..., 1:].max(-1), rl[..., 1:].argmax(-1) + 1, ia, ib, L, fs)
    # r at every lag from one matrix product per window: the lead segments' residuals (less their mean, and
    # their trend when detrending), scaled to unit norm, times every person's segment at each lag scaled by its
    # own norm. The residual has zero sum (and zero trend), so its product with a raw segment is the covariance.
    lead = Y[..., :n] - (S1[..., 0] / n)[..., None]
    if detrend:
        lead -= (St[..., 0] / ctt)[..., None] * (np.arange(n, dtype=np.float64) - (n - 1) / 2.0)
    lead *= inv[..., 0, None]
    follow = scratch.get("xcorr_follow", (n_w, L1, P, n))  # lag-major: [w, l, b] = Y[w, b, l:l+n] / its norm
    np.multiply(sy.sliding_view(Y, n).swapaxes(1, 2), inv.swapaxes(1, 2)[..., None], out=follow)
    r = scratch.get("xcorr_r", (n_w, P, L1 * P))
    np.matmul(lead, follow.reshape(n_w, L1 * P, n).swapaxes(-1, -2), out=r)
    r = r.reshape(n_w, P, L1, P)
    np.clip(r, -1.0, 1.0, out=r)  # [w, a, l, b]: r of a's segment 0 with b's segment at lag l
    return _xcorr_peaks(r, ia, ib, L, fs)


def _pairs_of(M, ab):
    """``M[..., a, b]`` for every pair, gathered by the flat index ``ab = a * n_people + b``.

    Parameters
    ----------
    M : ndarray, shape (..., n_people, n_people)
    ab : ndarray of int, shape (n_pairs,)

    Returns
    -------
    ndarray, shape (..., n_pairs)
        ``M[..., ia, ib]``: the same numbers in the same memory order (pair-major, as numpy's fancy indexing lays
        them out, so that later reductions add in the same order), from one gather of rows, a fraction of the cost
        of the two-index fancy indexing on a stack of matrices.
    """
    lead = M.shape[:-2]
    return np.take(M.reshape((-1, M.shape[-2] * M.shape[-1])).T, ab, axis=0).T.reshape(lead + (len(ab),))


def _pairs_flat(M, ab):
    """``M[..., a, b]`` for every pair (flat index ``ab = a * n_people + b``), C-ordered: shape (..., n_pairs)."""
    return np.take(M.reshape(M.shape[:-2] + (-1,)), ab, axis=-1)


#: numpy sums a contiguous axis of at most this many values with 8 accumulators (beyond it, it splits the axis)
_PAIRWISE_BLOCK = 128


def _sum_values(X):
    """``X.sum(1)`` of ``X`` (n, K, m) in the order numpy adds a contiguous axis of K values.

    numpy's pairwise summation: below 8 values one after another from 0; up to :data:`_PAIRWISE_BLOCK` values 8
    running sums (values ``j``, ``j + 8``, ...) combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``,
    then the rest one after another, then added to 0. So the sums over the K values of the ``m`` rows, which numpy
    makes one short reduction per row (slow), come in ``K`` vector additions, bit for bit.

    Returns
    -------
    ndarray, shape (n, m); None when ``K`` exceeds :data:`_PAIRWISE_BLOCK`.
    """
    K = X.shape[1]
    if K > _PAIRWISE_BLOCK:
        return None
    if K < 8:
        res = np.zeros((X.shape[0], X.shape[2]))
        for k in range(K):
            res += X[:, k]
        return res
    r = [X[:, j].copy() for j in range(8)]
    top = K - K % 8
    for i in range(8, top, 8):
        for j in range(8):
            r[j] += X[:, i + j]
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for i in range(top, K):
        res += X[:, i]
    res += 0.0  # numpy adds the sum to the reduction's identity (-0.0 + 0.0 is 0.0)
    return res


def _surrogate_stats_values_first(S):
    """:func:`attune_monitor.dsp.synchrony.surrogate_stats` of ``S.swapaxes(1, 2)`` made contiguous, bit for bit.

    Parameters
    ----------
    S : ndarray, shape (n, K, n_pairs)
        The K chance r's of each pair, value-major (one row of pairs per value).

    Returns
    -------
    mean, sd : ndarray, shape (n, n_pairs)
        Over the finite values; NaN with fewer than 2.
    """
    v = np.isfinite(S)
    n = v.sum(1)
    s0 = np.where(v, S, 0.0)
    total = _sum_values(s0)
    if total is None:  # (more than 128 shifts)
        mean, sd, _ = sy.surrogate_stats(np.ascontiguousarray(S.swapaxes(1, 2)))
        return mean, sd
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        var = _sum_values(np.where(v, S - mean[:, None], 0.0) ** 2) / (n - 1)
    ok = n >= 2
    return np.where(ok, mean, np.nan), np.where(ok, np.sqrt(var), np.nan)


def _concordance_full(W, ab, n_slope: int):
    """SC concordance of fully valid windows: Pearson r of every pair's slope series, from unit-norm rows.

    The numbers of :func:`attune_monitor.dsp.synchrony.concordance_windows` within rounding: the same slopes, a
    person whose slopes are (numerically) constant is flat (as there, relative to the slopes' level) and gives
    the pair NaN with status FLAT.

    Parameters
    ----------
    W : ndarray, shape (n_windows, n_people, win)
        Fully valid windows.
    ab : ndarray of int, shape (n_pairs,)
        The pairs' flat index ``a * n_people + b``.
    n_slope : int
        Samples per slope.

    Returns
    -------
    r : ndarray, shape (n_windows, n_pairs)
    status : ndarray of int8, shape (n_windows, n_pairs)
    """
    t = np.arange(n_slope, dtype=np.float64) - (n_slope - 1) / 2.0
    S = sy.sliding_view(W, n_slope) @ (t / (t @ t))  # (n_windows, n_people, n_slopes): the slopes
    Z = sy.standardized_windows(S, detrend=False)
    r = np.clip(_pairs_of(np.matmul(Z, Z.swapaxes(-1, -2)), ab), -1.0, 1.0)
    return r, np.where(np.isnan(r), sy.FLAT, sy.OK).astype(np.int8)


def _xcorr_peaks(r, ia, ib, L, fs):
    """Peak over lags of r, shape (n_windows, n_people, L + 1, n_people): (r0, rmax, lag_s, leader) per pair."""
    if not L:
        return _xcorr_pairs(r[:, :, 0], None, None, ia, ib, L, fs)
    arg = r[:, :, 1:].argmax(2)[:, :, None]  # (n_w, P, 1, P): the first maximum, the smallest lag
    best = np.take_along_axis(r[:, :, 1:], arg, 2)[:, :, 0]
    return _xcorr_pairs(r[:, :, 0], best, arg[:, :, 0] + 1, ia, ib, L, fs)


def _xcorr_pairs(r0, best, arg, ia, ib, L, fs):
    """(r0, rmax, lag_s, leader) per pair from r at lag 0 and the best r over lags 1..L (and its first lag).

    ``r0``, ``best``, ``arg``: shape (n_windows, n_people, n_people), ``[w, a, b]`` = a's lead segment with b's
    lagged ones (``best`` / ``arg`` None when L is 0).
    """
    # peak picking as summarize_xcorr: [a, b] at lag l is "a leads b"; ties to 0, -1, +1, -2, ...
    P = r0.shape[-1]
    ab, ba = ia * P + ib, ib * P + ia
    p0 = _pairs_of(r0, ab)
    if L:
        bp, lp = _pairs_of(best, ab), _pairs_of(arg, ab)
        use = bp > p0
        pos, lp = np.where(use, bp, p0), np.where(use, lp, 0)
        neg, ln = _pairs_of(best, ba), _pairs_of(arg, ba)
        take_neg = (neg > pos) | ((neg == pos) & (ln <= lp))
        rmax, lag = np.where(take_neg, neg, pos), np.where(take_neg, -ln, lp)
    else:
        rmax, lag = p0, np.zeros(p0.shape, np.int64)
    leader = np.where(lag > 0, ia, np.where(lag < 0, ib, -1)).astype(np.int16)
    return p0, rmax, lag / fs, leader


def _best_lagged_products(lead, follow):
    """Per pair the largest product of a lead segment with the other's follow segments over the lags.

    Parameters
    ----------
    lead : ndarray, shape (n, n_people, n_seg)
    follow : ndarray, shape (n, n_people, L + 1, n_seg)
        Unit-norm segments (NaN rows propagate).

    Returns
    -------
    ndarray, shape (n, n_people, n_people)
        ``[w, a, b] = max over l of lead[w, a] . follow[w, b, l]``.
    """
    n, P, L1, n_seg = follow.shape
    M = np.matmul(lead, follow.reshape(n, P * L1, n_seg).swapaxes(-1, -2))
    return M.reshape(n, lead.shape[1], P, L1).max(-1)


def _lead_products(lead, follow):
    """Products of stacked lead segments with one follow segment per person.

    Parameters
    ----------
    lead : ndarray, shape (n, K, n_people, n_seg)
    follow : ndarray, shape (n, n_people, n_seg)

    Returns
    -------
    ndarray, shape (n, K, n_people, n_people)
        ``[w, k, a, b] = lead[w, k, a] . follow[w, b]``.
    """
    n, K, P, n_seg = lead.shape
    return np.matmul(lead.reshape(n, K * P, n_seg), follow.swapaxes(-1, -2)).reshape(n, K, P, follow.shape[1])


#: From this many people, ``_xcorr_full`` multiplies each window's lead residuals with all lagged segments in one
#: matrix product; below it (dyads, small groups, where that product is tiny and the layout costs more than it
#: saves) a matrix-vector product per person, the code before issue 21.
XCORR_GEMM_PEOPLE = 8

#: From this many people, live ticks (pushes of at most one synchrony step) prepare the lead-lag windows and the
#: phasic r lag by lag (:meth:`SynchronyEngine._lags_ahead`). Below it the preparation's per-tick Python overhead
#: outweighs the matrix products it spreads (16 people: engine p99 3.4 -> 3.9 ms with it); a batch push completes
#: many windows at once and would not use it.
LAGS_AHEAD_PEOPLE = 32

#: From this many people, the concordance of fully valid windows is r of the standardized slope series (one
#: matrix product per window: :func:`_concordance_full`) instead of the masked r of
#: :func:`attune_monitor.dsp.synchrony.concordance_windows`, which computes a dozen products and masks for windows
#: with missing samples; the same r within rounding (smaller groups keep the masked r's numbers bit for bit).
FAST_CONCORDANCE_PEOPLE = 32

#: The r whose chance level comes from the rings of past standardized windows (``EngineConfig.chance_of``).
RING_CHANCE_OF = ("synchrony", "pearson")


@dataclass(frozen=True)
class EngineConfig:
    """What the engine computes. Durations in seconds.

    Attributes
    ----------
    window_s, step_s : synchrony / pearson / direction / surrogate windows.
    wcc_window_s, wcc_step_s, max_lag_s : windowed cross-correlation (lags +-max_lag_s).
    wcc_detrend : detrend the lagged segments (partial r on time), like the default synchrony.
    slope_s, concordance_window_s, concordance_step_s : SC concordance (Marci et al. 2007).
    concordance_modalities : modalities that get concordance (skin conductance only by default).
    phasic_modalities : modalities that get *phasic* synchrony (none by default; the session pipeline asks
        for skin conductance): the windowed cross-correlation of the sample-to-sample changes (each
        person's skin-conductance responses), the best r over lags ``+-phasic_max_lag_s`` (``phasic``, with
        ``phasic_lag_s``), and its time-shifted-partner chance level (``surrogate_phasic_mean`` / ``_sd``,
        the same shifts as the other surrogates, each with the same lag search). Partners answer the same
        moment a second or two apart (response latencies of 1-3 s), so the lag search finds co-occurring
        responses that zero-lag r of the changes misses.
    phasic_max_lag_s : lag search of the phasic synchrony (s).
    phasic_chance_every_s : the phasic chance level is computed for every window whose start is a multiple of
        this (s) and held until the next one (it costs ``2 * len(surrogate_shifts_s)`` lag searches per window;
        the detector follows a 60 s running mean of it anyway); the shifts must be multiples of it.
    surrogate_shifts_s : causal time-shifted-partner shifts for the chance level.
    chance_of : which r get a chance level: ``"synchrony"`` (detrended r: ``surrogate_mean`` / ``_sd``) and/or
        ``"pearson"`` (plain r: ``surrogate_pearson_mean`` / ``_sd``). Each costs about a tenth of a push.
    chance_modalities : the modalities that get those chance levels (None: all).
    min_valid : minimum share of valid samples per person and window.
    modalities : modality names; ``push`` takes one block per modality.
    """

    window_s: float = 30.0
    step_s: float = 1.0
    wcc_window_s: float = 30.0
    wcc_step_s: float = 1.0
    max_lag_s: float = 5.0
    wcc_detrend: bool = True
    slope_s: float = 5.0
    concordance_window_s: float = 15.0
    concordance_step_s: float = 1.0
    concordance_modalities: tuple = ("eda",)
    phasic_modalities: tuple = ()
    phasic_max_lag_s: float = 3.0
    phasic_chance_every_s: float = 10.0
    surrogate_shifts_s: tuple = (20.0, 40.0, 60.0, 80.0, 100.0, 120.0)
    chance_of: tuple = RING_CHANCE_OF
    chance_modalities: tuple | None = None
    min_valid: float = 0.8
    modalities: tuple = ("hr", "eda")

    def __post_init__(self) -> None:
        """Check every field (:class:`attune_monitor.errors.ConfigError` naming the field, its range and a fix).

        What depends on the grid rate (a window of at least 3 samples, a lag that leaves 3 samples per lagged
        segment, shifts that are multiples of the step) is checked by :class:`SynchronyEngine`, which knows it.
        """
        positive = Limit(0, None, low_open=True, what="seconds")
        lag = Limit(0, None, what="seconds")
        check_fields(self, {
            **dict.fromkeys(("window_s", "step_s", "wcc_window_s", "wcc_step_s", "slope_s", "concordance_window_s",
                             "concordance_step_s", "phasic_chance_every_s"), positive),
            "max_lag_s": lag, "phasic_max_lag_s": lag,
            "min_valid": Limit(0, 1, low_open=True, what="a fraction"),
        })
        check_flag(self, "wcc_detrend")
        check_names(self, "modalities", empty=False)
        check_names(self, "concordance_modalities")
        check_names(self, "phasic_modalities", allowed=self.modalities)
        check_names(self, "chance_of", allowed=RING_CHANCE_OF)
        if self.chance_modalities is not None:
            check_names(self, "chance_modalities", allowed=self.modalities)
        if not (isinstance(self.surrogate_shifts_s, tuple) and self.surrogate_shifts_s
                and all(positive.accepts(s) for s in self.surrogate_shifts_s)):
            raise config_error(self, "surrogate_shifts_s", "a non-empty tuple of seconds greater than 0",
                               self.surrogate_shifts_s)


#: metric names produced per modality
METRICS = (
    "synchrony",
    "surrogate_mean",
    "surrogate_sd",
    "surrogate_pearson_mean",
    "surrogate_pearson_sd",
    "pearson",
    "pearson_diff",
    "direction",
    "wcc_r0",
    "wcc_rmax",
    "wcc_lag_s",
    "wcc_leader",
    "concordance",
    "phasic",
    "phasic_lag_s",
    "surrogate_phasic_mean",
    "surrogate_phasic_sd",
)


@dataclass
class _Group:
    """One window geometry and its next window to compute."""

    win: int
    step: int
    next_j: int = 0


@dataclass
class _ModalityState:
    buf: np.ndarray  # (n_people, capacity) history
    buf_start: int = 0  # absolute grid index of buf[:, 0]
    n_total: int = 0  # samples received
    n_buf: int = 0  # valid columns in buf
    groups: dict = field(default_factory=dict)
    z_ring: np.ndarray | None = None  # (R, n_people, win) standardized synchrony windows
    z_index: np.ndarray | None = None  # (R,) window index held in each ring slot (-1 = none)
    zp_ring: np.ndarray | None = None  # the same for plain (not detrended) Pearson r
    zp_index: np.ndarray | None = None
    # phasic synchrony: standardized lead / lagged follow segments of the changes of past windows
    ph_lead: np.ndarray | None = None    # (R, n_people, n_seg)
    ph_follow: np.ndarray | None = None  # (R, n_people, L + 1, n_seg)
    ph_index: np.ndarray | None = None   # (R,) window index held in each ring slot (-1 = none)
    ph_held: tuple | None = None         # (mean, sd) (n_pairs,) of the last window with a computed chance level
    ph_pending: Any = None               # _PhasicAhead of the next window with a chance level, or None
    lags_pending: dict = field(default_factory=dict)  # (kind, window) -> _LagsAhead ("wcc" / "phasic" r)


@dataclass
class _LagsAhead:
    """A lead-lag window's r at every lag in the making (:meth:`SynchronyEngine._lags_ahead`)."""

    j: int  # the window
    anchor: np.ndarray  # (n_people,) the lead segments' mean
    lead: np.ndarray  # (n_people, n) the lead segments' residuals (less mean and trend), unit norm
    r0: np.ndarray  # (n_people, n_people) r at lag 0 ([a, b]: a's lead with b's segment)
    best: np.ndarray  # (n_people, n_people) the largest r over lags 1 .. n_done - 1
    arg: np.ndarray  # (n_people, n_people) int64: its first lag
    finite: bool = True  # every r so far finite
    n_done: int = 0  # lags done


@dataclass
class _PhasicAhead:
    """A window's phasic chance level in the making (:meth:`SynchronyEngine._phasic_ahead`)."""

    j: int  # the window (a multiple of phasic_every)
    in_ring: np.ndarray  # (n_shifts,) partner window held in the ring when started
    lead: np.ndarray  # (1, n_people, n_seg) standardized lead segments
    follow: np.ndarray  # (1, n_people, L + 1, n_seg) standardized follow segments (those of lags < n_follow)
    partner_lead: np.ndarray  # (1, n_shifts, n_people, n_seg) the partners' lead segments (NaN: none)
    m1: np.ndarray  # (1, n_shifts, n_people, n_people) best lagged product, this window's lead first
    m2: np.ndarray  # (1, n_shifts, n_people, n_people) the same with the partner's lead first (follow segments so far)
    n_m1: int = 0  # shifts done in m1
    n_follow: int = 0  # follow segments done


class SynchronyEngine:
    """Streaming synchrony for ``n_people`` on a common grid at ``fs``.

    Parameters
    ----------
    n_people : int
    fs : float
        Grid rate (Hz).
    config : EngineConfig, optional

    Examples
    --------
    >>> eng = SynchronyEngine(3, 4.0, EngineConfig(modalities=("hr",)))
    >>> out = eng.push({"hr": block})  # block: (3, n_new) # doctest: +SKIP
    >>> out["hr"]["synchrony"].values  # (n_pairs, n_new_windows) # doctest: +SKIP
    """

    def __init__(self, n_people: int, fs: float, config: EngineConfig | None = None):
        self.config = cfg = config or EngineConfig()
        self.fs = fs = sy.check_fs(fs)
        self.n_people = int(n_people)
        self.ia, self.ib = sy.pair_index(self.n_people)
        self._ab, self._ba = self.ia * self.n_people + self.ib, self.ib * self.n_people + self.ia  # flat [a, b], [b, a]
        sy.check_min_valid(cfg.min_valid)
        if not cfg.modalities or len(set(cfg.modalities)) != len(cfg.modalities):
            raise ValueError(
                f"Invalid value for 'modalities': expected unique modality names, but got {cfg.modalities!r}."
            )
        win = sy.to_samples(cfg.window_s, fs, "window_s", 3)
        step = sy.to_samples(cfg.step_s, fs, "step_s", 1)
        wwin = sy.to_samples(cfg.wcc_window_s, fs, "wcc_window_s", 3)
        wstep = sy.to_samples(cfg.wcc_step_s, fs, "wcc_step_s", 1)
        if not set(cfg.chance_of) <= set(RING_CHANCE_OF):
            raise ValueError(f"Invalid value for 'chance_of': expected a subset of {RING_CHANCE_OF!r}, "
                             f"but got {cfg.chance_of!r}.")
        self.max_lag = sy.to_samples(cfg.max_lag_s, fs, "max_lag_s", 0)
        if wwin - self.max_lag < 3:
            raise ValueError(
                f"Invalid value for 'max_lag_s': {cfg.max_lag_s} s leaves fewer than 3 samples per lagged "
                f"segment of a {cfg.wcc_window_s} s window; use a smaller lag or a longer window."
            )
        self.n_slope, cwin, cstep = sy.concordance_geometry(
            fs, cfg.slope_s, cfg.concordance_window_s, cfg.concordance_step_s
        )
        self.shifts = sy.surrogate_shifts(cfg.surrogate_shifts_s, fs, step)
        self.geom = {"sync": (win, step), "wcc": (wwin, wstep), "conc": (cwin, cstep)}
        self.chance_modalities = tuple(cfg.modalities if cfg.chance_modalities is None else cfg.chance_modalities)
        if not set(self.chance_modalities) <= set(cfg.modalities):
            raise ValueError(f"Invalid value for 'chance_modalities': expected a subset of {cfg.modalities!r}, "
                             f"but got {cfg.chance_modalities!r}.")
        self.phasic_lag = sy.to_samples(cfg.phasic_max_lag_s, fs, "phasic_max_lag_s", 0)
        if not set(cfg.phasic_modalities) <= set(cfg.modalities):
            raise ValueError(f"Invalid value for 'phasic_modalities': expected a subset of {cfg.modalities!r}, "
                             f"but got {cfg.phasic_modalities!r}.")
        self.phasic_seg = win - self.phasic_lag  # samples per lead / follow segment
        self.phasic_every = sy.to_samples(cfg.phasic_chance_every_s, fs, "phasic_chance_every_s", 1) // step or 1
        if cfg.phasic_modalities and np.any(self.shifts % self.phasic_every):
            raise ValueError(
                f"Invalid value for 'surrogate_shifts_s': with phasic synchrony every shift must be a multiple of "
                f"phasic_chance_every_s ({cfg.phasic_chance_every_s} s), but got {list(cfg.surrogate_shifts_s)!r}."
            )
        if cfg.phasic_modalities and win - self.phasic_lag < 3:
            raise ValueError(
                f"Invalid value for 'phasic_max_lag_s': {cfg.phasic_max_lag_s} s leaves fewer than 3 samples per "
                f"lagged segment of a {cfg.window_s} s window; use a smaller lag or a longer window."
            )
        history = max(win, wwin, cwin) + 1  # + 1: the sample before a window (its first change)
        cap = 4 * history + 64
        self._cap = cap
        self._scratch = _Scratch()
        self._history = history
        self.state: dict[str, _ModalityState] = {}
        R = int(self.shifts.max())
        for m in cfg.modalities:
            st = _ModalityState(buf=np.full((self.n_people, cap), np.nan))
            st.groups = {k: _Group(*v) for k, v in self.geom.items()}
            st.z_ring = np.full((R, self.n_people, win), np.nan)
            st.z_index = np.full(R, -1, dtype=np.int64)
            st.zp_ring = np.full((R, self.n_people, win), np.nan)
            st.zp_index = np.full(R, -1, dtype=np.int64)
            if m in cfg.phasic_modalities:
                n_seg, L1 = win - self.phasic_lag, self.phasic_lag + 1
                Rp = R // self.phasic_every + 1  # slots for the windows with a computed chance level
                st.ph_lead = np.full((Rp, self.n_people, n_seg), np.nan)
                st.ph_follow = np.full((Rp, self.n_people, L1, n_seg), np.nan)
                st.ph_index = np.full(Rp, -1, dtype=np.int64)
                n_pairs = len(self.ia)
                st.ph_held = (np.full(n_pairs, np.nan), np.full(n_pairs, np.nan))
            self.state[m] = st

    # ------------------------------------------------------------------ input
    def push(self, blocks) -> dict:
        """Add new grid samples and compute every window completed by them.

        Parameters
        ----------
        blocks : mapping modality -> array (n_people, n_new), or one array when there is one modality
            NaN marks missing samples.

        Returns
        -------
        dict modality -> dict metric name -> :class:`attune_monitor.dsp.synchrony.WindowedMetric`
            Only the newly completed windows (possibly none: ``n_windows == 0``).
        """
        if not isinstance(blocks, dict):
            if len(self.config.modalities) != 1:
                raise ValueError(
                    f"Invalid value for 'blocks': expected a dict with keys {list(self.config.modalities)}, "
                    "but got one array; pass {modality: array}."
                )
            blocks = {self.config.modalities[0]: blocks}
        new = []
        for m, block in blocks.items():
            if m not in self.state:
                raise ValueError(
                    f"Invalid value for 'modality': expected one of {', '.join(self.config.modalities)}, but got {m!r}."
                )
            b = np.asarray(block, dtype=np.float64)
            if b.ndim == 1 and self.n_people == b.shape[0]:
                b = b[:, None]
            if b.ndim != 2 or b.shape[0] != self.n_people:
                raise ValueError(
                    f"Invalid value for '{m}' block: expected shape ({self.n_people}, n_new), but got {b.shape}."
                )
            new.append((m, b))
        for m, b in new:  # validate every block before any state changes
            self._append(self.state[m], np.where(np.isinf(b), np.nan, b))
        modalities = [m for m, _ in new]
        states = [self.state[m] for m in modalities]
        sync_window = any((st.n_total - st.groups["sync"].win) // st.groups["sync"].step >= st.groups["sync"].next_j
                          for st in states)
        if not sync_window and not any((st.n_total - g.win) // g.step >= g.next_j
                                       for st in states for g in st.groups.values()):
            out = self._compute(modalities)  # no window completes: nothing to multiply
        else:
            with one_blas_thread():
                out = self._compute(modalities)
        n_new = max(b.shape[1] for _, b in new)
        live = self.n_people >= LAGS_AHEAD_PEOPLE and n_new <= states[0].groups["sync"].step  # a large group's tick
        for m, st in zip(modalities, states):
            if m in self.config.phasic_modalities:
                self._phasic_ahead(st)
            # the synchrony windows' tick is the longest: there the lag products of the windows to come wait for the
            # next tick, which does what is then ready (the windows completing now were finished in _compute)
            if live and not sync_window:
                for kind in ("wcc", "phasic") if m in self.config.phasic_modalities else ("wcc",):
                    self._lags_ahead_all(st, kind)
        return out

    def _append(self, st: _ModalityState, b: np.ndarray) -> None:
        n_new = b.shape[1]
        cap = st.buf.shape[1]  # per modality: one modality may have grown its buffer already
        if st.n_buf + n_new > cap:
            keep = min(st.n_buf, self._history)
            drop = st.n_buf - keep
            st.buf[:, :keep] = st.buf[:, drop : st.n_buf]
            st.buf_start += drop
            st.n_buf = keep
            if keep + n_new > cap:  # one huge block: grow once
                nb = np.full((self.n_people, keep + n_new + cap), np.nan)
                nb[:, :keep] = st.buf[:, :keep]
                st.buf = nb
        st.buf[:, st.n_buf : st.n_buf + n_new] = b
        st.n_buf += n_new
        st.n_total += n_new

    def _new_windows(self, st: _ModalityState, key: str):
        g = st.groups[key]
        last = (st.n_total - g.win) // g.step  # last complete window
        if last < g.next_j:
            return None
        js = np.arange(g.next_j, last + 1, dtype=np.int64)
        g.next_j = last + 1
        off = js * g.step - st.buf_start
        if off[0] < 0:  # (only if a single push skipped past the history: compute what is still held)
            keep = off >= 0
            js, off = js[keep], off[keep]
            if not len(js):
                return None
        W = sy.window_view(st.buf[:, : st.n_buf], g.win, g.step, len(js), int(off[0]))
        return js, W, g

    def _stacks(self, modalities, key):
        """New windows of geometry ``key`` for every modality, stacked along the window axis.

        Modalities whose new windows have the same indices (the usual case: they are pushed together)
        share one stack, so each metric runs once per tick for all of them. A stack holds at most
        ``_BLOCK`` windows per modality (a push that completes more gives several, in window order), which
        bounds the temporaries.

        Returns
        -------
        list of (js, W, g, parts)
            ``js`` (n_new,) window indices; ``W`` of shape (n_modalities * n_new, n_people, win); ``parts``
            lists (modality, slice of ``W``'s first axis).
        """
        found = []
        for m in modalities:
            nw = self._new_windows(self.state[m], key)
            if nw is not None:
                found.append((m,) + nw)
        stacks: list[tuple[np.ndarray, list[np.ndarray], _Group, list[str]]] = []
        for m, js, W, g in found:
            for s in stacks:
                if len(s[0]) == len(js) and s[0][0] == js[0]:
                    s[1].append(W)
                    s[3].append(m)
                    break
            else:
                stacks.append((js, [W], g, [m]))
        out = []
        for js, Ws, g, ms in stacks:
            for b0 in range(0, len(js), _BLOCK):
                b1 = min(len(js), b0 + _BLOCK)
                n = b1 - b0
                W = Ws[0][b0:b1] if len(Ws) == 1 else np.concatenate([w[b0:b1] for w in Ws], 0)
                out.append((js[b0:b1], W, g, [(m, slice(k * n, (k + 1) * n)) for k, m in enumerate(ms)]))
        return out

    def _compute(self, modalities) -> dict:
        cfg = self.config
        ia, ib = self.ia, self.ib
        # modality -> metric -> [(js, g, end, values (n, K), status)]
        acc: dict[str, dict[str, list[tuple]]] = {m: {} for m in modalities}

        def emit(m, name, js, g, end, v, st_):
            acc[m].setdefault(name, []).append((js, g, end, v, st_))

        for js, W, g, parts in self._stacks(modalities, "sync"):
            if np.isfinite(W).all():
                # fully valid (the usual case): the same numbers as pearson_windows, with the centring
                # shared between plain and detrended r and one matmul for both
                Zp, Z = _standardize_both(W)
                Zf = sy.standardized_windows(W, detrend=False, diff=True)
                Z2 = np.concatenate([Z, Zp])
                M2 = np.matmul(Z2, Z2.swapaxes(-1, -2))
                Mf = np.matmul(Zf, Zf.swapaxes(-1, -2))
                n = W.shape[0]
                metrics = []
                for name, rr in (("synchrony", M2[:n]), ("pearson", M2[n:]), ("pearson_diff", Mf)):
                    r = np.clip(_pairs_of(rr, self._ab), -1.0, 1.0)
                    metrics.append((name, r, np.where(np.isnan(r), sy.FLAT, sy.OK).astype(np.int8)))
            else:
                Z = sy.standardized_windows(W, detrend=True)
                Zp = sy.standardized_windows(W, detrend=False)
                metrics = [
                    ("synchrony",) + sy.pearson_windows(W, ia, ib, detrend=True, min_valid=cfg.min_valid),
                    ("pearson",) + sy.pearson_windows(W, ia, ib, min_valid=cfg.min_valid),
                    ("pearson_diff",) + sy.pearson_windows(W, ia, ib, diff=True, min_valid=cfg.min_valid),
                ]
            metrics.append(("direction",) + sy.direction_windows(W, ia, ib, cfg.min_valid))
            end = js * g.step + g.win
            for m, sl in parts:
                for name, v, st_ in metrics:
                    emit(m, name, js, g, end, v[sl], st_[sl])
            # chance levels of the zero-lag r, for the modalities that want them
            cparts = [(m, sl) for m, sl in parts if m in self.chance_modalities]
            if cparts:
                states = [self.state[m] for m, _ in cparts]
                sel = np.concatenate([np.arange(sl.start, sl.stop) for _, sl in cparts])
                n = len(js)
                for key, ring, names in (("synchrony", "z", ("surrogate_mean", "surrogate_sd")),
                                         ("pearson", "zp", ("surrogate_pearson_mean", "surrogate_pearson_sd"))):
                    # plain r gets its own chance level: slow trends make plain r's chance level higher
                    if key not in cfg.chance_of:
                        continue
                    mean, sd = self._surrogate(states, js, (Z if ring == "z" else Zp)[sel], ring)
                    sst = np.where(np.isfinite(mean), sy.OK, sy.MISSING).astype(np.int8)
                    for k, (m, _) in enumerate(cparts):
                        part = slice(k * n, (k + 1) * n)
                        emit(m, names[0], js, g, end, mean[part], sst[part])
                        emit(m, names[1], js, g, end, sd[part], sst[part])
            for m, _ in parts:
                if m in cfg.phasic_modalities:
                    for name, v, st_ in self._phasic(self.state[m], js, g):
                        emit(m, name, js, g, end, v, st_)
        for js, W, g, parts in self._stacks(modalities, "wcc"):
            summ = None
            if np.isfinite(W).all():
                summ = _xcorr_full(W, ia, ib, self.max_lag, cfg.wcc_detrend, self.fs, self._scratch,
                                   self._lags_prepared("wcc", js, [m for m, _ in parts]))
            if summ is None:
                Rl, s = sy.xcorr_windows(W, ia, ib, self.max_lag, detrend=cfg.wcc_detrend, min_valid=cfg.min_valid)
                summ = sy.summarize_xcorr(Rl, ia, ib, self.max_lag, self.fs)
            else:
                s = np.zeros(summ[0].shape, np.int8)  # OK
            r0, rmax, lag_s, leader = summ
            end = js * g.step + g.win
            for m, sl in parts:
                for name, v in (("wcc_r0", r0), ("wcc_rmax", rmax), ("wcc_lag_s", lag_s), ("wcc_leader", leader)):
                    emit(m, name, js, g, end, v[sl], s[sl])
        conc = [m for m in modalities if m in cfg.concordance_modalities]
        for js, W, g, parts in self._stacks(conc, "conc"):
            if self.n_people >= FAST_CONCORDANCE_PEOPLE and np.isfinite(W).all():
                r, s = _concordance_full(W, self._ab, self.n_slope)
            else:
                r, s = sy.concordance_windows(W, ia, ib, self.n_slope, cfg.min_valid)
            end = js * g.step + g.win
            for m, sl in parts:
                emit(m, "concordance", js, g, end, r[sl], s[sl])
        res: dict[str, dict[str, sy.WindowedMetric]] = {}
        for m, per_metric in acc.items():
            by_name = res[m] = {}
            for name, parts_ in per_metric.items():
                js, g, end, v, st_ = parts_[0]
                if len(parts_) > 1:
                    js = np.concatenate([p[0] for p in parts_])
                    end = np.concatenate([p[2] for p in parts_])
                    v = np.concatenate([p[3] for p in parts_], 0)
                    st_ = np.concatenate([p[4] for p in parts_], 0)
                by_name[name] = sy.WindowedMetric(name, v.T, st_.T.copy(), js, end, self.fs, g.win, g.step)
        return res

    def _change_windows(self, st: _ModalityState, js, g: _Group) -> np.ndarray:
        """Sample-to-sample changes in consecutive windows ``js`` of ``st``: a read-only view (n, n_people, win).

        Change ``k`` of a window is ``x[start + k] - x[start + k - 1]``, so the first one reaches one sample
        before the window (NaN at the session's first sample); the same as windowing the changes of the
        whole series (``np.diff(x, prepend=nan)``).
        """
        n = len(js)
        first = int(js[0]) * g.step - 1 - st.buf_start  # buffer index of the sample before the first window
        span = (n - 1) * g.step + g.win + 1
        if first >= 0:
            seg = st.buf[:, first : first + span]
        else:  # the session's first window: no sample before it
            seg = np.concatenate([np.full((self.n_people, -first), np.nan), st.buf[:, : first + span]], axis=1)
        return sy.window_view(np.diff(seg, axis=1), g.win, g.step, n)

    def _lags_ahead_all(self, st: _ModalityState, kind: str) -> None:
        """Prepare every window of ``kind`` whose lead segment is complete (:meth:`_lags_ahead_many`); drop others."""
        g = st.groups["wcc" if kind == "wcc" else "sync"]
        n = g.win - (self.max_lag if kind == "wcc" else self.phasic_lag)
        for key in [k for k in st.lags_pending if k[0] == kind and k[1] < g.next_j]:
            del st.lags_pending[key]
        last = (st.n_total - n) // g.step  # the last window whose lead segment is complete
        if last >= g.next_j:
            self._lags_ahead_many(st, kind, range(g.next_j, last + 1), st.n_total)

    def _lags_ahead(self, st: _ModalityState, kind: str, j: int, n_total: int) -> _LagsAhead | None:
        """Prepare window ``j``'s r at the lags whose segments are complete within ``n_total`` samples.

        :meth:`_lags_ahead_many` of the one window: the work so far (None: none).
        """
        return self._lags_ahead_many(st, kind, (j,), n_total).get(j)

    def _lags_ahead_many(self, st: _ModalityState, kind: str, js, n_total: int) -> dict:
        """Prepare windows ``js``' r at the lags whose segments are complete within ``n_total`` samples.

        ``kind``: ``"wcc"`` (the lead-lag windows of the samples) or ``"phasic"`` (the phasic r: the synchrony
        windows' changes, lags ``+-phasic_max_lag_s``, not detrended). The lead segment (the window's first
        ``win - L`` values) is complete ``L`` samples before the window, the segment at lag ``l`` ``L - l`` before
        it: per tick, the products of each window's lead residuals with its newly complete lagged segment, for all
        the windows in the making at once (one stacked matrix product: a live tick has several, each a step apart),
        so the window's tick only checks flatness and picks the peaks. The segments are anchored on the lead's mean
        rather than the window's (which is not known yet): the same r within rounding. Nothing is prepared over
        missing values (the direct path decides).

        Returns
        -------
        dict
            window -> the work so far (None: none).
        """
        wcc = kind == "wcc"
        g = st.groups["wcc" if wcc else "sync"]
        L = self.max_lag if wcc else self.phasic_lag
        n, L1 = g.win - L, L + 1
        detrend = self.config.wcc_detrend if wcc else False
        tc = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        ctt = n * (n * n - 1) / 12.0
        out: dict = {}
        tasks: list = []  # (work, lag, segment (n_people, n) less the anchor)
        for j in js:
            start = j * g.step
            n_ready = min(n_total - start - n + 1, L1)
            p = out[j] = st.lags_pending.get((kind, j))
            if n_ready < 1 or start - (0 if wcc else 1) < st.buf_start or (p is not None and p.n_done >= n_ready):
                continue
            done = 0 if p is None else p.n_done  # the samples from lag ``done``'s segment on
            m = n + n_ready - 1 - done
            if wcc:
                x = st.buf[:, start + done - st.buf_start: start + done - st.buf_start + m]
            else:
                x = self._changes(st, start + done, m)
            if not np.isfinite(x).all():
                st.lags_pending.pop((kind, j), None)
                out[j] = None
                continue
            if p is None:
                anchor = x[:, :n].mean(-1)
                y0 = x[:, :n] - anchor[:, None]
                s1 = y0.sum(-1)
                c0 = np.einsum("ij,ij->i", y0, y0) - s1 * s1 / n
                st0 = y0 @ tc if detrend else None
                if st0 is not None:
                    c0 = c0 - st0 * st0 / ctt
                if not (c0 > 0).all():
                    out[j] = None
                    continue  # (nearly) flat: the direct path decides
                lead = y0 - (s1 / n)[:, None]
                if st0 is not None:
                    lead -= (st0 / ctt)[:, None] * tc
                lead *= (1.0 / np.sqrt(c0))[:, None]
                P = self.n_people
                p = out[j] = st.lags_pending[(kind, j)] = _LagsAhead(
                    j, anchor, lead, np.empty((P, P)), np.full((P, P), -np.inf), np.ones((P, P), np.int64))
            Y = x - p.anchor[:, None]
            tasks.extend((p, lag, Y[:, lag - done: lag - done + n]) for lag in range(done, n_ready))
            p.n_done = n_ready
        if not tasks:
            return out
        seg = np.stack([t[2] for t in tasks])  # (n_tasks, n_people, n)
        s1 = seg.sum(-1)
        c = np.einsum("kij,kij->ki", seg, seg) - s1 * s1 / n  # residual variance (less mean, and trend)
        if detrend:
            st_ = seg @ tc
            c = c - st_ * st_ / ctt
        with one_blas_thread(), np.errstate(invalid="ignore", divide="ignore"):
            seg *= (1.0 / np.sqrt(c))[..., None]
            r = np.matmul(np.stack([t[0].lead for t in tasks]), seg.swapaxes(-1, -2))
        np.clip(r, -1.0, 1.0, out=r)
        finite = np.isfinite(r).all((1, 2))
        for k, (p, lag, _) in enumerate(tasks):  # each window's lags in order
            p.finite = p.finite and bool(finite[k])
            if lag == 0:
                p.r0 = r[k]
            else:  # the first maximum over lags (as argmax): only a larger r moves it
                up = r[k] > p.best
                np.copyto(p.best, r[k], where=up)
                np.copyto(p.arg, lag, where=up)
        return out

    def _lags_prepared(self, kind: str, js, modalities):
        """The prepared r of window ``js`` (one window) of ``kind`` for the stacked ``modalities``, or None.

        Finishes each modality's preparation with the samples now in (the last lags).
        """
        if len(js) != 1:
            return None
        ps = []
        L = self.max_lag if kind == "wcc" else self.phasic_lag
        for m in modalities:
            st = self.state[m]
            if (kind, int(js[0])) not in st.lags_pending:
                return None  # not prepared (a small group, a batch push, missing values): the direct path
            p = self._lags_ahead(st, kind, int(js[0]), st.n_total)
            st.lags_pending.pop((kind, int(js[0])), None)
            if p is None or p.n_done < L + 1 or not p.finite:
                return None
            ps.append(p)
        return tuple(np.stack([getattr(p, k) for p in ps]) for k in ("r0", "best", "arg"))

    def _phasic(self, st: _ModalityState, js, g: _Group) -> list:
        """Phasic synchrony of windows ``js``: [(name, values (n, n_pairs), status)] for the engine's output.

        The windowed cross-correlation (:func:`attune_monitor.dsp.synchrony.xcorr_windows`, lags ``+-L``) of each
        window's changes: the best r and its lag. Chance level, for the windows ``j`` that are multiples of
        ``phasic_every`` (held for the windows after them): each person's changes are split into a *lead*
        segment (the first ``win - L``) and ``L + 1`` *follow* segments (starting 0..L later), standardized
        once and kept in a ring; a window is correlated (same lag search) with every partner's window
        ``shifts`` earlier, both ways, and only a person's fully valid, non-flat windows take part (as in
        :meth:`_surrogate`). A window whose chance level :meth:`_phasic_ahead` has prepared while its samples
        arrived is finished from that work (the same products, so the same numbers); the others are computed here.
        """
        ia, ib = self.ia, self.ib
        n = len(js)
        D = self._change_windows(st, js, g)
        # the rings are made in __init__ for every phasic modality, the only ones this is called for
        assert st.ph_held is not None
        summ = (_xcorr_full(D, ia, ib, self.phasic_lag, False, self.fs, self._scratch,
                            self._lags_prepared("phasic", js, [m for m, s in self.state.items() if s is st]))
                if np.isfinite(D).all() else None)
        if summ is None:
            R, s = sy.xcorr_windows(D, ia, ib, self.phasic_lag, detrend=False, min_valid=self.config.min_valid)
            _, rmax, lag_s, _ = sy.summarize_xcorr(R, ia, ib, self.phasic_lag, self.fs)
        else:
            _, rmax, lag_s, _ = summ
            s = np.zeros(rmax.shape, np.int8)
        mean = np.empty((n, len(ia)))
        sd = np.empty((n, len(ia)))
        at = np.flatnonzero(js % self.phasic_every == 0)  # the windows whose chance level is computed
        if at.size:
            S = []
            ahead = st.ph_pending
            st.ph_pending = None
            if ahead is not None and ahead.j == js[at[0]] and self._phasic_partners_kept(st, ahead):
                S.append(self._phasic_finish(st, ahead, D[at[0]]))
                at_direct = at[1:]
            else:
                at_direct = at
            if at_direct.size:
                S.append(self._phasic_direct(st, js[at_direct], D[at_direct]))
            bm, bsd = _surrogate_stats_values_first(np.clip(np.concatenate(S) if len(S) > 1 else S[0], -1.0, 1.0))
        # every window takes the chance level of the last computed window at or before it
        last = np.searchsorted(at, np.arange(n), side="right") - 1  # index into ``at`` (-1: held from before)
        held_m, held_sd = st.ph_held
        mean[:] = held_m
        sd[:] = held_sd
        if at.size:
            mean[last >= 0], sd[last >= 0] = bm[last[last >= 0]], bsd[last[last >= 0]]
            st.ph_held = (bm[-1].copy(), bsd[-1].copy())
        sst = np.where(np.isfinite(mean), sy.OK, sy.MISSING).astype(np.int8)
        return [("phasic", rmax, s), ("phasic_lag_s", lag_s, s),
                ("surrogate_phasic_mean", mean, sst), ("surrogate_phasic_sd", sd, sst)]

    def _phasic_partners(self, st: _ModalityState, j: int):
        """Window ``j``'s partner windows: (src (n_shifts,) window indices, ring slots, held in the ring)."""
        assert st.ph_index is not None
        src = j - self.shifts
        slot = (src // self.phasic_every) % len(st.ph_index)
        return src, slot, (src >= 0) & (st.ph_index[slot] == src)

    def _phasic_partners_kept(self, st: _ModalityState, ahead: _PhasicAhead) -> bool:
        """Whether the ring holds (or lacks) each partner of ``ahead`` as when it started.

        Always so, unless a push skipped windows.
        """
        return bool(np.array_equal(self._phasic_partners(st, ahead.j)[2], ahead.in_ring))

    def _phasic_segment(self, D, lag: int) -> np.ndarray:
        """Standardized segments of changes ``D`` from ``lag``, shape (n, n_people, n_seg).

        ``D`` has shape (n, n_people, >= lag + n_seg). Lag 0 is the lead segment, lags 0..L the follow segments;
        NaN rows are not fully valid or flat.
        """
        return sy.standardized_windows(np.ascontiguousarray(D[..., lag: lag + self.phasic_seg]), detrend=False)

    def _phasic_direct(self, st: _ModalityState, jb, Db) -> np.ndarray:
        """Chance-level r's of chance windows ``jb`` (changes ``Db``, shape (nb, n_people, win)); enter the ring.

        Returns
        -------
        S : ndarray, shape (nb, 2 * n_shifts, n_pairs)
            Per pair the best lagged r with each shifted partner, (a now, b then) and (b now, a then) per shift.
        """
        assert st.ph_lead is not None and st.ph_follow is not None and st.ph_index is not None
        P, L1, n_seg = self.n_people, self.phasic_lag + 1, self.phasic_seg
        every = self.phasic_every
        nb, ns = len(jb), len(self.shifts)
        Zl = self._phasic_segment(Db, 0)
        # every follow segment in one call (each segment is standardized on its own, as _phasic_segment does)
        F = np.ascontiguousarray(sy.sliding_view(Db, n_seg)).reshape(nb, P * L1, n_seg)
        Zf = sy.standardized_windows(F, detrend=False).reshape(nb, P, L1, n_seg)
        ok = np.isfinite(Zl).all(-1) & np.isfinite(Zf).all((-2, -1))  # (nb, P): fully valid, not flat
        Zl[~ok], Zf[~ok] = np.nan, np.nan
        Rr = len(st.ph_index)
        src = jb[:, None] - self.shifts[None, :]  # (nb, n_shifts) the partner's window
        here = src >= jb[0]  # in this push (its segments are in Zl / Zf)
        slot = (src // every) % Rr
        in_ring = ~here & (src >= 0) & (st.ph_index[slot] == src)
        pl = np.empty((nb, ns, P, n_seg))
        pf = np.empty((nb, ns, P, L1, n_seg))
        pl[~(here | in_ring)], pf[~(here | in_ring)] = np.nan, np.nan  # no partner window (yet)
        pl[in_ring], pf[in_ring] = st.ph_lead[slot[in_ring]], st.ph_follow[slot[in_ring]]
        pos = (src[here] - jb[0]) // every
        pl[here], pf[here] = Zl[pos], Zf[pos]
        # (a now, b then): lead_a . follow_b then (a leads) or lead_b then . follow_a (b leads)
        m1 = np.stack([_best_lagged_products(Zl, pf[:, k]) for k in range(ns)], axis=1)  # (nb, ns, P, P)
        m2 = _lead_products(pl, Zf[:, :, 0])
        for lag in range(1, L1):
            np.maximum(m2, _lead_products(pl, Zf[:, :, lag]), out=m2)
        keep = jb[-Rr:]
        slots = (keep // every) % Rr
        st.ph_lead[slots], st.ph_follow[slots] = Zl[-Rr:], Zf[-Rr:]
        st.ph_index[slots] = keep
        return self._phasic_pairs(m1, m2)

    def _phasic_pairs(self, m1, m2) -> np.ndarray:
        """Per shift and pair the best lagged r both ways, shape (nb, 2 * n_shifts, n_pairs).

        From ``m1`` (the window now leads) and ``m2`` (the partner then leads), each of shape
        (nb, n_shifts, n_people, n_people).
        """
        ab, ba = self._ab, self._ba
        S = np.empty((m1.shape[0], 2 * len(self.shifts), len(ab)))
        S[:, 0::2] = np.maximum(_pairs_flat(m1, ab), _pairs_flat(m2, ba))
        S[:, 1::2] = np.maximum(_pairs_flat(m1, ba), _pairs_flat(m2, ab))
        return S

    def _phasic_ahead(self, st: _ModalityState) -> None:
        """Prepare the next chance window's phasic chance level from the samples that have arrived (live ticks).

        The chance level of a window ``j`` (a multiple of ``phasic_every``) needs its lead segment, complete
        ``L`` samples before the window, and follow segment ``l``, complete ``L - l`` samples before it; the
        partner windows are older. So the lag searches against the partners (the costliest part of the
        engine at 64 people) run over the ticks before the window completes: per tick, the products of one
        partner shift with the lead, and those of each newly complete follow segment. :meth:`_phasic` then adds
        what is left (the last follow segment) and publishes the level with the window, as before. Nothing is
        prepared while a partner window is still to come (the ring then changes before ``j``).
        """
        assert st.ph_index is not None and st.ph_follow is not None and st.ph_lead is not None
        g = st.groups["sync"]
        every, L1, n_seg = self.phasic_every, self.phasic_lag + 1, self.phasic_seg
        j = -(-g.next_j // every) * every  # the next window with a chance level
        start = j * g.step
        n_ready = min(st.n_total - start - n_seg + 1, L1)  # follow segments complete (lead: from 1)
        p = st.ph_pending
        if p is not None and p.j != j:
            p = st.ph_pending = None
        if n_ready < 1 or (start > 0 and start - 1 < st.buf_start):
            return
        if p is None:
            src, slot, in_ring = self._phasic_partners(st, j)
            if np.any((src >= 0) & (src * g.step + g.win > st.n_total)):
                return  # a partner window is not complete yet
            P, ns = self.n_people, len(src)
            pl = np.full((1, ns, P, n_seg), np.nan)
            pl[0, in_ring] = st.ph_lead[slot[in_ring]]
            p = st.ph_pending = _PhasicAhead(
                j, in_ring, self._phasic_segment(self._changes(st, start, n_seg)[None], 0),
                np.full((1, P, L1, n_seg), np.nan), pl, np.empty((1, ns, P, P)), np.empty((1, ns, P, P)))
        if p.n_m1 < len(self.shifts) or p.n_follow < n_ready:
            with one_blas_thread():
                self._phasic_step(st, p, n_ready, self._changes(st, start, n_seg + n_ready - 1)[None], 1)

    def _phasic_step(self, st: _ModalityState, p: _PhasicAhead, n_ready: int, D, n_m1: int) -> None:
        """Advance ``p``: the lead with ``n_m1`` more partner shifts, the follow segments below lag ``n_ready``.

        ``D``: changes from the window's start, shape (1, n_people, >= n_seg + n_ready - 1).
        """
        assert st.ph_follow is not None
        _, slot, _ = self._phasic_partners(st, p.j)
        for k in range(p.n_m1, min(p.n_m1 + n_m1, len(self.shifts))):
            if p.in_ring[k]:
                p.m1[:, k] = _best_lagged_products(p.lead, st.ph_follow[slot[k]][None])
            else:
                p.m1[:, k] = np.nan
        p.n_m1 = min(p.n_m1 + n_m1, len(self.shifts))
        for lag in range(p.n_follow, n_ready):
            p.follow[:, :, lag] = self._phasic_segment(D, lag)
            prod = _lead_products(p.partner_lead, p.follow[:, :, lag])
            if lag == 0:
                p.m2[:] = prod
            else:
                np.maximum(p.m2, prod, out=p.m2)
        p.n_follow = max(p.n_follow, n_ready)

    def _phasic_finish(self, st: _ModalityState, p: _PhasicAhead, D) -> np.ndarray:
        """Chance-level r's of the window ``p`` prepared (changes ``D``, shape (n_people, win)); enters the ring.

        The same numbers as :meth:`_phasic_direct`: the same products, with the people who are not fully valid
        (or flat) masked after them rather than before.
        """
        assert st.ph_lead is not None and st.ph_follow is not None and st.ph_index is not None
        L1 = self.phasic_lag + 1
        self._phasic_step(st, p, L1, D[None], len(self.shifts))
        ok = (np.isfinite(p.lead).all(-1) & np.isfinite(p.follow).all((-2, -1)))[0]  # (P,)
        p.m1[:, :, ~ok, :] = np.nan  # a's lead not valid
        p.m2[:, :, :, ~ok] = np.nan  # b's follow not valid
        p.lead[:, ~ok], p.follow[:, ~ok] = np.nan, np.nan
        Rr = len(st.ph_index)
        slot = (p.j // self.phasic_every) % Rr
        st.ph_lead[slot], st.ph_follow[slot], st.ph_index[slot] = p.lead[0], p.follow[0], p.j
        return self._phasic_pairs(p.m1, p.m2)

    def _changes(self, st: _ModalityState, start: int, n: int) -> np.ndarray:
        """Changes from absolute sample ``start``, shape (n_people, n), as :meth:`_change_windows`.

        Change ``k`` is ``x[start + k] - x[start + k - 1]`` (NaN before the session's first sample).
        """
        first = start - 1 - st.buf_start
        if first >= 0:
            seg = st.buf[:, first: first + n + 1]
        else:
            seg = np.concatenate([np.full((self.n_people, -first), np.nan), st.buf[:, : first + n + 1]], axis=1)
        return np.diff(seg, axis=1)

    def _surrogate(self, states, js, Z, ring: str = "z"):
        """Chance level from the rings of past standardized windows; ``Z`` enters the rings.

        Parameters
        ----------
        states : list of _ModalityState
            The modalities stacked in ``Z``, in order.
        js : ndarray, shape (n_new,)
        Z : ndarray, shape (len(states) * n_new, n_people, win)
        ring : {"z", "zp"}
            Which rings: detrended (``z``) or plain (``zp``) standardized windows.

        Returns
        -------
        mean, sd : ndarray, shape (len(states) * n_new, n_pairs)
        """
        n = len(js)
        ring_of = lambda st: (getattr(st, f"{ring}_ring"), getattr(st, f"{ring}_index"))  # noqa: E731
        R = len(ring_of(states[0])[1])
        src = js[:, None] - self.shifts  # (n_new, n_shifts) window index of each shifted partner
        ps = src % R
        here = src >= js[0]
        if n == 1 and len(states) == 1 and self.n_people >= LAGS_AHEAD_PEOPLE:
            M = self._surrogate_tick(ring_of(states[0]), int(js[0]), Z[0])
            return _surrogate_stats_values_first(
                np.concatenate([_pairs_flat(M, self._ab), _pairs_flat(M, self._ba)], 1))
        Zps = []
        for k, st in enumerate(states):
            Zk = Z[k * n : (k + 1) * n]
            z_ring, z_index = ring_of(st)
            zp = z_ring[ps]  # (n_new, n_shifts, P, win): read before this push's windows enter the ring
            zp[~((src >= 0) & (z_index[ps] == src))] = np.nan
            if here.any():  # partners completed by this same push
                zp[here] = Zk[src[here] - js[0]]
            keep = js[-R:]
            z_ring[keep % R] = Zk[-R:]
            z_index[keep % R] = keep
            Zps.append(zp)
        Zp = Zps[0] if len(Zps) == 1 else np.concatenate(Zps, 0)
        M = np.clip(np.matmul(Z[:, None], Zp.swapaxes(-1, -2)), -1.0, 1.0)  # (n, n_shifts, P, P)
        S = np.concatenate([_pairs_flat(M, self._ab), _pairs_flat(M, self._ba)], 1)  # (n, 2 * n_shifts, n_pairs)
        return _surrogate_stats_values_first(S)

    def _surrogate_tick(self, ring, j: int, Z) -> np.ndarray:
        """A live tick's chance r's of window ``j`` (a large group, one modality); ``Z`` enters the ring.

        The products of :meth:`_surrogate` (the same numbers), each partner's straight from its ring slot rather than
        from a gathered copy of all partners' windows (megabytes at 64 people).

        Parameters
        ----------
        ring : tuple of ndarray
            The modality's ring of standardized windows (R, n_people, win) and the window index in each slot (R,).
        j : int
        Z : ndarray, shape (n_people, win)
            Window ``j`` standardized.

        Returns
        -------
        ndarray, shape (1, n_shifts, n_people, n_people)
            ``[0, k, a, b]``: r of a's window ``j`` with b's window ``j - shifts[k]`` (NaN where the ring lacks it),
            clipped to [-1, 1].
        """
        z_ring, z_index = ring
        R = len(z_index)
        M = np.empty((1, len(self.shifts), self.n_people, self.n_people))
        for k, src in enumerate(j - self.shifts):
            slot = src % R
            if src >= 0 and z_index[slot] == src:
                np.matmul(Z, z_ring[slot].T, out=M[0, k])
            else:
                M[0, k] = np.nan
        z_ring[j % R], z_index[j % R] = Z, j
        return np.clip(M, -1.0, 1.0, out=M)

    # ------------------------------------------------------------------ state
    @property
    def n_samples(self) -> dict:
        """Samples received so far, per modality."""
        return {m: s.n_total for m, s in self.state.items()}

    def memory_bytes(self) -> int:
        """Bytes held by the history buffers and surrogate rings (bounded, independent of session length)."""
        return sum(a.nbytes for s in self.state.values()
                   for a in (s.buf, s.z_ring, s.zp_ring, s.ph_lead, s.ph_follow) if a is not None)
