"""Causal, streaming beat detection: ECG R peaks and PPG pulse peaks.

ECG (Pan & Tompkins 1985, simplified and made strictly causal):
band-pass 5-20 Hz -> 5-point derivative -> square -> 150 ms moving-window
integration ("energy"). A candidate is a local maximum of the energy within
+-``window`` s; it is a beat when it exceeds the adaptive threshold
``npk + 0.25 (spk - npk)`` (halved when no beat came for 1.66 mean RR), is at
least ``refractory`` s after the last beat, and is not a T wave (within 360 ms
of the last beat with less than half its energy). The beat time is then
refined to the R peak: the extremum, with the stream's polarity, of the ECG
high-passed at 0.5 Hz in the ``refine_back`` s before the energy peak.
Polarity (Polar straps are often worn "inverted") is a running majority vote
over the last beats of which extremum, positive or negative, is larger.

PPG: band-pass 0.5-4 Hz; candidates are local maxima within +-``window`` s with
the same adaptive threshold; the time is refined on a 0.5-8 Hz band-pass
(less phase lag) in the ``refine_back`` s before.

Every filter carries its state (``sosfilt``/``lfilter`` with ``zi``) and a
candidate is judged only once all samples up to ``window`` s after it are in,
so chunked input gives exactly the beats of one-shot input. A beat at time
``t_b`` is therefore reported once the input reaches ``t_b + delay``
(``delay = window + refine_back``). After a gap longer than ``gap`` s the
filters restart and the first ``warmup`` s only train the threshold.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np
from scipy import signal

from attune_monitor.dsp.grid import check_positive

__all__ = ["BeatDetector", "detect_beats"]

logger = logging.getLogger(__name__)

_DEFAULTS: dict[str, dict[str, Any]] = {
    "ecg": dict(band=(5.0, 20.0), refine_band=(0.5, 40.0), window=0.2, refractory=0.25, refine_back=0.25,
                warmup=2.0, gap=0.5, mwi=0.15, max_rel=0.3),
    "ppg": dict(band=(0.5, 4.0), refine_band=(0.5, 8.0), window=0.25, refractory=0.3, refine_back=0.25,
                warmup=3.0, gap=0.5, mwi=0.0, max_rel=0.5),
}


def _bandpass(lo: float, hi: float, srate: float, order: int = 2) -> np.ndarray:
    nyq = 0.5 * srate
    hi = min(hi, 0.45 * srate)
    return signal.butter(order, [lo / nyq, hi / nyq], btype="bandpass", output="sos")


class BeatDetector:
    """Streaming ECG R-peak / PPG pulse-peak detector with explicit state.

    Parameters
    ----------
    kind : {"ecg", "ppg"}
    srate : float
        Nominal sampling rate (Hz).
    band, refine_band : tuple of float
        Detection and refinement pass bands (Hz).
    window : float
        Half-width (s) of the local-maximum test.
    refractory : float
        Minimum time between beats (s).
    refine_back : float
        How far before the detection peak the beat time is searched (s).
    warmup : float
        Seconds after a (re)start used only to train the threshold.
    gap : float
        A timestamp gap longer than this (s) restarts the detector.
    mwi : float
        Moving-window integration length (s, ECG).
    max_rel : float
        Cap of the threshold as a fraction of the signal level (ECG 0.3 of
        the energy, PPG 0.5 of the amplitude).

    Attributes
    ----------
    delay : float
        A beat at ``t`` is reported once input up to ``t + delay`` is known.
    """

    def __init__(self, kind: str, srate: float, **params):
        if kind not in _DEFAULTS:
            raise ValueError(f"Invalid value for 'kind': expected one of ecg, ppg, but got {kind!r}.")
        unknown = set(params) - set(_DEFAULTS[kind])
        if unknown:
            raise ValueError(f"Invalid parameter(s) {sorted(unknown)} for the {kind} detector: expected some of "
                             f"{', '.join(_DEFAULTS[kind])}.")
        p = {**_DEFAULTS[kind], **params}
        self.kind = kind
        self.srate = check_positive("srate", srate)
        self.window = check_positive("window", p["window"])
        self.refractory = check_positive("refractory", p["refractory"])
        self.refine_back = check_positive("refine_back", p["refine_back"])
        self.warmup = check_positive("warmup", p["warmup"])
        self.gap = check_positive("gap", p["gap"])
        self.max_rel = check_positive("max_rel", p["max_rel"])
        self.sos = _bandpass(p["band"][0], p["band"][1], self.srate)
        self.ref_sos = _bandpass(p["refine_band"][0], p["refine_band"][1], self.srate)
        if kind == "ecg":
            self.deriv = np.array([2.0, 1.0, 0.0, -1.0, -2.0]) * self.srate / 8.0
            n = max(1, int(round(p["mwi"] * self.srate)))
            self.mwi = np.ones(n) / n
        self.delay = self.window + self.refine_back
        # buffers (trimmed as we go)
        self._ts = np.empty(0)
        self._det = np.empty(0)
        self._ref = np.empty(0)
        self._seg = np.empty(0, dtype=np.int64)
        self._pos = 0  # next buffer index to judge as a candidate
        self._seg_id = -1
        self._seg_starts: list = []  # (start time) of each segment, for warm-up masks
        self._last_ts = -np.inf
        self._out_t: list = []
        self._out_rr: list = []

    # -- filtering -----------------------------------------------------------------------------
    def _new_segment(self, t0: float, x0: float) -> None:
        self._seg_id += 1
        self._seg_start = t0
        self._seg_starts.append(t0)
        self._zi = signal.sosfilt_zi(self.sos) * x0
        self._ref_zi = signal.sosfilt_zi(self.ref_sos) * x0
        if self.kind == "ecg":
            self._dzi = np.zeros(self.deriv.size - 1)
            self._mzi = np.zeros(self.mwi.size - 1)
        self._warm: list = []
        self._warm_max = -np.inf  # extremes of the refine signal during warm-up (initial polarity)
        self._warm_min = np.inf
        self._spk: float | None = None  # signal and noise peak levels, set at the end of warm-up
        self._npk: float | None = None
        self._last_beat = -np.inf
        self._last_peak = 0.0
        self._rr_hist: deque = deque(maxlen=8)
        self._votes: deque = deque(maxlen=9)
        self._polarity = 1.0

    def _filter(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bp, self._zi = signal.sosfilt(self.sos, x, zi=self._zi)
        ref, self._ref_zi = signal.sosfilt(self.ref_sos, x, zi=self._ref_zi)
        if self.kind == "ecg":
            d, self._dzi = signal.lfilter(self.deriv, 1.0, bp, zi=self._dzi)
            det, self._mzi = signal.lfilter(self.mwi, 1.0, d * d, zi=self._mzi)
        else:
            det = bp
        return det, ref

    def push(self, timestamps, values) -> None:
        """Add samples (increasing timestamps, s; values in canonical units). NaN samples are skipped."""
        ts = np.asarray(timestamps, float)
        x = np.asarray(values, float)
        ok = np.isfinite(x) & np.isfinite(ts)
        ts, x = ts[ok], x[ok]
        if ts.size == 0:
            return
        # split at gaps (and at the very first sample)
        dt = np.diff(np.concatenate([[self._last_ts], ts]))
        breaks = np.flatnonzero(dt > self.gap)
        bounds = list(breaks) + [ts.size]
        if not breaks.size or breaks[0] != 0:
            bounds = [0] + bounds
        for a, b in zip(bounds[:-1], bounds[1:]):
            if a in breaks:
                self._judge(np.inf)  # the old segment is over: judge what is left of it
                self._new_segment(ts[a], x[a])
            det, ref = self._filter(x[a:b])
            self._ts = np.concatenate([self._ts, ts[a:b]])
            self._det = np.concatenate([self._det, det])
            self._ref = np.concatenate([self._ref, ref])
            self._seg = np.concatenate([self._seg, np.full(b - a, self._seg_id)])
            in_warm = ref[ts[a:b] < self._seg_start + self.warmup]
            if in_warm.size:
                self._warm_max = max(self._warm_max, float(in_warm.max()))
                self._warm_min = min(self._warm_min, float(in_warm.min()))
        self._last_ts = float(ts[-1])

    # -- detection -----------------------------------------------------------------------------
    def _judge(self, known_until: float) -> None:
        ts, det, seg = self._ts, self._det, self._seg
        n = ts.size
        if n == 0:
            return
        stop = int(np.searchsorted(ts, known_until - self.window, side="right"))
        stop = min(stop, n)
        i0 = max(self._pos, 1)
        if stop <= i0:
            self._pos = max(self._pos, stop)
            return
        idx = np.arange(i0, stop)
        nxt = np.minimum(idx + 1, n - 1)
        same = (seg[idx - 1] == seg[idx]) & (seg[nxt] == seg[idx]) & (nxt > idx)
        cand = idx[same & (det[idx] > det[idx - 1]) & (det[idx] >= det[nxt])]
        if cand.size:
            lo = np.searchsorted(ts, ts[cand] - self.window, side="left")
            hi = np.searchsorted(ts, ts[cand] + self.window, side="right")
            for i, a, b in zip(cand, lo, hi):
                w = det[a:b][seg[a:b] == seg[i]]
                if det[i] >= w.max():
                    self._candidate(int(i))
        self._pos = stop

    def _candidate(self, i: int) -> None:
        t = self._ts[i]
        p = float(self._det[i])
        if t < self._seg_start + self.warmup:
            self._warm.append(p)
            return
        if self._spk is None:  # end of warm-up: initial signal and noise levels
            warm = np.asarray(self._warm) if self._warm else np.asarray([p])
            self._spk = 0.5 * float(warm.max())
            small = warm[warm < 0.3 * warm.max()]
            self._npk = float(np.median(small)) if small.size else 0.0
            if self._warm_max > -np.inf:
                self._polarity = 1.0 if self._warm_max >= -self._warm_min else -1.0
        assert self._npk is not None  # set with _spk just above
        pk = max(p, 0.0)
        # Pan-Tompkins threshold, capped so that noise-level creep (missed beats counted as noise)
        # cannot lift it above a fixed fraction of the signal level
        thr = min(self._npk + 0.25 * (self._spk - self._npk), self.max_rel * self._spk)
        if self._rr_hist and t - self._last_beat > 1.66 * float(np.mean(self._rr_hist)):
            thr *= 0.5
        if pk <= thr:
            self._npk = 0.125 * pk + 0.875 * self._npk
            return
        # refine the beat time
        seg = self._seg[i]
        a = int(np.searchsorted(self._ts, t - self.refine_back, side="left"))
        r = self._ref[a:i + 1]
        rs = self._seg[a:i + 1] == seg
        r = np.where(rs, r, np.nan)
        if self.kind == "ecg":
            self._votes.append(1.0 if np.nanmax(r) >= -np.nanmin(r) else -1.0)
            s = sum(self._votes)
            if s:
                self._polarity = float(np.sign(s))
        j = a + int(np.nanargmax(self._polarity * r))
        tb = float(self._ts[j])
        if tb - self._last_beat < self.refractory:
            return
        if self.kind == "ecg" and tb - self._last_beat < 0.36 and pk < 0.5 * self._last_peak:
            self._npk = 0.125 * pk + 0.875 * self._npk  # T wave
            return
        self._spk = 0.125 * min(pk, 3.0 * self._spk) + 0.875 * self._spk
        rr = tb - self._last_beat
        if np.isfinite(rr):
            self._rr_hist.append(rr)
            self._out_rr.append(rr)
        else:
            self._out_rr.append(np.nan)
        self._out_t.append(tb)
        self._last_beat = tb
        self._last_peak = pk

    def advance(self, known_until: float) -> tuple[np.ndarray, np.ndarray]:
        """Judge every candidate that input up to ``known_until`` decides; return the new beats.

        Returns
        -------
        beat_times : ndarray, shape (n_beats,)
            Times (s) of newly detected beats, increasing.
        rr : ndarray, shape (n_beats,)
            Interval ending at each beat (s); NaN for the first beat after a (re)start.
        """
        self._judge(known_until)
        bt, rr = np.asarray(self._out_t), np.asarray(self._out_rr)
        self._out_t, self._out_rr = [], []
        self._trim()
        return bt, rr

    def _trim(self) -> None:
        if self._pos < 4096:
            return
        pos = min(self._pos, self._ts.size - 1)
        keep_from = int(np.searchsorted(self._ts, self._ts[pos] - self.window - self.refine_back - 1.0))
        keep_from = min(keep_from, self._pos - 1)
        if keep_from > 0:
            self._ts = self._ts[keep_from:]
            self._det = self._det[keep_from:]
            self._ref = self._ref[keep_from:]
            self._seg = self._seg[keep_from:]
            self._pos -= keep_from

    def warmup_mask(self, t: np.ndarray) -> np.ndarray:
        """True where grid times ``t`` (shape (m,)) fall in a detector warm-up span."""
        starts = np.asarray(self._seg_starts)
        mask = np.zeros(t.shape, bool)
        if starts.size:
            j = np.searchsorted(starts, t, side="right") - 1
            ok = j >= 0
            mask[ok] = t[ok] - starts[j[ok]] <= self.warmup + 1.0
            if len(self._seg_starts) > 1:
                drop = int(np.searchsorted(starts, t[0], side="right")) - 1
                if drop > 0:
                    del self._seg_starts[:drop]
        return mask


def detect_beats(kind: str, timestamps, values, srate: float, **params) -> np.ndarray:
    """Beat times of a whole recording (ECG R peaks or PPG pulse peaks), via :class:`BeatDetector`.

    Parameters
    ----------
    kind : {"ecg", "ppg"}
    timestamps : array-like, shape (n,)
        Sample times (s), increasing.
    values : array-like, shape (n,)
        The signal (ECG mV or any scale; PPG au).
    srate : float
        Nominal sampling rate (Hz).

    Returns
    -------
    beat_times : ndarray, shape (n_beats,)
    """
    d = BeatDetector(kind, srate, **params)
    d.push(timestamps, values)
    bt, _ = d.advance(np.inf)
    return bt
