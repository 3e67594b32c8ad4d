"""The live pulls of a large group's streams in one compiled call per kind (issue 21).

A live tick of :class:`attune_monitor.dsp.pipeline.SessionPipeline` pulls one grid sample of every stream; one
:class:`~attune_monitor.dsp.eda.EdaPreprocessor` or device-HR :class:`~attune_monitor.dsp.heart.HeartPreprocessor`
does that in scalar Python (its ``pull_scalar`` path), some 20 us a stream: over a millisecond per tick for 64
people. A bank holds the state of many preprocessors of one kind and one parameter set as arrays over them (a
row each) and pulls all of them with one call of a numba kernel (:mod:`attune_monitor.dsp._stream_kernels`) that
runs each row's scalar path with the same arithmetic in the same order: the same grid samples and codes, bit for
bit.

A row whose tick leaves that path (a push of non-increasing timestamps, more samples than its buffer holds, more
than one grid sample due, a run of samples to flag at once, a motion stretch to bridge) is handed back to its
preprocessor object (:meth:`StreamBank.release`: the object gets the row's state) and runs there; once that
object's pull is a plain one again, the row takes it back (:meth:`StreamBank.adopt`). While a row is in the
bank its object is stale: only the bank reads and writes the stream.

Numba is imported only when a bank is made (the pipeline makes them for :data:`STREAM_BANK_MIN_STREAMS` streams
of a kind on, when numba is there), so a dyad never loads it.
"""

from __future__ import annotations

import math

import numpy as np

from . import _kernels
from .eda import EdaPreprocessor
from .grid import AppendBuffer, last_index_at_or_before
from .heart import HeartPreprocessor

__all__ = ["STREAM_BANK_MIN_STREAMS", "available", "bank_key", "StreamBank", "EdaBank", "HeartRateBank"]

#: Fewest streams of one kind and parameter set pulled by a bank; fewer are pulled one by one (a dyad's four
#: streams never load numba).
STREAM_BANK_MIN_STREAMS = 8


def available() -> bool:
    """True when numba can be imported (the banks need their kernels)."""
    return _kernels.module_available("_stream_kernels")


def bank_key(p) -> tuple | None:
    """Which bank preprocessor ``p`` can join (equal keys: one bank), or None (pulled on its own).

    Skin conductance by its parameters; device heart rate (``kind="hr"``) by its gap, range and dating back.
    RR, ECG and PPG streams have no scalar pull and are pulled on their own.
    """
    if type(p) is EdaPreprocessor and p.sos.shape[0] == 1 and p.tonic_sos.shape[0] == 1:
        return ("eda", p.fs, p.origin, *_eda_params(p).tolist())
    if type(p) is HeartPreprocessor and p.kind == "hr":
        return ("hr", p.fs, p.origin, p.latency, p.max_gap, p.hr_min, p.hr_max, p.date_back)
    return None


def _eda_params(p: EdaPreprocessor) -> np.ndarray:
    """The kernel's parameter vector of ``p`` (``_stream_kernels.P_*``)."""
    return np.array([p.min_level, p.max_level, p.resolution, p.max_interp_gap, p.flat_s, p.pad, p.slope_span,
                     p.max_slope, p._look_flags, p.bridge, p._history, float(p.few_max), *p.sos[0].tolist(),
                     *p.tonic_sos[0].tolist(), *p._zi_unit[0].tolist(), *p._tzi_unit[0].tolist()], np.float64)


class StreamBank:
    """The state of several preprocessors of one kind as rows of arrays, pulled at once (see the module notes).

    Parameters
    ----------
    pres : list of GridPreprocessor
        The preprocessors (one :func:`bank_key`), fresh: nothing pushed or pulled yet.
    capacity : int
        Raw samples a row holds.

    Attributes
    ----------
    pres : list
        The preprocessor of each row.
    inside : ndarray, shape (n_rows,), bool
        The row's state is in the bank (False: in its object, which is pulled on its own).
    """

    def __init__(self, pres: list, capacity: int):
        from . import _stream_kernels as K

        self.K = K
        self.pres = list(pres)
        n = len(self.pres)
        p0 = self.pres[0]
        self.fs, self.origin, self.latency = p0.fs, p0.origin, p0.latency
        self.cap = int(capacity)
        self.IN = np.zeros((n, K.NI), np.int64)
        self.F = np.zeros((n, K.NF))
        self.F[:, [K.F_KNOWN, K.F_LCLEAN]] = -np.inf
        self.N = np.zeros(n, np.int64)  # samples buffered
        self.LAST = np.full(n, -np.inf)  # the last pushed timestamp
        self.TS = np.zeros((n, self.cap))
        self.X = np.zeros((n, self.cap))
        self.vals = np.full(n, np.nan)
        self.quals = np.zeros(n, np.uint8)
        self.status = np.zeros(n, np.int64)
        self.inside = np.ones(n, bool)
        self.rows = np.arange(n, dtype=np.int64)
        self.held = [True] * n  # inside, as a list (read by every push)
        self._back = 0.0  # subtracted from pushed timestamps (device heart rate: dated back)

    # -- input -----------------------------------------------------------------------------------
    def push(self, r: int, ts: np.ndarray, x: np.ndarray) -> bool:
        """``GridPreprocessor.push(ts, x)`` of row ``r`` (in the bank), if it keeps every sample and the row has room.

        Else False, with nothing changed: the caller releases the row and pushes to its object (which drops and warns
        about non-increasing or non-finite timestamps). ``ts``, ``x`` are float64 arrays of shape (m,), m >= 1.
        """
        m = ts.shape[0]
        if x.shape != ts.shape:
            return False
        last = self.LAST[r]
        k = int(self.N[r])
        if m == 1:  # the live case, in scalars
            t = ts.item()
            if not (t > last and t != math.inf) or k == self.cap:  # (NaN fails t > last)
                return False
            self.TS[r, k] = t - self._back if self._back else t
            self.X[r, k] = x.item()
            self.N[r] = k + 1
            self.LAST[r] = t
            return True
        for t in ts.tolist():
            if not (t > last and math.isfinite(t)):
                return False
            last = t
        if k + m > self.cap:
            return False
        self.TS[r, k:k + m] = ts - self._back if self._back else ts
        self.X[r, k:k + m] = x
        self.N[r] = k + m
        self.LAST[r] = last
        return True

    # -- pulls -------------------------------------------------------------------------------------
    def pull(self, until: float) -> np.ndarray:
        """``pull_scalar(until)`` of every row in the bank.

        Returns
        -------
        status : ndarray, shape (n_rows,), int64
            Of the rows in the bank (``rows``): ``_stream_kernels.ONE`` (the grid sample ``next_index - 1`` is in
            ``vals``, ``quals``), ``NOTHING`` (none due) or ``FALLBACK`` (release the row and pull its object).
        """
        k_last = last_index_at_or_before(until - self.latency, self.fs, self.origin)
        self._pull(float(until), k_last)
        return self.status

    def _pull(self, until: float, k_last: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_kernel(self) -> None:
        """Compile (or load from numba's cache) the kernel now, with a pull of no row, not at the first tick."""
        rows, self.rows = self.rows, np.empty(0, np.int64)
        try:
            self._pull(0.0, 0)
        finally:
            self.rows = rows

    def next_index(self, r: int) -> int:
        """The next grid index of row ``r`` (in the bank)."""
        return int(self.IN[r, self.K.I_NEXT])

    # -- hand-over ---------------------------------------------------------------------------------
    def release(self, r: int) -> None:
        """Give row ``r``'s state to its preprocessor object, which from now on is pulled on its own."""
        self.write_state(r, self.pres[r])
        self.inside[r] = False
        self.held[r] = False
        self.rows = np.flatnonzero(self.inside).astype(np.int64)

    def write_state(self, r: int, p) -> None:
        """Set preprocessor ``p`` (of the bank's kind and parameters) to the state of row ``r``."""
        K, IN, F = self.K, self.IN, self.F
        self._release(r, p)
        p.next_index = int(IN[r, K.I_NEXT])
        p.last_ts = float(self.LAST[r])
        p.known_until = max(float(F[r, K.F_KNOWN]), p.last_ts)  # (a push's known_until)

    def adopt(self, r: int) -> bool:
        """Take row ``r``'s state back from its object (after a plain pull of it); False when it does not fit."""
        K, IN, F = self.K, self.IN, self.F
        p = self.pres[r]
        if not self._adopt(r, p):
            return False
        IN[r, K.I_NEXT] = p.next_index
        self.LAST[r] = p.last_ts
        F[r, K.F_KNOWN] = p.known_until
        self.inside[r] = True
        self.held[r] = True
        self.rows = np.flatnonzero(self.inside).astype(np.int64)
        return True

    def _release(self, r: int, p) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _adopt(self, r: int, p) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class EdaBank(StreamBank):
    """A bank of :class:`~attune_monitor.dsp.eda.EdaPreprocessor` (one parameter set).

    A row holds the raw samples, flags, level, tonic level, codes and motion seeds of the last seconds
    (``EdaPreprocessor._trim``'s rule once more than half of ``capacity`` is used), so ``capacity`` covers several
    times the latency and history at the device rate.
    """

    def __init__(self, pres: list):
        p0 = pres[0]
        capacity = int(math.ceil(4.0 * (p0.latency + p0._history) * p0.srate)) + 64
        super().__init__(pres, capacity)
        n = len(self.pres)
        self.P = _eda_params(p0)
        self.FLAG = np.zeros((n, self.cap), np.uint8)
        self.LVL = np.zeros((n, self.cap))
        self.TON = np.zeros((n, self.cap))
        self.Q = np.zeros((n, self.cap), np.uint8)
        self.SEED = np.zeros((n, self.cap), np.uint8)
        self._load_kernel()

    def _pull(self, until: float, k_last: int) -> None:
        self.K.eda_pull(self.rows, until, k_last, self.origin, self.fs, self.N, self.LAST, self.TS, self.X, self.FLAG,
                        self.LVL, self.TON, self.Q, self.SEED, self.IN, self.F, self.P, self.vals, self.quals,
                        self.status)

    def _release(self, r: int, p: EdaPreprocessor) -> None:
        K, IN, F = self.K, self.IN, self.F
        n = int(self.N[r])
        nf, nc, ns = (int(IN[r, j]) for j in (K.I_FLAG, K.I_CLEAN, K.I_SEED))
        bufs = {name: AppendBuffer(np.uint8 if name in ("_flag", "_q") else np.float64)
                for name in ("_ts", "_x", "_flag", "_lvl", "_ton", "_q")}
        p._bufs = bufs
        p._ts = bufs["_ts"].append(self.TS[r, :n])
        p._x = bufs["_x"].append(self.X[r, :n])
        p._flag = bufs["_flag"].append(self.FLAG[r, :nf])
        p._lvl = bufs["_lvl"].append(self.LVL[r, :nc])
        p._ton = bufs["_ton"].append(self.TON[r, :nc])
        p._q = bufs["_q"].append(self.Q[r, :nc])
        p._seed = (self.SEED[r, :ns] != 0).tolist()
        p._n_flag, p._n_clean = nf, nc
        if IN[r, K.I_HASZ]:
            p._zi = [[float(F[r, K.F_Z0]), float(F[r, K.F_Z1])]]
            p._tzi = [[float(F[r, K.F_TZ0]), float(F[r, K.F_TZ1])]]
        else:
            p._zi = p._tzi = None
        p._last_clean_ts = float(F[r, K.F_LCLEAN])

    def _adopt(self, r: int, p: EdaPreprocessor) -> bool:
        K, IN, F = self.K, self.IN, self.F
        if p.few_max != int(self.P[K.P_FEW]):
            return False
        ts = p._ts
        n, nc = ts.shape[0], p._n_clean
        d = 0
        if 2 * n > self.cap and nc and p.next_index:  # only what EdaPreprocessor._trim keeps at the last grid time
            tt = p.origin + (p.next_index - 1) / p.fs
            ref = min(tt, float(ts[min(nc, n - 1)]))
            d = min(int(np.searchsorted(ts, ref - p._history, side="left")), nc)
        if 2 * (n - d) > self.cap:
            return False
        if p._zi is not None and (len(p._zi) != 1 or p._tzi is None or len(p._tzi) != 1):
            return False
        nf = p._n_flag
        seeds = p._seed[d:]
        self.TS[r, :n - d] = ts[d:]
        self.X[r, :n - d] = p._x[d:]
        self.FLAG[r, :nf - d] = p._flag[d:nf]
        self.LVL[r, :nc - d] = p._lvl[d:nc]
        self.TON[r, :nc - d] = p._ton[d:nc]
        self.Q[r, :nc - d] = p._q[d:nc]
        self.SEED[r, :len(seeds)] = seeds
        self.N[r] = n - d
        IN[r, K.I_FLAG], IN[r, K.I_CLEAN], IN[r, K.I_SEED] = nf - d, nc - d, len(seeds)
        zi, tzi = p._zi, p._tzi
        if zi is None or tzi is None:  # (both None together)
            IN[r, K.I_HASZ] = 0
        else:
            IN[r, K.I_HASZ] = 1
            F[r, K.F_Z0], F[r, K.F_Z1] = zi[0]
            F[r, K.F_TZ0], F[r, K.F_TZ1] = tzi[0]
        F[r, K.F_LCLEAN] = p._last_clean_ts
        return True


class HeartRateBank(StreamBank):
    """A bank of device heart-rate :class:`~attune_monitor.dsp.heart.HeartPreprocessor` (``kind="hr"``).

    One parameter set; a row holds the (dated-back) samples no later grid time is past, as the object does.
    """

    def __init__(self, pres: list):
        p0 = pres[0]
        super().__init__(pres, 256)
        self.P = np.array([p0.max_gap, p0.hr_min, p0.hr_max, p0.date_back], np.float64)
        self._back = p0.date_back
        self._load_kernel()

    def _pull(self, until: float, k_last: int) -> None:
        self.K.hr_pull(self.rows, until, k_last, self.origin, self.fs, self.N, self.LAST, self.TS, self.X, self.IN,
                       self.F, self.P, self.vals, self.quals, self.status)

    def _release(self, r: int, p: HeartPreprocessor) -> None:
        n = int(self.N[r])
        p._ts = self.TS[r, :n].copy()
        p._x = self.X[r, :n].copy()

    def _adopt(self, r: int, p: HeartPreprocessor) -> bool:
        n = p._ts.shape[0]
        if 2 * n > self.cap:
            return False
        self.TS[r, :n] = p._ts
        self.X[r, :n] = p._x
        self.N[r] = n
        return True
