"""Compiled (numba) live pull of every stream of a large group at once: :mod:`attune_monitor.dsp.stream_bank`'s kernels.

Imported only by :class:`attune_monitor.dsp.stream_bank.StreamBank` (large groups; it imports numba at module level,
so a dyad never loads this module). Each kernel runs, row by row, the scalar live path of one preprocessor's
``pull_scalar`` with the same arithmetic in the same order, so that the results are bitwise equal:

* :func:`eda_pull`: :meth:`attune_monitor.dsp.grid.GridPreprocessor._due`, then
  :meth:`attune_monitor.dsp.eda.EdaPreprocessor._advance` through ``_flags_few`` and ``_clean_few`` and the grid
  sample of ``_level_at``;
* :func:`hr_pull`: the same for device heart rate (``kind="hr"``), :meth:`attune_monitor.dsp.heart.
  HeartPreprocessor._hr_at`, with its trimming of the samples no later grid time needs.

A row whose pull leaves that path (more than one grid sample due, many samples to flag, a motion sample to
bridge) is left as it is, or as far as the scalar path went before the array code takes over, with status
:data:`FALLBACK`: the caller hands it to its preprocessor object for this pull.

Layout: ``N`` (n_rows,) samples buffered and ``LAST`` (n_rows,) the last pushed timestamp (written by the pushes);
``TS``, ``X`` (n_rows, capacity) the raw samples (device heart rate: dated back), oldest first; EDA also
``FLAG``, ``LVL``, ``TON``, ``Q``, ``SEED`` aligned with them; ``IN`` (n_rows, NI) int fields, ``F`` (n_rows, NF)
float fields (``I_*``, ``F_*`` below); ``P`` the parameters (``P_*``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# int fields: samples flagged, cleaned, motion seeds worked out, next grid index, filter state set
I_FLAG, I_CLEAN, I_SEED, I_NEXT, I_HASZ = range(5)
NI = 5
# float fields: known_until (before the pushes since the last pull), last cleaned timestamp, level filter state
# (2), tonic filter state (2)
F_KNOWN, F_LCLEAN, F_Z0, F_Z1, F_TZ0, F_TZ1 = range(6)
NF = 6
# EDA parameters: lowest / highest level, resolution, max interp gap, flat_s, pad, slope_span, max_slope,
# look_flags, bridge, history, few_max, then the two sections [b0 b1 b2 1 a1 a2] and their unit states (2)
(P_LO, P_HI, P_RES, P_GAP, P_FLAT, P_PAD, P_SPAN, P_SLOPE, P_LOOK, P_BRIDGE, P_HIST, P_FEW) = range(12)
P_SOS, P_TSOS, P_ZU, P_TZU = 12, 18, 24, 26
NP_EDA = 28
# device heart-rate parameters: max_gap, hr_min, hr_max, date_back
H_GAP, H_MIN, H_MAX, H_BACK = range(4)
NP_HR = 4

# statuses
NOTHING, ONE, FALLBACK = 0, 1, 2
# quality codes (dsp.quality.Quality)
OK, CORRECTED, NO_DATA, ELECTRODE_OFF, MOTION, IMPLAUSIBLE = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def _right(a, lo, hi, v):  # pragma: no cover - compiled
    """First index in [lo, hi) with a[i] > v (hi if none): ``lo + searchsorted(a[lo:hi], v, "right")``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if v < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True)
def _left(a, lo, hi, v):  # pragma: no cover - compiled
    """First index in [lo, hi) with a[i] >= v (hi if none): ``lo + searchsorted(a[lo:hi], v, "left")``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _step_ok(ts, x, j, w0, gap, lo_lvl, hi_lvl, res):  # pragma: no cover - compiled
    """``_flags_few``'s step_ok: sample ``j`` continues the run of ``j - 1`` (never the window's first, ``w0``)."""
    if j <= w0 or ts[j] - ts[j - 1] > gap:
        return False
    v = x[j]
    u = x[j - 1]
    if not (lo_lvl <= v and v <= hi_lvl):
        return False
    qv = v / res
    qu = (u if (lo_lvl <= u and u <= hi_lvl) else 0.0) / res
    # math.floor of the same finite double as an integer == np.floor as a double
    return qv != math.inf and qu != math.inf and np.floor(qv) == np.floor(qu)


@njit(cache=True)
def _seed(ts, x, j, w0, e, span, span_gap, lo_lvl, hi_lvl, max_slope):  # pragma: no cover - compiled
    """``_flags_few``'s seed: |slope over slope_span| > max_slope at sample ``j`` of the window [w0, e)."""
    jb = _right(ts, w0, e, ts[j] - span) - 1
    if jb < w0:
        return False
    dt = ts[j] - ts[jb]
    v = x[j]
    u = x[jb]
    if not (0 < dt and dt <= span_gap and lo_lvl <= v and v <= hi_lvl and lo_lvl <= u and u <= hi_lvl):
        return False
    return abs((v - u) / dt) > max_slope


@njit(cache=True)
def _flags_few(r, i0, i1, n, TS, X, FLAG, SEED, IN, P):  # pragma: no cover - compiled
    """``EdaPreprocessor._flags_few(i0, i1)`` of row ``r``, written into ``FLAG[r, i0:i1]``.

    The motion seeds are worked out into ``SEED[r]`` as that method works them out (``IN[r, I_SEED]`` of them).
    """
    ts = TS[r]
    x = X[r]
    look = P[P_LOOK]
    lo_lvl, hi_lvl, res = P[P_LO], P[P_HI], P[P_RES]
    gap, flat_s, pad, span = P[P_GAP], P[P_FLAT], P[P_PAD], P[P_SPAN]
    span_gap = P[P_SPAN] + P[P_GAP]
    max_slope = P[P_SLOPE]
    w0 = max(_right(ts, 0, n, ts[i0] - look) - 1, 0)
    e = n
    if i1 < e and ts[e - 1] > ts[i1 - 1] + look:
        e = min(_right(ts, 0, n, ts[i1 - 1] + look) + 1, e)
    seeds = SEED[r]
    for i in range(i0, i1):
        ti = ts[i]
        v = x[i]
        if not (lo_lvl <= v and v <= hi_lvl):
            FLAG[r, i] = ELECTRODE_OFF
            continue
        first = i
        while ti - ts[first] < flat_s and _step_ok(ts, x, first, w0, gap, lo_lvl, hi_lvl, res):
            first -= 1
        t_first = ts[first]
        last = i
        while ts[last] - t_first < flat_s and last + 1 < e and _step_ok(ts, x, last + 1, w0, gap, lo_lvl, hi_lvl,
                                                                         res):
            last += 1
        if ts[last] - t_first >= flat_s:
            FLAG[r, i] = ELECTRODE_OFF
            continue
        lo = _left(ts, w0, e, ti - pad)
        hi = _right(ts, w0, e, ti + pad)
        ns = IN[r, I_SEED]
        if ns < lo:
            for j in range(ns, lo):
                seeds[j] = 0
            ns = lo
        for j in range(ns, hi):
            seeds[j] = 1 if _seed(ts, x, j, w0, e, span, span_gap, lo_lvl, hi_lvl, max_slope) else 0
        if hi > ns:
            ns = hi
        IN[r, I_SEED] = ns
        code = OK
        for j in range(lo, hi):
            if seeds[j]:
                code = MOTION
                break
        FLAG[r, i] = code


@njit(cache=True)
def _clean_few(r, i0, i1, TS, X, FLAG, LVL, TON, Q, IN, F, P):  # pragma: no cover - compiled
    """``EdaPreprocessor._clean_few(i0, i1)`` of row ``r`` (no motion sample among them).

    Level, tonic and codes go into ``LVL``, ``TON``, ``Q`` at [i0, i1), the filter states into ``F``.
    """
    gap = P[P_GAP]
    b0, b1, b2, a1, a2 = P[P_SOS], P[P_SOS + 1], P[P_SOS + 2], P[P_SOS + 4], P[P_SOS + 5]
    c0, c1, c2, d1, d2 = P[P_TSOS], P[P_TSOS + 1], P[P_TSOS + 2], P[P_TSOS + 4], P[P_TSOS + 5]
    hz = IN[r, I_HASZ] != 0
    z0, z1, tz0, tz1 = F[r, F_Z0], F[r, F_Z1], F[r, F_TZ0], F[r, F_TZ1]
    prev = F[r, F_LCLEAN]
    for j in range(i0, i1):
        t = TS[r, j]
        xv = X[r, j]
        c = FLAG[r, j]
        lv = math.nan
        tv = math.nan
        if c != OK:
            hz = False
        else:
            if t - prev > gap or not hz:  # a restart (timestamp gap), or the first valid
                z0, z1 = P[P_ZU] * xv, P[P_ZU + 1] * xv
                tz0, tz1 = P[P_TZU] * xv, P[P_TZU + 1] * xv
                hz = True
            yv = b0 * xv + z0
            z0 = b1 * xv - a1 * yv + z1
            z1 = b2 * xv - a2 * yv
            lv = yv
            yv = c0 * xv + tz0
            tz0 = c1 * xv - d1 * yv + tz1
            tz1 = c2 * xv - d2 * yv
            tv = yv
        prev = t
        LVL[r, j] = lv
        TON[r, j] = tv
        Q[r, j] = c
    IN[r, I_HASZ] = 1 if hz else 0
    F[r, F_Z0], F[r, F_Z1], F[r, F_TZ0], F[r, F_TZ1] = z0, z1, tz0, tz1
    F[r, F_LCLEAN] = prev


@njit(cache=True)
def eda_pull(rows, until, k_last, origin, fs, N, LAST, TS, X, FLAG, LVL, TON, Q, SEED, IN, F, P, vals, quals,
             status):  # pragma: no cover - compiled
    """``pull_scalar(until)`` of the EDA rows ``rows`` (see the module notes); ``k_last`` the last grid index due.

    Per row: ``status`` :data:`NOTHING` (no grid sample due), :data:`ONE` (``vals``, ``quals`` hold it) or
    :data:`FALLBACK`. The buffers of a row are compacted (``EdaPreprocessor._trim``'s rule) once more than half full.
    """
    few = int(P[P_FEW])
    cap = TS.shape[1]
    for r in rows:
        k0 = IN[r, I_NEXT]
        m = k_last - k0 + 1
        if m > 1:
            status[r] = FALLBACK
            continue
        ku = F[r, F_KNOWN]
        if LAST[r] > ku:  # (the pushes' known_until)
            ku = LAST[r]
            F[r, F_KNOWN] = ku
        if until > ku:
            ku = until
        ts = TS[r]
        n = N[r]
        n_flag = IN[r, I_FLAG]
        final = ku - P[P_LOOK]
        f1 = n_flag
        if n_flag < n and ts[n_flag] <= final:
            if n_flag + 1 == n or ts[n_flag + 1] > final:
                f1 = n_flag + 1
            else:
                f1 = _right(ts, 0, n, final)
        if f1 - n_flag > few:
            status[r] = FALLBACK  # the array code flags them: nothing changed yet
            continue
        F[r, F_KNOWN] = ku
        if f1 > n_flag:
            _flags_few(r, n_flag, f1, n, TS, X, FLAG, SEED, IN, P)
            n_flag = f1
            IN[r, I_FLAG] = f1
        n_clean = IN[r, I_CLEAN]
        if n_clean < n_flag:
            done = final - P[P_BRIDGE]
            if ts[n_clean] <= done:
                if ts[n_flag - 1] <= done:
                    c1 = n_flag
                else:
                    c1 = min(_right(ts, 0, n, done), n_flag)
                motion = c1 - n_clean > few
                for j in range(n_clean, c1):
                    if FLAG[r, j] == MOTION:
                        motion = True
                if motion:  # the array code cleans them (flags are final: a pull from here flags nothing more)
                    status[r] = FALLBACK
                    continue
                _clean_few(r, n_clean, c1, TS, X, FLAG, LVL, TON, Q, IN, F, P)
                n_clean = c1
                IN[r, I_CLEAN] = c1
        if m <= 0:
            status[r] = NOTHING
        else:
            tt = origin + k0 / fs
            v = math.nan
            q = NO_DATA
            if n_clean:
                b = min(_left(ts, 0, n, tt), n_clean)
                a = b - 1
                if b < n_clean and ts[b] == tt:
                    a = min(_right(ts, 0, n, tt), n_clean) - 1
                ai = max(a, 0)
                bi = min(b, n_clean - 1)
                ta = ts[ai]
                tb = ts[bi]
                ok = a >= 0 and b < n_clean and (tb - ta) <= P[P_GAP]
                qa = Q[r, ai]
                qb = Q[r, bi]
                va = qa == OK or qa == CORRECTED
                vb = qb == OK or qb == CORRECTED
                if ok and va and vb:
                    span = tb - ta
                    w = (tt - ta) / span if span > 0 else 0.0
                    la = LVL[r, ai]
                    v = la + w * (LVL[r, bi] - la)
                    q = max(qa, qb)
                elif ok:
                    q = qa if not va else qb
            vals[r] = v
            quals[r] = q
            IN[r, I_NEXT] = k0 + 1
            status[r] = ONE
            if n_clean and 2 * n > cap:  # EdaPreprocessor._trim(tt)
                ref = min(tt, ts[min(n_clean, n - 1)])
                d = min(_left(ts, 0, n, ref - P[P_HIST]), n_clean)
                if d > 0:
                    keep = n - d
                    for j in range(keep):
                        TS[r, j] = TS[r, j + d]
                        X[r, j] = X[r, j + d]
                        FLAG[r, j] = FLAG[r, j + d]
                        LVL[r, j] = LVL[r, j + d]
                        TON[r, j] = TON[r, j + d]
                        Q[r, j] = Q[r, j + d]
                        SEED[r, j] = SEED[r, j + d]
                    N[r] = keep
                    IN[r, I_FLAG] -= d
                    IN[r, I_CLEAN] -= d
                    IN[r, I_SEED] = max(IN[r, I_SEED] - d, 0)


@njit(cache=True)
def hr_pull(rows, until, k_last, origin, fs, N, LAST, TS, X, IN, F, P, vals, quals,
            status):  # pragma: no cover - compiled
    """``pull_scalar(until)`` of the device heart-rate rows ``rows`` (``HeartPreprocessor``, ``kind="hr"``).

    Per row ``status`` :data:`NOTHING`, :data:`ONE` (``vals``, ``quals``) or :data:`FALLBACK` (see
    :func:`eda_pull`). The samples no later grid time needs are dropped as ``_hr_at`` drops them.
    """
    max_gap, hr_min, hr_max, date_back = P[H_GAP], P[H_MIN], P[H_MAX], P[H_BACK]
    for r in rows:
        k0 = IN[r, I_NEXT]
        m = k_last - k0 + 1
        if m > 1:
            status[r] = FALLBACK
            continue
        if LAST[r] > F[r, F_KNOWN]:  # (the pushes' known_until)
            F[r, F_KNOWN] = LAST[r]
        if until > F[r, F_KNOWN]:
            F[r, F_KNOWN] = until
        if m <= 0:
            status[r] = NOTHING
            continue
        tt = origin + k0 / fs
        n = N[r]
        v = math.nan
        q = NO_DATA
        if n:
            ts = TS[r]
            b = _left(ts, 0, n, tt)
            a = b - 1
            if b < n and ts[b] == tt:
                a = _right(ts, 0, n, tt) - 1
            ai = max(a, 0)
            bi = min(b, n - 1)
            ta = ts[ai]
            tb = ts[bi]
            keep = _left(ts, 0, n, tt - max_gap)
            ok = a >= 0 and b < n and (tb - ta) <= max_gap
            xa = X[r, ai]
            xb = X[r, bi]
            finite_a = math.isfinite(xa)
            plaus_a = finite_a and hr_min <= xa and xa <= hr_max
            finite = finite_a and math.isfinite(xb)
            plaus = plaus_a and finite and hr_min <= xb and xb <= hr_max
            if ok and plaus:
                span = tb - ta
                w = (tt - ta) / span if span > 0 else 0.0
                v = xa + w * (xb - xa)
                q = OK
            elif ok and finite:
                q = IMPLAUSIBLE
            elif date_back > 0 and not ok and a >= 0 and tt - ta <= date_back and finite_a:
                if plaus_a:
                    v = xa
                    q = OK
                else:
                    q = IMPLAUSIBLE
            if keep > 1:
                d = keep - 1
                for j in range(n - d):
                    TS[r, j] = TS[r, j + d]
                    X[r, j] = X[r, j + d]
                N[r] = n - d
        vals[r] = v
        quals[r] = q
        IN[r, I_NEXT] = k0 + 1
        status[r] = ONE
