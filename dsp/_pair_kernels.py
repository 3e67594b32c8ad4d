"""Compiled (numba) step of every pair of a large group at once: :mod:`attune_monitor.dsp.pair_bank`'s kernel.

Imported only by :class:`attune_monitor.dsp.pair_bank.PairBank` (large groups; it imports numba at module level,
so a dyad never loads this module). Each function is the array form of a method of
:class:`attune_monitor.dsp.detector.PairMachine` / :class:`~attune_monitor.dsp.detector.ModalityTrack` (named in
its docstring) with the same arithmetic in the same order, so that the results are bitwise equal:

* Python's ``x ** 2`` of a float is libm's ``pow(x, 2.0)``, which differs from ``x * x`` in about one case in a
  thousand; here it is ``x ** prm[TWO]`` with the exponent 2.0 passed at run time, so the compiled code calls
  the same ``pow`` instead of folding it into a product.
* ``math.atanh`` and ``math.sqrt`` are libm's in both.
* the trimmed mean that arms a track is computed here by sorting (what arms the track depends only on the
  running sums); its value is replaced by :func:`attune_monitor.dsp.detector.trim_mean` of the same span by the
  caller (record :data:`K_ARMED`) before anything reads it.

Layout (see :class:`~attune_monitor.dsp.pair_bank.PairBank`): ``PF`` (n_pairs, NPF) float pair fields,
``PI`` (n_pairs, NPI) int pair fields, ``EPM`` (n_pairs, n_mod) the open draft's modalities in order of entry,
``TF`` (n_pairs, n_mod, NTF) float track fields, ``TI`` (n_pairs, n_mod, NTI) int track fields, ``ARM``
(n_pairs, n_mod, maxlen, 3) the arming spans as ring buffers (oldest at ``TI[..., J_HEAD]``). ``None`` of the
Python objects is NaN here (every such field holds a session time, never NaN otherwise).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .detector import normal_isf

# explicit signatures (C-contiguous arrays; strings, evaluated by numba in ``numba.types``): each function is
# compiled once, at import (or loaded from numba's cache), never once more per literal argument
# (``_set(p, S_PR, ...)``), which tripled the cold compile
A1f, A2f, A3f, A4f = "float64[::1]", "float64[:, ::1]", "float64[:, :, ::1]", "float64[:, :, :, ::1]"
A1i, A2i, A3i = "int64[::1]", "int64[:, ::1]", "int64[:, :, ::1]"
A1b = "boolean[::1]"
f8, i8, b1 = "float64", "int64", "boolean"


def _sig(ret: str, *args: str) -> str:
    """A numba signature string, ``ret(args...)``."""
    return f"{ret}({', '.join(args)})"


# pair fields (float)
P_SINCE, P_EV, P_RUN, P_LOW, P_DROP, P_SDROP, P_SAR, P_INC, P_OOT, P_CAND, P_FLOOR, P_HSCALE = range(12)
E_ONSET, E_FLAG, E_NADIR_S, E_NADIR = range(12, 16)
NPF = 16
# pair fields (int)
I_STATE, I_HASEP, I_NMODS = range(3)
NPI = 3
# track fields (float): valid_s, baseline, first baseline, chance z, chance sd, z, smoothed z, drop, guard,
# last valid t, arming excess and its standard error, the five running sums of the arming span, testable since,
# the standard errors the last test needed
T_VALID, T_BASE, T_FIRST, T_CZ, T_CSD, T_Z, T_SZ, T_DROP, T_GUARD, T_LASTV, T_EXC, T_SE = range(12)
T_S0 = 12
T_TEST, T_NEED = 17, 18
NTF = 19
# track fields (int): just calibrated, arming span ever full, ring head, ring length, used this step
J_JUST, J_FULL, J_HEAD, J_LEN, J_USED = range(5)
NTI = 5

# state codes: the index in detector.STATES
S_CAL, S_NIT, S_OOT, S_ATT, S_DRIFT, S_PR, S_REP, S_REPD = range(8)

# record kinds (rec_i columns: kind, pair, a, b, c, d; rec_f: t, x, y)
K_STATE, K_RUPTURE, K_REPAIRED, K_LAPSED, K_INTERRUPTED, K_ARMED = range(6)
NRI, NRF = 6, 3

# config vector
(C_STEP, C_WINDOW, C_A_SMOOTH, C_A_BASE, C_A_CHANCE, C_GUARD, C_MIN_MARGIN, C_ARM_MIN, C_ARM_SIGMA, C_TRIM,
 C_DROP_CLIP, C_Z_SD, C_REF_SD, C_SINGLE_H, C_LEARNED, C_AR_EVIDENCE, C_CUSUM_K, C_CUSUM_H, C_AR_FLOOR,
 C_AR_CLIP, C_AR_K, C_AR_H, C_AR_IN_TUNE, C_AR_RUPTURE, C_L_CLIP, C_L_K, C_L_GATE, C_THRESHOLD, C_DRIFT,
 C_ONSET_FRAC, C_LEARN_EV, C_MIN_REPAIRED, C_REPAIR, C_REPAIRED, C_RELAPSE, C_REPAIR_DELAY, C_ONSET_DELAY,
 C_LAPSE, C_CAP_DOWN, C_CAP_UP, C_TIE_H, C_TWO, C_MULTI, C_ARMING, C_ARM_TAIL, C_ARM_SPAN) = range(46)
N_PRM = 46


@njit(_sig(i8, A2i, A2f, i8, i8, i8, i8, i8, f8, f8, f8), cache=True)
def _emit(rec_i, rec_f, n, kind, p, a, b, t, x, y):  # pragma: no cover - compiled
    if n < rec_i.shape[0]:
        rec_i[n, 0] = kind
        rec_i[n, 1] = p
        rec_i[n, 2] = a
        rec_i[n, 3] = b
        rec_i[n, 4] = -1
        rec_i[n, 5] = -1
        rec_f[n, 0] = t
        rec_f[n, 1] = x
        rec_f[n, 2] = y
    return n + 1


@njit(_sig(i8, i8, i8, f8, A2f, A2i, A2i, A2f, i8), cache=True)
def _set(p, state, t, PF, PI, rec_i, rec_f, n):  # pragma: no cover - compiled
    """``PairMachine._set``."""
    prev = PI[p, I_STATE]
    if state != prev:
        n = _emit(rec_i, rec_f, n, K_STATE, p, state, prev, t, math.nan, math.nan)
        PI[p, I_STATE] = state
        PF[p, P_SINCE] = t
    return n


@njit(_sig(f8, f8), cache=True)
def _fisher(r):  # pragma: no cover - compiled
    """``detector._fisher``."""
    if -0.999 > r:
        r = -0.999
    if 0.999 < r:
        r = 0.999
    return math.atanh(r)


@njit(_sig("void", i8, i8, f8, A3f, A3i, b1), cache=True)
def _reset(p, m, clean_from, TF, TI, arming):  # pragma: no cover - compiled
    """``ModalityTrack.reset``."""
    if arming:
        TF[p, m, T_BASE] = math.nan
        TI[p, m, J_HEAD] = 0
        TI[p, m, J_LEN] = 0
        for k in range(5):
            TF[p, m, T_S0 + k] = 0.0
        TF[p, m, T_EXC] = math.nan
        TF[p, m, T_SE] = math.nan
        TF[p, m, T_NEED] = math.nan
    g = TF[p, m, T_GUARD]
    TF[p, m, T_GUARD] = clean_from if clean_from > g else g
    TF[p, m, T_DROP] = math.nan


@njit(_sig(f8, i8, i8, A3f), cache=True)
def _margin(p, m, TF):  # pragma: no cover - compiled
    """``ModalityTrack.margin``."""
    c = TF[p, m, T_CZ]
    return TF[p, m, T_BASE] - (c if math.isfinite(c) else 0.0)


@njit(_sig(f8, i8, i8, A3f, A1f), cache=True)
def _spread_factor(p, m, TF, prm):  # pragma: no cover - compiled
    """``ModalityTrack.spread_factor``."""
    sd = TF[p, m, T_CSD]
    if not math.isfinite(sd) or sd <= prm[C_REF_SD]:
        return 1.0
    return (prm[C_REF_SD] / sd) ** prm[C_TWO]


@njit(_sig("void", i8, i8, f8, f8, f8, A3f, A3i, A4f), cache=True)
def _arm_push(p, m, z, cz, sdz, TF, TI, ARM):  # pragma: no cover - compiled
    """``ModalityTrack._arm_push`` on the ring buffer."""
    L = ARM.shape[2]
    head, ln = TI[p, m, J_HEAD], TI[p, m, J_LEN]
    if ln == L:
        oz, ocz, osd = ARM[p, m, head, 0], ARM[p, m, head, 1], ARM[p, m, head, 2]
        TF[p, m, T_S0] -= oz - ocz
        TF[p, m, T_S0 + 1] -= oz
        TF[p, m, T_S0 + 2] -= oz * oz
        if osd == osd:
            TF[p, m, T_S0 + 3] -= osd
            TF[p, m, T_S0 + 4] -= 1.0
        slot = head
        TI[p, m, J_HEAD] = (head + 1) % L
    else:
        slot = (head + ln) % L
        TI[p, m, J_LEN] = ln + 1
    ARM[p, m, slot, 0] = z
    ARM[p, m, slot, 1] = cz
    ARM[p, m, slot, 2] = sdz
    TF[p, m, T_S0] += z - cz
    TF[p, m, T_S0 + 1] += z
    TF[p, m, T_S0 + 2] += z * z
    if sdz == sdz:
        TF[p, m, T_S0 + 3] += sdz
        TF[p, m, T_S0 + 4] += 1.0


@njit(_sig("UniTuple(float64, 2)", i8, i8, A3f, A3i, A1f), cache=True)
def _arm_stats(p, m, TF, TI, prm):  # pragma: no cover - compiled
    """``ModalityTrack._arm_stats``."""
    n = TI[p, m, J_LEN]
    step, window = prm[C_STEP], prm[C_WINDOW]
    wmax = step if step > window else window
    x = n * step / wmax
    n_indep = x if x > 1.0 else 1.0
    s1, s2, s3, s4 = TF[p, m, T_S0 + 1], TF[p, m, T_S0 + 2], TF[p, m, T_S0 + 3], TF[p, m, T_S0 + 4]
    if s4 > 0.5:
        spread = s3 / s4
    else:
        v = s2 / n - (s1 / n) ** prm[C_TWO]
        v = 0.0 if 0.0 > v else v
        r = math.sqrt(v)
        spread = 0.1 if 0.1 > r else r
    return TF[p, m, T_S0] / n, spread / math.sqrt(n_indep)


#: ``detector.normal_isf`` compiled as it is (the same arithmetic in the same order: bitwise equal thresholds)
_normal_isf = njit(_sig(f8, f8), cache=True)(normal_isf)


@njit(_sig(f8, i8, i8, f8, A3f, A1f), cache=True)
def _arm_threshold(p, m, t, TF, prm):  # pragma: no cover - compiled
    """``ModalityTrack.arm_threshold``."""
    u = t - TF[p, m, T_TEST]
    tail = prm[C_ARM_TAIL]
    sigma = prm[C_ARM_SIGMA]
    if not u > 0.0 or tail != tail:
        return sigma
    z = _normal_isf(tail / (1.0 + u / prm[C_ARM_SPAN]))
    return z if z > sigma else sigma


@njit(_sig(f8, i8, i8, A3i, A4f, f8), cache=True)
def _trim_mean_sorted(p, m, TI, ARM, proportiontocut):  # pragma: no cover - compiled
    """The trimmed mean of the arming span's z (by sorting; the caller replaces it by ``trim_mean``'s)."""
    L = ARM.shape[2]
    n = TI[p, m, J_LEN]
    head = TI[p, m, J_HEAD]
    a = np.empty(n)
    for k in range(n):
        a[k] = ARM[p, m, (head + k) % L, 0]
    a.sort()
    lo = int(proportiontocut * n)
    hi = n - lo
    if hi <= lo:
        return math.nan
    s = 0.0
    for k in range(lo, hi):
        s += a[k]
    return s / (hi - lo)


@njit(_sig("Tuple((float64, int64))", i8, i8, f8, f8, f8, f8, A1f, A3f, A3i, A4f, A2i, A2f, i8), cache=True)
def _track_step(p, m, t, sync, chance, chance_sd, prm, TF, TI, ARM, rec_i, rec_f, n):  # pragma: no cover
    """``ModalityTrack.step`` (with arming); returns (drop, number of records)."""
    a_ch = prm[C_A_CHANCE]
    if math.isfinite(chance_sd):
        cs = TF[p, m, T_CSD]
        TF[p, m, T_CSD] = chance_sd if not math.isfinite(cs) else cs + a_ch * (chance_sd - cs)
    lv = TF[p, m, T_LASTV]
    gap = lv == lv and t - lv > 2 * prm[C_STEP]
    if not math.isfinite(sync):
        TF[p, m, T_Z] = math.nan
        TF[p, m, T_DROP] = math.nan
        return math.nan, n
    if gap:
        _reset(p, m, t + prm[C_GUARD], TF, TI, True)
    TF[p, m, T_LASTV] = t
    z = _fisher(sync)
    TF[p, m, T_Z] = z
    c = _fisher(chance) if math.isfinite(chance) else math.nan
    if math.isfinite(c):
        old = TF[p, m, T_CZ]
        TF[p, m, T_CZ] = c if not math.isfinite(old) else old + a_ch * (c - old)
    sz = TF[p, m, T_SZ]
    TF[p, m, T_SZ] = z if not math.isfinite(sz) else sz + prm[C_A_SMOOTH] * (z - sz)
    TF[p, m, T_VALID] += prm[C_STEP]
    if t < TF[p, m, T_GUARD]:
        TF[p, m, T_DROP] = math.nan
        return math.nan, n
    cz = c if math.isfinite(c) else TF[p, m, T_CZ]
    if math.isfinite(c) and math.isfinite(chance_sd):
        sdz = _fisher(chance + chance_sd) - c
    else:
        csd = TF[p, m, T_CSD]
        sdz = csd if math.isfinite(csd) else math.nan
    _arm_push(p, m, z, cz if math.isfinite(cz) else 0.0, sdz, TF, TI, ARM)
    full = TI[p, m, J_LEN] == ARM.shape[2]
    calibrating = not math.isfinite(TF[p, m, T_BASE])
    if full and calibrating:
        TI[p, m, J_FULL] = 1
        if TF[p, m, T_TEST] != TF[p, m, T_TEST]:
            TF[p, m, T_TEST] = t
        ex, se = _arm_stats(p, m, TF, TI, prm)
        TF[p, m, T_EXC] = ex
        TF[p, m, T_SE] = se
        TF[p, m, T_NEED] = _arm_threshold(p, m, t, TF, prm)
    if calibrating:
        if full:
            lo, hi = prm[C_ARM_MIN], TF[p, m, T_NEED] * TF[p, m, T_SE]
            if TF[p, m, T_EXC] >= (hi if hi > lo else lo):
                TF[p, m, T_TEST] = math.nan
                TF[p, m, T_BASE] = _trim_mean_sorted(p, m, TI, ARM, prm[C_TRIM])
                first = 0
                if not math.isfinite(TF[p, m, T_FIRST]):
                    TF[p, m, T_FIRST] = TF[p, m, T_BASE]
                    first = 1
                TI[p, m, J_JUST] = 1
                n = _emit(rec_i, rec_f, n, K_ARMED, p, m, first, t, math.nan, math.nan)
        TF[p, m, T_DROP] = math.nan
        return math.nan, n
    margin = _margin(p, m, TF)
    if margin < prm[C_MIN_MARGIN] or t < TF[p, m, T_GUARD]:
        TF[p, m, T_DROP] = math.nan
        return math.nan, n
    d = (TF[p, m, T_BASE] - z) / margin
    TF[p, m, T_DROP] = d
    return d, n


@njit(_sig("void", i8, i8, A3f, A1f), cache=True)
def _learn(p, m, TF, prm):  # pragma: no cover - compiled
    """``ModalityTrack.learn``."""
    b = TF[p, m, T_BASE]
    sz = TF[p, m, T_SZ]
    if math.isfinite(b) and math.isfinite(sz):
        mg = _margin(p, m, TF)
        mm = prm[C_MIN_MARGIN]
        mg = mm if mm > mg else mg
        lo = b - prm[C_CAP_DOWN] * mg
        x = lo if lo > sz else sz
        hi = b + prm[C_CAP_UP] * mg
        target = hi if hi < x else x
        TF[p, m, T_BASE] = b + prm[C_A_BASE] * (target - b)


@njit(_sig(i8, i8, A2f, A3i), cache=True)
def _unarmed_state(p, PF, TI):  # pragma: no cover - compiled
    """``PairMachine._unarmed_state`` (with arming)."""
    if PF[p, P_OOT] == PF[p, P_OOT]:
        return S_OOT
    for m in range(TI.shape[1]):
        if TI[p, m, J_FULL]:
            return S_NIT
    return S_CAL


@njit(_sig(f8, i8, A2f), cache=True)
def _severity(p, PF):  # pragma: no cover - compiled
    """``PairMachine.severity``."""
    sd, sa = PF[p, P_SDROP], PF[p, P_SAR]
    if math.isfinite(sd):
        if math.isfinite(sa):
            return sa if sa > sd else sd
        return sd
    return sa if math.isfinite(sa) else math.nan


@njit(_sig(i8, i8, A2i, A2i), cache=True)
def _dropping(person, pairs_of, PI):  # pragma: no cover - compiled
    """How many of ``person``'s pairs are drifting, in a possible rupture or repairing (for ``_who``)."""
    k = 0
    for j in range(pairs_of.shape[1]):
        s = PI[pairs_of[person, j], I_STATE]
        if s == S_DRIFT or s == S_PR or s == S_REP:
            k += 1
    return k


@njit(_sig(i8, i8, f8, i8, A2f, A2i, A2i, A3i, A1i, A1i, A2i, A1f, A2i, A2f, i8), cache=True)
def _flag(p, t, who, PF, PI, EPM, TI, pa, pb, pairs_of, prm, rec_i, rec_f, n):  # pragma: no cover - compiled
    """``PairMachine.flag``; ``who`` a person index or -1."""
    onset = math.nan
    for x in (PF[p, P_RUN], PF[p, P_LOW], t - 1e9):
        if x == x and (onset != onset or x > onset):
            onset = x
    onset = onset - prm[C_ONSET_DELAY]
    fl = PF[p, P_FLOOR]
    onset = fl if fl > onset else onset
    PI[p, I_HASEP] = 1
    PF[p, E_ONSET] = onset
    PF[p, E_FLAG] = t
    PF[p, E_NADIR_S] = t
    PF[p, E_NADIR] = _severity(p, PF)
    k = 0
    for m in range(TI.shape[1]):
        if TI[p, m, J_USED]:
            EPM[p, k] = m
            k += 1
    PI[p, I_NMODS] = k
    at = n
    n = _emit(rec_i, rec_f, n, K_RUPTURE, p, who, -1, t, onset, math.nan)
    n = _set(p, S_PR, t, PF, PI, rec_i, rec_f, n)
    if who < 0 and at < rec_i.shape[0]:  # who is disconnecting, as the detector will ask (states as of now)
        rec_i[at, 4] = _dropping(pa[p], pairs_of, PI)
        rec_i[at, 5] = _dropping(pb[p], pairs_of, PI)
    return n


@njit(_sig(i8, i8, f8, i8, f8, f8, A2f, A2i, A3f, A3i, A1f, A2i, A2f, i8), cache=True)
def _close_unarmed(p, t, state, since, clean_from, PF, PI, TF, TI, prm, rec_i, rec_f, n):  # pragma: no cover
    """``PairMachine._close_unarmed`` (with arming; ``since`` NaN: None)."""
    PI[p, I_HASEP] = 0
    PF[p, P_EV] = 0.0
    PF[p, P_RUN] = math.nan
    PF[p, P_CAND] = math.nan
    PF[p, P_SDROP] = math.nan
    PF[p, P_SAR] = math.nan
    for m in range(TF.shape[1]):
        _reset(p, m, clean_from, TF, TI, True)
    PF[p, P_FLOOR] = clean_from
    if since == since:
        PF[p, P_OOT] = since
    return _set(p, state, t, PF, PI, rec_i, rec_f, n)


@njit(_sig(i8, i8, f8, A2f, A2f, A2f, b1, f8, f8, A1f, A1f, A2f, A2i, A2i, A3f, A3i, A4f, A1i, A1i, A2i, A1f, A1f,
       A2i, A2f, i8), cache=True)
def _pair_step(p, t, sync, chance, chance_sd, blocked, arousal, llr, prm, weights, PF, PI, EPM, TF, TI, ARM,
               pa, pb, pairs_of, drops, ws, rec_i, rec_f, n):  # pragma: no cover - compiled
    """``PairMachine.step`` (with arming)."""
    n_mod = TF.shape[1]
    n_used = 0
    clip = prm[C_DROP_CLIP]
    for m in range(n_mod):
        d, n = _track_step(p, m, t, sync[p, m], chance[p, m], chance_sd[p, m], prm, TF, TI, ARM, rec_i, rec_f, n)
        if d == d:
            TI[p, m, J_USED] = 1
            low = -clip if -clip > d else d
            drops[n_used] = clip if clip < low else low
            ws[n_used] = weights[m] * (_margin(p, m, TF) / prm[C_Z_SD]) ** prm[C_TWO] * _spread_factor(p, m, TF, prm)
            n_used += 1
        else:
            TI[p, m, J_USED] = 0
    learned = prm[C_LEARNED] != 0.0
    PF[p, P_INC] = math.nan
    state = PI[p, I_STATE]
    if (state == S_PR or state == S_REP) and PI[p, I_HASEP] and t - PF[p, E_ONSET] >= prm[C_LAPSE]:
        n = _emit(rec_i, rec_f, n, K_LAPSED, p, -1, -1, t, t, math.nan)
        return _close_unarmed(p, t, S_OOT, PF[p, E_ONSET], t, PF, PI, TF, TI, prm, rec_i, rec_f, n)
    if blocked:
        PF[p, P_DROP] = math.nan
        PF[p, P_FLOOR] = t
        if not (state == S_PR or state == S_REP):
            PF[p, P_EV] = 0.0
            PF[p, P_RUN] = math.nan
            for m in range(n_mod):
                _reset(p, m, t, TF, TI, True)
            n = _set(p, _unarmed_state(p, PF, TI), t, PF, PI, rec_i, rec_f, n)
        return n
    armed = False
    for m in range(n_mod):
        if TF[p, m, T_BASE] == TF[p, m, T_BASE]:
            armed = True
            break
    if state == S_CAL or state == S_NIT or state == S_OOT:
        if armed:
            n = _set(p, S_ATT, t, PF, PI, rec_i, rec_f, n)
            PF[p, P_OOT] = math.nan
            PF[p, P_EV] = 0.0
            PF[p, P_RUN] = math.nan
            PF[p, P_FLOOR] = t
        else:
            n = _set(p, _unarmed_state(p, PF, TI), t, PF, PI, rec_i, rec_f, n)
            PF[p, P_DROP] = math.nan
            return n
    elif not armed and (state == S_ATT or state == S_DRIFT or state == S_REPD):
        PF[p, P_EV] = 0.0
        PF[p, P_RUN] = math.nan
        n = _set(p, _unarmed_state(p, PF, TI), t, PF, PI, rec_i, rec_f, n)
        PF[p, P_DROP] = math.nan
        return n
    arousal_counts = learned or prm[C_AR_EVIDENCE] != 0.0
    has_arousal = math.isfinite(arousal) and arousal_counts
    if n_used == 0 and not has_arousal:
        PF[p, P_DROP] = math.nan
        return n
    a_sm = prm[C_A_SMOOTH]
    step = prm[C_STEP]
    inc = 0.0
    if n_used > 0:
        sw = 0.0
        for k in range(n_used):
            sw += ws[k]
        swd = 0.0
        for k in range(n_used):
            swd += ws[k] * drops[k]
        D = swd / sw
        gain = sw / n_used
        if n_used < 2 and prm[C_MULTI] != 0.0:
            gain /= prm[C_SINGLE_H]
        PF[p, P_DROP] = D
        sd = PF[p, P_SDROP]
        PF[p, P_SDROP] = D if not math.isfinite(sd) else sd + a_sm * (D - sd)
        if not learned:
            inc += gain * (D - prm[C_CUSUM_K]) * step
    else:
        PF[p, P_DROP] = math.nan
    if has_arousal:
        if not learned:
            fl, cl = prm[C_AR_FLOOR], prm[C_AR_CLIP]
            la = fl if fl > arousal else arousal
            la = cl if cl < la else la
            inc += prm[C_CUSUM_H] * (la - prm[C_AR_K]) / prm[C_AR_H] * step
        a = (arousal - prm[C_AR_IN_TUNE]) / (prm[C_AR_RUPTURE] - prm[C_AR_IN_TUNE])
        a = -clip if -clip > a else a
        a = clip if clip < a else a
        sa = PF[p, P_SAR]
        PF[p, P_SAR] = a if not math.isfinite(sa) else sa + a_sm * (a - sa)
    if learned:
        spread = 1.0
        first = True
        for m in range(n_mod):
            if TI[p, m, J_USED]:
                f = _spread_factor(p, m, TF, prm)
                if first or f < spread:
                    spread = f
                    first = False
        if math.isfinite(llr) and (n_used > 0 or prm[C_ARMING] == 0.0):
            lc = prm[C_L_CLIP]
            x = -lc if -lc > llr else llr
            x = lc if lc < x else x
            inc = (spread * x - prm[C_L_K]) * step
        else:
            inc = 0.0
        dr = PF[p, P_DROP]
        if prm[C_ARMING] != 0.0 and not (math.isfinite(dr) and dr >= prm[C_L_GATE]):
            inc = 0.0 if 0.0 < inc else inc
    h = PF[p, P_HSCALE] * prm[C_THRESHOLD]
    PF[p, P_INC] = inc
    prev = PF[p, P_EV]
    ev = prev + inc
    cap = 2.0 * h
    ev = ev if ev > 0.0 else 0.0
    ev = cap if cap < ev else ev
    PF[p, P_EV] = ev
    if prev == 0.0 and ev > 0.0:
        PF[p, P_RUN] = t
    if ev <= prm[C_ONSET_FRAC] * h:
        PF[p, P_LOW] = t
    sd = _severity(p, PF)
    state = PI[p, I_STATE]
    if state == S_ATT or state == S_REPD or state == S_DRIFT:
        if ev >= h:
            n = _flag(p, t, -1, PF, PI, EPM, TI, pa, pb, pairs_of, prm, rec_i, rec_f, n)
        elif ev >= prm[C_DRIFT]:
            n = _set(p, S_DRIFT, t, PF, PI, rec_i, rec_f, n)
        elif state == S_DRIFT and ev == 0.0:
            n = _set(p, S_ATT, t, PF, PI, rec_i, rec_f, n)
        elif state == S_REPD and PF[p, P_SINCE] == PF[p, P_SINCE] and t - PF[p, P_SINCE] >= prm[C_MIN_REPAIRED]:
            n = _set(p, S_ATT, t, PF, PI, rec_i, rec_f, n)
        state = PI[p, I_STATE]
        if (state == S_ATT or state == S_REPD or state == S_DRIFT) and ev <= prm[C_LEARN_EV] * h:
            for m in range(n_mod):
                if math.isfinite(TF[p, m, T_DROP]):
                    _learn(p, m, TF, prm)
    elif state == S_PR or state == S_REP:
        if PI[p, I_HASEP]:
            if sd > PF[p, E_NADIR]:
                PF[p, E_NADIR] = sd
                PF[p, E_NADIR_S] = t
            for m in range(n_mod):
                if TI[p, m, J_USED]:
                    known = False
                    for k in range(PI[p, I_NMODS]):
                        if EPM[p, k] == m:
                            known = True
                    if not known and TF[p, m, T_DROP] >= prm[C_REPAIR]:
                        EPM[p, PI[p, I_NMODS]] = m
                        PI[p, I_NMODS] += 1
        if state == S_PR:
            if sd < prm[C_REPAIR]:
                n = _set(p, S_REP, t, PF, PI, rec_i, rec_f, n)
                PF[p, P_CAND] = t if sd < prm[C_REPAIRED] else math.nan
        else:
            if sd >= prm[C_RELAPSE]:
                PF[p, P_CAND] = math.nan
                n = _set(p, S_PR, t, PF, PI, rec_i, rec_f, n)
            elif sd < prm[C_REPAIRED]:
                if PF[p, P_CAND] != PF[p, P_CAND]:
                    PF[p, P_CAND] = t
                cand = PF[p, P_CAND]
                if t - cand >= prm[C_MIN_REPAIRED]:
                    shown = cand - prm[C_REPAIR_DELAY]
                    if PI[p, I_HASEP]:
                        for x in (PF[p, E_FLAG], PF[p, E_NADIR_S]):
                            if x > shown:
                                shown = x
                    n = _emit(rec_i, rec_f, n, K_REPAIRED, p, -1, -1, t, shown, cand)
                    PF[p, P_CAND] = math.nan
                    PI[p, I_HASEP] = 0
                    PF[p, P_EV] = 0.0
                    PF[p, P_RUN] = math.nan
                    PF[p, P_FLOOR] = t
                    n = _set(p, S_REPD, t, PF, PI, rec_i, rec_f, n)
            else:
                PF[p, P_CAND] = math.nan
    return n


@njit(_sig(i8, f8, A2f, A2i, A2i, A3i, A1i, A1i, A2i, A1f, A1f, A2i, A2f, i8), cache=True)
def _ties(t, PF, PI, EPM, TI, pa, pb, pairs_of, tie_ev, prm, rec_i, rec_f, n):  # pragma: no cover - compiled
    """``RuptureDetector._ties``."""
    h = prm[C_TIE_H]
    for i in range(pairs_of.shape[0]):
        s = 0.0
        k = 0
        for j in range(pairs_of.shape[1]):
            q = pairs_of[i, j]
            st = PI[q, I_STATE]
            if (st == S_ATT or st == S_DRIFT or st == S_REPD) and math.isfinite(PF[q, P_INC]):
                s += PF[q, P_INC]
                k += 1
        if k < 2:
            tie_ev[i] = 0.0
            continue
        x = tie_ev[i] + s / k
        x = x if x > 0.0 else 0.0
        cap = 2.0 * h
        tie_ev[i] = cap if cap < x else x
        if tie_ev[i] >= h:
            tie_ev[i] = 0.0
            for j in range(pairs_of.shape[1]):
                q = pairs_of[i, j]
                st = PI[q, I_STATE]
                if st == S_ATT or st == S_DRIFT or st == S_REPD:
                    n = _flag(q, t, i, PF, PI, EPM, TI, pa, pb, pairs_of, prm, rec_i, rec_f, n)
    return n


@njit(_sig(i8, f8, A1f, A2f, A2f, A2f, A1b, A1f, A1f, A1f, A1f, A2f, A2i, A2i, A3f, A3i, A4f, A1i, A1i, A2i, A1f,
       A2i, A2f), cache=True)
def step_all(t, shared_t, sync, chance, chance_sd, blocked, arousal, llr, prm, weights, PF, PI, EPM, TF, TI, ARM,
             pa, pb, pairs_of, tie_ev, rec_i, rec_f):  # pragma: no cover - compiled
    """One time step of every pair: the shared events due, each pair's step, then the person-to-group ties.

    Parameters
    ----------
    t : float
        The step's session time (s).
    shared_t : ndarray, shape (n_shared,)
        Shared events reached at this step (their times, in order); each is ``PairMachine.shared_event`` of
        every pair with ``clean_from = t_event + window_s``.
    sync, chance, chance_sd : ndarray, shape (n_pairs, n_mod)
        This step's windows (NaN where missing).
    blocked : ndarray of bool, shape (n_pairs,)
    arousal, llr : ndarray, shape (n_pairs,)
    prm, weights : ndarray
        The config vector (``C_*``) and each modality's weight.
    PF, PI, EPM, TF, TI, ARM : ndarray
        The bank's state (module docstring), updated in place.
    pa, pb : ndarray of int, shape (n_pairs,)
        Each pair's two people.
    pairs_of : ndarray of int, shape (n_people, n_people - 1), or (0, 0) without ties
        Each person's pairs, ascending.
    tie_ev : ndarray, shape (n_people,)
        The person-to-group ties' evidence, updated in place.
    rec_i, rec_f : ndarray, shape (capacity, NRI), (capacity, NRF)
        The records of what happened, in order.

    Returns
    -------
    int
        The number of records (more than the capacity: they did not fit, the step must be discarded).
    """
    n = 0
    n_pairs = PF.shape[0]
    window = prm[C_WINDOW]
    for e in range(shared_t.shape[0]):
        te = shared_t[e]
        for p in range(n_pairs):
            st = PI[p, I_STATE]
            if (st == S_PR or st == S_REP) and PI[p, I_HASEP]:
                n = _emit(rec_i, rec_f, n, K_INTERRUPTED, p, -1, -1, te, te, math.nan)
            target = S_OOT if PF[p, P_OOT] == PF[p, P_OOT] else S_NIT
            n = _close_unarmed(p, te, target, math.nan, te + window, PF, PI, TF, TI, prm, rec_i, rec_f, n)
    drops = np.empty(TF.shape[1])
    ws = np.empty(TF.shape[1])
    for p in range(n_pairs):
        n = _pair_step(p, t, sync, chance, chance_sd, blocked[p], arousal[p], llr[p], prm, weights, PF, PI, EPM,
                       TF, TI, ARM, pa, pb, pairs_of, drops, ws, rec_i, rec_f, n)
    if pairs_of.shape[0] > 0:
        n = _ties(t, PF, PI, EPM, TI, pa, pb, pairs_of, tie_ev, prm, rec_i, rec_f, n)
    return n
