"""Electrodermal activity (skin conductance, uS) on the common grid, streaming.

Per raw sample, in order:

1. **Electrode off** (ELECTRODE_OFF, NaN, never bridged): conductance below
   ``min_level`` (0.05 uS) or above ``max_level`` (100 uS), non-finite, or
   *flat*: part of a run that stays within one step of ``resolution`` (uS)
   for at least ``flat_s`` (5 s).
2. **Motion** (MOTION): the slope over ``slope_span`` (0.25 s) exceeds
   ``max_slope`` (10 uS/s, well above the steepest skin-conductance responses),
   plus ``pad`` s (0.5 s) either side. A motion stretch whose valid neighbours are
   at most ``bridge`` s (2 s) apart is bridged by a straight line (CORRECTED);
   longer ones stay missing.
3. **Low-pass** (causal Butterworth, ``cutoff`` = 1 Hz or 0.4 x the device
   rate, whichever is lower) gives the level; a second causal low-pass at
   ``tonic_cutoff`` (0.05 Hz, the causal version of NeuroKit's "highpass"
   decomposition) gives the **tonic** level, and **phasic** = level - tonic.
   Both restart (at steady state on the first sample) after any missing stretch.
4. **Resampling** onto the grid: linear interpolation between the two raw
   samples around each grid time, if they are at most ``max_interp_gap`` apart
   (default max(0.5 s, 2.5 / srate)); otherwise NO_DATA.

Each stage looks ahead a fixed time, so the preprocessor has a fixed latency
``max(flat_s, pad + slope_span) + bridge + max_interp_gap`` (about 7.6 s at
4 Hz): slow, as EDA is, and the price of judging flat stretches and bridges
on complete evidence. Chunked input gives the same output as one-shot input.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right

import numpy as np

from attune_monitor.dsp.grid import AppendBuffer, GridBlock, GridPreprocessor, check_positive
from attune_monitor.dsp.iir import lowpass2_sos, sosfilt_1d, sosfilt_zi
from attune_monitor.dsp.quality import Quality

__all__ = ["EdaPreprocessor", "eda_to_grid"]

logger = logging.getLogger(__name__)


# quality codes as plain ints: these run per stream on every live pull, where each Enum attribute costs a
# __getattr__ call (Python 3.11); the arrays get the same uint8 codes
_OK, _CORRECTED, _MOTION, _ELECTRODE_OFF, _NO_DATA = (int(q) for q in (
    Quality.OK, Quality.CORRECTED, Quality.MOTION, Quality.ELECTRODE_OFF, Quality.NO_DATA))


class EdaPreprocessor(GridPreprocessor):
    """Streaming EDA cleaning, tonic/phasic split and resampling to the grid.

    Parameters
    ----------
    fs : float
        Grid rate (Hz).
    origin : float
        Time of grid sample 0 (s, stream time base).
    srate : float
        Nominal device rate (Hz), e.g. 4 (E4), 15 (EmotiBit), 32+ (Shimmer), 100.
    cutoff, tonic_cutoff : float
        Low-pass cut-offs (Hz) of the level and of the tonic component.
    min_level, max_level : float
        Plausible conductance range (uS); outside is ELECTRODE_OFF.
    resolution : float
        Step (uS) by which values are quantised for the flat test; a signal
        that stays within one step for ``flat_s`` is flat.
    flat_s : float
        A flat run this long (s) is ELECTRODE_OFF.
    max_slope : float
        Steepest plausible slope (uS/s); steeper is MOTION.
    slope_span, pad, bridge : float
        Slope time base, motion padding, longest bridged stretch (s).
    max_interp_gap : float | None
        Longest spacing (s) of raw samples interpolated onto the grid.

    Attributes
    ----------
    latency : float
        Seconds; grid sample ``k`` depends only on input up to ``t_k + latency``.
    few_max : int
        Largest number of samples the flag and clean stages finalise with Python scalars (a live pull finalises
        one or two); more go through the array code. Both give the same bits; 0 forces the array code.
    """

    few_max: int = 16

    def __init__(self, fs: float = 4.0, origin: float = 0.0, srate: float | None = None, cutoff: float = 1.0,
                 tonic_cutoff: float = 0.05, min_level: float = 0.05, max_level: float = 100.0,
                 resolution: float = 1e-4, flat_s: float = 5.0, max_slope: float = 10.0, slope_span: float = 0.25,
                 pad: float = 0.5, bridge: float = 2.0, max_interp_gap: float | None = None):
        super().__init__(fs, origin)
        if srate is None:
            raise ValueError("Invalid value for 'srate': the EDA preprocessor needs the device sampling rate in Hz "
                             "(e.g. srate=4 for an Empatica E4), but got None.")
        self.srate = check_positive("srate", srate)
        self.cutoff = check_positive("cutoff", cutoff)
        self.tonic_cutoff = check_positive("tonic_cutoff", tonic_cutoff)
        self.min_level = check_positive("min_level", min_level)
        self.max_level = check_positive("max_level", max_level)
        self.resolution = check_positive("resolution", resolution)
        self.flat_s = check_positive("flat_s", flat_s)
        self.max_slope = check_positive("max_slope", max_slope)
        self.slope_span = check_positive("slope_span", slope_span)
        self.pad = check_positive("pad", pad)
        self.bridge = check_positive("bridge", bridge)
        self.max_interp_gap = (max(0.5, 2.5 / self.srate) if max_interp_gap is None
                               else check_positive("max_interp_gap", max_interp_gap))
        nyq = 0.5 * self.srate
        self.cutoff = min(self.cutoff, 0.4 * self.srate)
        # 2nd-order Butterworth (scipy.signal.butter(2, wn, output="sos"), bitwise, without importing scipy.signal)
        self.sos = lowpass2_sos(self.cutoff / nyq)
        self.tonic_sos = lowpass2_sos(min(self.tonic_cutoff, 0.4 * self.srate) / nyq)
        self._zi_unit, self._tzi_unit = sosfilt_zi(self.sos), sosfilt_zi(self.tonic_sos)
        self._sos_list, self._tonic_sos_list = self.sos.tolist(), self.tonic_sos.tolist()
        self._zi_unit_list, self._tzi_unit_list = self._zi_unit.tolist(), self._tzi_unit.tolist()
        self._look_flags = max(self.flat_s, self.pad + self.slope_span)
        self.latency = self._look_flags + self.bridge + self.max_interp_gap
        self._history = max(self.flat_s, self.bridge, self.pad + self.slope_span) + self.max_interp_gap + 1.0
        # the buffers (self._ts ... are the filled parts of the AppendBuffers)
        self._bufs = {name: AppendBuffer(np.uint8 if name in ("_flag", "_q") else np.float64)
                      for name in ("_ts", "_x", "_flag", "_lvl", "_ton", "_q")}
        self._ts = self._x = self._lvl = self._ton = np.empty(0)  # raw; level and tonic final for [0, n_clean)
        self._flag = self._q = np.empty(0, np.uint8)  # flags final for [0, n_flag); codes for [0, n_clean)
        self._seed: list[bool] = []  # steeper than max_slope, for the first len(_seed) samples (_flags_few)
        self._n_flag = 0
        self._n_clean = 0
        # filter states, (n_sections, 2) as lists (the live path steps them in Python); None = restart at the
        # next valid sample
        self._zi: list | None = None
        self._tzi: list | None = None
        self._last_clean_ts = -np.inf

    # -- input ---------------------------------------------------------------------------------
    def _ingest(self, ts: np.ndarray, x: np.ndarray) -> None:
        self._ts = self._bufs["_ts"].append(ts)
        self._x = self._bufs["_x"].append(x)

    def _advance(self, known_until: float) -> None:
        ts = self._ts
        n = ts.shape[0]
        n_flag = self._n_flag
        final = known_until - self._look_flags
        # f1 = ts.searchsorted(final, side="right") (at least n_flag): f1 > n_flag exactly when the first unflagged
        # sample is final, and f1 = n_flag + 1 when the next one is not (a live pull), without a search
        f1 = n_flag
        if n_flag < n and ts[n_flag] <= final:
            f1 = (n_flag + 1 if n_flag + 1 == n or ts[n_flag + 1] > final
                  else int(ts.searchsorted(final, side="right")))
        few = self.few_max
        if f1 > n_flag:
            i0 = self._n_flag
            if f1 - i0 == 1 and few:  # the live case: one new flag
                self._flag = self._bufs["_flag"].append_one(self._flags_few(i0, f1)[0])
            else:  # (a list of codes or an array: append takes either)
                flags = self._flags_few(i0, f1) if f1 - i0 <= few else self._flags(i0, f1)
                self._flag = self._bufs["_flag"].append(flags)
            self._n_flag = f1
        n_clean = self._n_clean
        if n_clean == self._n_flag:  # nothing flagged is left to clean
            return
        # c1 = min(ts.searchsorted(final - bridge, side="right"), n_flag), the same way: c1 > n_clean exactly when
        # the first uncleaned sample is final, and c1 = n_flag when the last flagged one is
        done = final - self.bridge
        n_flag = self._n_flag
        if ts[n_clean] <= done:
            c1 = n_flag if ts[n_flag - 1] <= done else min(int(ts.searchsorted(done, side="right")), n_flag)
            i0 = self._n_clean
            if c1 - i0 > few or not self._clean_few(i0, c1):
                self._clean(i0, c1)
            self._n_clean = c1

    # -- stage 1: flags ------------------------------------------------------------------------
    def _flags(self, i0: int, i1: int) -> np.ndarray:
        # Only the samples from ``_look_flags`` (+1 s) before ts[i0] can change the flags of [i0, i1): a flat
        # run reaching further back is >= flat_s long whether or not it is cut there, and the slopes of the
        # motion test look back slope_span, padded by pad. Working on that window keeps a live call O(chunk)
        # instead of O(buffer), with the same flags.
        w0 = max(int(np.searchsorted(self._ts, self._ts[i0] - self._look_flags - 1.0, side="right")) - 1, 0)
        ts, x = self._ts[w0:], self._x[w0:]
        i0, i1 = i0 - w0, i1 - w0
        n = ts.size
        off = ~np.isfinite(x) | (x < self.min_level) | (x > self.max_level)
        # flat runs: the value stays in one ADC step (x quantised by the resolution), no timestamp gap;
        # a slow drift crosses steps, a dead or unplugged sensor does not
        level = np.floor(np.where(off, 0.0, x) / self.resolution)
        step_ok = np.zeros(n, bool)
        if n > 1:
            step_ok[1:] = (np.diff(level) == 0) & (np.diff(ts) <= self.max_interp_gap)
        step_ok &= ~off
        run_id = np.cumsum(~step_ok)
        first = np.concatenate(([0], np.flatnonzero(np.diff(run_id)) + 1))  # first index of each run
        last = np.concatenate((first[1:] - 1, [n - 1]))
        length = ts[last] - ts[first]
        flat = length[run_id - run_id[0]] >= self.flat_s
        # motion: slope over slope_span
        j = np.searchsorted(ts, ts - self.slope_span, side="right") - 1
        has = j >= 0
        jj = np.minimum(np.maximum(j, 0), n - 1)
        dt = ts - ts[jj]
        has &= (dt > 0) & (dt <= self.slope_span + self.max_interp_gap) & ~off & ~off[jj]
        with np.errstate(over="ignore", invalid="ignore"):  # absurd values (1e308): an infinite slope is motion
            slope = np.where(has, (x - x[jj]) / np.where(dt > 0, dt, 1.0), 0.0)
        seed = np.abs(slope) > self.max_slope
        cs = np.concatenate(([0], np.cumsum(seed)))
        lo = np.searchsorted(ts, ts[i0:i1] - self.pad, side="left")
        hi = np.searchsorted(ts, ts[i0:i1] + self.pad, side="right")
        motion = (cs[hi] - cs[lo]) > 0
        out = np.full(i1 - i0, _OK, np.uint8)
        out[motion] = _MOTION
        out[(off | flat)[i0:i1]] = _ELECTRODE_OFF
        return out

    def _flags_few(self, i0: int, i1: int) -> list:
        """:meth:`_flags` of a few samples (what a live pull finalises), in Python scalars.

        The same comparisons and arithmetic on the same doubles as the array code, so the same codes, at a cost
        per new sample instead of per sample of the window. The flat run of each sample is followed only until
        it is known to reach ``flat_s`` (the array code measures the whole run; one at least that long is flat
        either way), so nothing further than ``look_flags`` (>= ``flat_s``, ``pad + slope_span``) either side of
        the new samples is looked at: the array code's window, which reaches a second further back, gives the
        same runs and slopes there.

        Parameters
        ----------
        i0, i1 : int
            Buffer indices of the samples whose flags are final, ``i0 < i1``.

        Returns
        -------
        flags : list of int, length i1 - i0
            Quality codes.
        """
        ts_all = self._ts
        look = self._look_flags
        w0 = max(int(ts_all.searchsorted(float(ts_all[i0]) - look, side="right")) - 1, 0)
        # the window's end: the first sample after the last one's look-ahead (the flat run's scan stops there).
        # A pull flags every sample up to known_until - look_flags and known_until >= the last sample, so the
        # unflagged tail is at most look_flags long: without a search, the window ends at the buffer's end.
        e = ts_all.shape[0]
        if i1 < e and float(ts_all[e - 1]) > float(ts_all[i1 - 1]) + look:
            e = min(int(ts_all.searchsorted(float(ts_all[i1 - 1]) + look, side="right")) + 1, e)
        ts, x = ts_all[w0:e].tolist(), self._x[w0:e].tolist()
        n = len(ts)
        lo_lvl, hi_lvl, res = self.min_level, self.max_level, self.resolution
        gap, flat_s, pad, span = self.max_interp_gap, self.flat_s, self.pad, self.slope_span
        span_gap, max_slope = self.slope_span + self.max_interp_gap, self.max_slope

        def step_ok(j: int) -> bool:  # sample j continues the run of j - 1 (never the window's first)
            if j <= 0 or ts[j] - ts[j - 1] > gap:
                return False
            v, u = x[j], x[j - 1]
            if not lo_lvl <= v <= hi_lvl:  # off (NaN fails both comparisons, as ~isfinite)
                return False
            qv, qu = v / res, (u if lo_lvl <= u <= hi_lvl else 0.0) / res
            # the array code's np.diff(np.floor(levels)) == 0: math.floor of the same double is the same integer;
            # a level of inf (an absurd max_level / resolution) differs from everything, inf - inf being NaN
            return qv != math.inf and qu != math.inf and math.floor(qv) == math.floor(qu)

        def seed(j: int) -> bool:  # |slope over slope_span| > max_slope at window sample j (j >= the first lo)
            jb = bisect_right(ts, ts[j] - span) - 1
            if jb < 0:
                return False
            dt = ts[j] - ts[jb]
            v, u = x[j], x[jb]
            if not (0 < dt <= span_gap and lo_lvl <= v <= hi_lvl and lo_lvl <= u <= hi_lvl):
                return False
            return abs((v - u) / dt) > max_slope

        out = [_OK] * (i1 - i0)
        for o, i in enumerate(range(i0 - w0, i1 - w0)):
            ti, v = ts[i], x[i]
            if not lo_lvl <= v <= hi_lvl:
                out[o] = _ELECTRODE_OFF
                continue
            first = i
            while ti - ts[first] < flat_s and step_ok(first):
                first -= 1
            t_first = ts[first]
            last = i
            while ts[last] - t_first < flat_s and last + 1 < n and step_ok(last + 1):
                last += 1
            if ts[last] - t_first >= flat_s:
                out[o] = _ELECTRODE_OFF
                continue
            lo = bisect_left(ts, ti - pad)
            hi = bisect_right(ts, ti + pad)
            # a sample's slope looks back only (slope_span), so it is final once the sample is here: each is
            # worked out once, by the first flag within pad of it (its look-back lies in that flag's window)
            seeds = self._seed
            if len(seeds) < lo + w0:  # (samples no flag yet to be worked out looks at: never read)
                seeds.extend([False] * (lo + w0 - len(seeds)))
            for j in range(len(seeds) - w0, hi):
                seeds.append(seed(j))
            if True in seeds[lo + w0:hi + w0]:
                out[o] = _MOTION
        return out

    # -- stage 2: bridge and filter ------------------------------------------------------------
    def _clean(self, i0: int, i1: int) -> None:
        ts, x, flag = self._ts, self._x, self._flag
        val = np.where(flag[i0:i1] == _OK, x[i0:i1], np.nan)
        q = flag[i0:i1].copy()
        mot = np.flatnonzero(q == _MOTION) + i0
        if mot.size:
            other = np.flatnonzero(flag[:self._n_flag] != _MOTION)
            k = np.searchsorted(other, mot)
            a = np.where(k > 0, other[np.maximum(k - 1, 0)], -1)
            b = np.where(k < other.size, other[np.minimum(k, other.size - 1)], -1)
            okab = (a >= 0) & (b >= 0)
            aa, bb = np.maximum(a, 0), np.maximum(b, 0)
            okab &= (flag[aa] == _OK) & (flag[bb] == _OK) & (ts[bb] - ts[aa] <= self.bridge)
            w = (ts[mot] - ts[aa]) / np.where(ts[bb] > ts[aa], ts[bb] - ts[aa], 1.0)
            lin = x[aa] + w * (x[bb] - x[aa])
            val[mot[okab] - i0] = lin[okab]
            q[mot[okab] - i0] = _CORRECTED
        # low-pass level and tonic, restarting after missing stretches and timestamp gaps
        lvl = np.full(val.shape, np.nan)
        ton = np.full(val.shape, np.nan)
        valid = np.isfinite(val)
        prev_ts = np.concatenate(([self._last_clean_ts], ts[i0:i1 - 1]))
        restart = valid & ((ts[i0:i1] - prev_ts) > self.max_interp_gap)
        brk = ~valid | restart
        bounds = np.concatenate(([0], np.flatnonzero(brk), [val.size]))
        zi = None if self._zi is None else np.array(self._zi)
        tzi = None if self._tzi is None else np.array(self._tzi)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if a == b:
                continue
            if not valid[a]:
                zi = tzi = None
                a += 1
                if a >= b:
                    continue
            if restart[a]:
                zi = tzi = None
            seg = val[a:b]
            if zi is None or tzi is None:  # both None together
                zi = self._zi_unit * seg[0]
                tzi = self._tzi_unit * seg[0]
            lvl[a:b], zi = sosfilt_1d(self.sos, seg, zi)
            ton[a:b], tzi = sosfilt_1d(self.tonic_sos, seg, tzi)
        self._zi = None if zi is None else zi.tolist()
        self._tzi = None if tzi is None else tzi.tolist()
        self._last_clean_ts = float(ts[i1 - 1])
        self._append_clean(lvl, ton, q)

    def _append_clean(self, lvl, ton, q) -> None:
        """Append cleaned samples: level, tonic (array-like, shape (m,)) and codes (uint8, shape (m,))."""
        bufs = self._bufs
        self._lvl = bufs["_lvl"].append(lvl)
        self._ton = bufs["_ton"].append(ton)
        self._q = bufs["_q"].append(q)

    def _clean_few(self, i0: int, i1: int) -> bool:
        """:meth:`_clean` of a few samples without motion (what a live pull cleans), in Python scalars.

        The same values, restarts and filter recursion (:func:`attune_monitor.dsp.iir.sosfilt_rows`'s operations in
        the same order, sample by sample), so bitwise the same level, tonic, codes and filter states. A motion
        sample (a bridge looks for its valid neighbours) is left to :meth:`_clean`: returns False before changing
        anything.

        Parameters
        ----------
        i0, i1 : int
            Buffer indices of the samples whose flags are final and that are cleaned now, ``i0 < i1``.

        Returns
        -------
        done : bool
        """
        q = self._flag[i0:i1]
        codes = q.tolist()
        if _MOTION in codes:
            return False
        ts = self._ts[i0:i1].tolist()
        xs = self._x[i0:i1].tolist()
        gap = self.max_interp_gap
        lvl, ton = [math.nan] * len(xs), [math.nan] * len(xs)
        z, tz = self._zi, self._tzi
        prev = self._last_clean_ts
        for j, (t, xv, c) in enumerate(zip(ts, xs, codes)):
            if c != _OK:
                z = tz = None
            else:
                if t - prev > gap or z is None or tz is None:  # a restart (timestamp gap), or the first valid
                    z = [[u0 * xv, u1 * xv] for u0, u1 in self._zi_unit_list]
                    tz = [[u0 * xv, u1 * xv] for u0, u1 in self._tzi_unit_list]
                lvl[j] = _sos_step(self._sos_list, xv, z)
                ton[j] = _sos_step(self._tonic_sos_list, xv, tz)
            prev = t
        self._zi, self._tzi = z, tz
        self._last_clean_ts = prev
        if len(codes) == 1:  # the live case
            bufs = self._bufs
            self._lvl = bufs["_lvl"].append_one(lvl[0])
            self._ton = bufs["_ton"].append_one(ton[0])
            self._q = bufs["_q"].append_one(codes[0])
        else:
            self._append_clean(lvl, ton, q)
        return True

    # -- stage 3: grid -------------------------------------------------------------------------
    def _emit(self, k0: int, t: np.ndarray) -> GridBlock:
        if t.size == 1 and self._n_clean:
            return self._emit_one(k0, t)
        return self._emit_many(k0, t)

    def _empty_block(self, k0: int) -> GridBlock:
        return GridBlock(k0, np.empty(0), np.empty(0, np.uint8), tonic=np.empty(0), phasic=np.empty(0))

    def _emit_one(self, k0: int, t: np.ndarray) -> GridBlock:
        """:meth:`_emit_many` of one grid time (what a live pull emits), in scalars (:meth:`_level_at`).

        The same operations in the same order on the same doubles, so bitwise the same block, without ~20 numpy
        calls on 1-element arrays.
        """
        v, tonic, q = self._level_at(float(t[0]))
        return GridBlock(k0, np.array([v]), np.array([q], np.uint8), tonic=np.array([tonic]),
                         phasic=np.array([v - tonic]))

    def _emit_scalar(self, tt: float) -> tuple[float, int] | None:
        if not self._n_clean:
            return None
        v, _, q = self._level_at(tt)
        return v, q

    def _level_at(self, tt: float) -> tuple[float, float, int]:
        """Level, tonic level and quality code at grid time ``tt`` (s), as :meth:`_emit_many` gives them."""
        n = self._n_clean
        ts = self._ts
        b = min(int(ts.searchsorted(tt, side="left")), n)  # first clean sample >= t
        a = b - 1  # last sample <= t: b - 1 unless t is a sample's time
        if b < n and ts[b] == tt:
            a = min(int(ts.searchsorted(tt, side="right")), n) - 1
        ai, bi = max(a, 0), min(b, n - 1)
        ta, tb = float(ts[ai]), float(ts[bi])
        ok = a >= 0 and b < n and (tb - ta) <= self.max_interp_gap
        q_all = self._q
        qa, qb = int(q_all[ai]), int(q_all[bi])
        va, vb = qa == _OK or qa == _CORRECTED, qb == _OK or qb == _CORRECTED
        v, tonic, q = math.nan, math.nan, _NO_DATA
        if ok and va and vb:
            span = tb - ta
            w = (tt - ta) / span if span > 0 else 0.0
            lvl, ton = self._lvl, self._ton
            la, ton_a = float(lvl[ai]), float(ton[ai])
            v = la + w * (float(lvl[bi]) - la)
            tonic = ton_a + w * (float(ton[bi]) - ton_a)
            q = max(qa, qb)
        elif ok:
            q = qa if not va else qb
        if ts.shape[0] >= 4096:
            self._trim(tt)
        return v, tonic, q

    def _emit_many(self, k0: int, t: np.ndarray) -> GridBlock:
        m = t.size
        v = np.full(m, np.nan)
        tonic = np.full(m, np.nan)
        q = np.full(m, _NO_DATA, np.uint8)
        n = self._n_clean
        if n and m:
            ts = self._ts[:n]
            b = np.searchsorted(ts, t, side="left")
            a = np.searchsorted(ts, t, side="right") - 1
            ok = (a >= 0) & (b < n)
            ai, bi = np.maximum(a, 0), np.minimum(b, n - 1)  # (a < n, b >= 0)
            ok &= (ts[bi] - ts[ai]) <= self.max_interp_gap
            qa, qb = self._q[ai], self._q[bi]
            va = (qa == _OK) | (qa == _CORRECTED)
            vb = (qb == _OK) | (qb == _CORRECTED)
            good = ok & va & vb
            span = ts[bi] - ts[ai]
            w = np.where(span > 0, (t - ts[ai]) / np.where(span > 0, span, 1.0), 0.0)
            v[good] = (self._lvl[ai] + w * (self._lvl[bi] - self._lvl[ai]))[good]
            tonic[good] = (self._ton[ai] + w * (self._ton[bi] - self._ton[ai]))[good]
            q[good] = np.maximum(qa, qb)[good]
            bad = ok & ~good
            q[bad] = np.where(~va, qa, qb)[bad]
            self._trim(float(t[-1]))
        return GridBlock(k0, v, q, tonic=tonic, phasic=v - tonic)

    def _trim(self, t_done: float) -> None:
        if self._ts.size < 4096:
            return
        ref = min(t_done, self._ts[min(self._n_clean, self._ts.size - 1)])
        d = int(np.searchsorted(self._ts, ref - self._history, side="left"))
        d = min(d, self._n_clean)
        if d > 0:
            for name, buf in self._bufs.items():
                setattr(self, name, buf.drop_first(d))
            del self._seed[:d]
            self._n_flag -= d
            self._n_clean -= d


def _sos_step(sos: list, xv: float, z: list) -> float:
    """One sample through second-order sections, updating the state ``z`` (n_sections lists of 2) in place.

    The operations of :func:`attune_monitor.dsp.iir.sosfilt_rows` (scipy's ``_sosfilt``) in the same order.
    """
    for (b0, b1, b2, _, a1, a2), zs in zip(sos, z):
        yv = b0 * xv + zs[0]
        zs[0] = b1 * xv - a1 * yv + zs[1]
        zs[1] = b2 * xv - a2 * yv
        xv = yv
    return xv


def eda_to_grid(timestamps, values, srate: float, fs: float = 4.0, origin: float | None = None,
                t_end: float | None = None, **params) -> GridBlock:
    """EDA (uS) onto the grid in one go, via :class:`EdaPreprocessor` (batch == streaming).

    Parameters
    ----------
    timestamps : array-like, shape (n,)
        Sample times (s), increasing.
    values : array-like, shape (n,)
        Skin conductance (uS).
    srate : float
        Device rate (Hz).
    fs, origin, t_end : float
        Grid rate, time of grid sample 0 (default: first timestamp), last grid time wanted.

    Returns
    -------
    block : GridBlock
        ``values``, ``tonic``, ``phasic`` (uS) and ``quality``, shape (m,) each.
    """
    ts = np.asarray(timestamps, float)
    origin = float(ts[0]) if origin is None else origin
    p = EdaPreprocessor(fs=fs, origin=origin, srate=srate, **params)
    p.push(ts, values)
    t_end = float(ts[-1]) if t_end is None else float(t_end)
    return p.pull(t_end + p.latency)
