"""The common time grid every preprocessor writes onto, and the streaming contract.

Grid
----
A grid has a rate ``fs`` (Hz, default 4.0) and an ``origin`` (seconds, in the
stream's time base, i.e. LSL seconds) chosen by the caller. Grid sample ``k``
sits at ``t_k = origin + k / fs``.

Streaming contract (shared by every preprocessor in :mod:`dsp`)
----------------------------------------------------------------
``p.push(timestamps, values)`` feeds raw samples (canonical units, timestamps
strictly increasing; non-increasing ones are dropped with a logged warning).
``p.pull(until)`` returns a :class:`GridBlock` with every not-yet-emitted grid
sample ``k`` with ``t_k <= until - p.latency``. Indices are contiguous across
pulls and the first pull starts at ``k = 0``.

``pull(until)`` *declares* that every sample with a timestamp ``<= until`` has
been pushed (the stream has been read up to ``until``). ``p.latency`` is a
fixed number of seconds: grid sample ``k`` depends only on input with
timestamps ``<= t_k + p.latency``. Therefore any chunking of ``push`` and any
sequence of ``pull`` calls give the same output as one push of everything and
one pull at the end. Samples that arrive after their period was declared
complete are still used, but only for grid samples not yet emitted.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .iir import sosfilt_1d, sosfilt_rows  # their home was here: still importable from grid

__all__ = [
    "GridBlock", "AppendBuffer", "grid_times", "last_index_at_or_before", "concat_blocks", "check_positive",
    "GridPreprocessor", "stream_in_chunks", "sosfilt_rows", "sosfilt_1d"
]

logger = logging.getLogger(__name__)


@dataclass
class GridBlock:
    """A contiguous run of grid samples.

    Attributes
    ----------
    start : int
        Grid index of the first sample.
    values : ndarray, shape (m,), float64
        The signal on the grid; NaN where missing.
    quality : ndarray, shape (m,), uint8
        :class:`attune_monitor.dsp.quality.Quality` code of each sample.
    tonic, phasic : ndarray, shape (m,), float64 | None
        EDA only: tonic level and phasic component (NaN where missing).
    """

    start: int
    values: np.ndarray
    quality: np.ndarray
    tonic: np.ndarray | None = None
    phasic: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def stop(self) -> int:
        """One past the last grid index."""
        return self.start + len(self)

    def times(self, fs: float, origin: float) -> np.ndarray:
        """Times of the samples, shape (m,): ``origin + k / fs``."""
        return grid_times(self.start, len(self), fs, origin)


def grid_times(start: int, n: int, fs: float, origin: float) -> np.ndarray:
    """Times of grid samples ``start .. start + n - 1``, shape (n,)."""
    return origin + np.arange(start, start + n, dtype=np.float64) / fs


def last_index_at_or_before(t: float, fs: float, origin: float) -> int:
    """Largest grid index ``k`` with ``origin + k / fs <= t`` (may be negative)."""
    k = math.floor((t - origin) * fs)
    # guard against rounding at exact grid times
    while origin + (k + 1) / fs <= t:
        k += 1
    while origin + k / fs > t:
        k -= 1
    return k


def concat_blocks(blocks: list[GridBlock]) -> GridBlock:
    """Join contiguous blocks into one (checks contiguity).

    Parameters
    ----------
    blocks : list of GridBlock
        Consecutive outputs of one preprocessor's ``pull``.

    Returns
    -------
    block : GridBlock
    """
    if not blocks:
        return GridBlock(0, np.empty(0), np.empty(0, np.uint8))
    for a, b in zip(blocks[:-1], blocks[1:]):
        if a.stop != b.start:
            raise ValueError(f"Blocks are not contiguous: one ends at {a.stop}, the next starts at {b.start}; "
                             "pass the blocks of one preprocessor in the order they were pulled.")
    has_eda = blocks[0].tonic is not None
    return GridBlock(
        blocks[0].start,
        np.concatenate([b.values for b in blocks]),
        np.concatenate([b.quality for b in blocks]).astype(np.uint8),
        np.concatenate([b.tonic for b in blocks]) if has_eda else None,
        np.concatenate([b.phasic for b in blocks]) if has_eda else None,
    )


class AppendBuffer:
    """A 1-d array that grows at its end with spare capacity, so appending m values costs O(m) (amortised).

    A live preprocessor appends a sample or two per pull to buffers of thousands; ``np.concatenate`` would copy
    the whole buffer every time. :meth:`append` and :meth:`drop_first` return the filled part as a view
    (``values``), valid until the next call on the buffer that reallocates (the caller keeps only the latest).

    Parameters
    ----------
    dtype : numpy dtype
    """

    __slots__ = ("_buf", "_n", "values")

    def __init__(self, dtype=np.float64):
        self._buf = np.empty(64, dtype)
        self._n = 0
        self.values = self._buf[:0]

    def append(self, new) -> np.ndarray:
        """Append ``new`` (array-like, shape (m,)); returns the values, shape (n + m,)."""
        new = np.asarray(new, self._buf.dtype)
        n, n1 = self._n, self._n + new.shape[0]
        if n1 > self._buf.shape[0]:
            self._grow(n1)
        self._buf[n:n1] = new
        self._n = n1
        self.values = self._buf[:n1]
        return self.values

    def append_one(self, value) -> np.ndarray:
        """Append one value (a scalar); returns the values, shape (n + 1,)."""
        n = self._n
        if n == self._buf.shape[0]:
            self._grow(n + 1)
        self._buf[n] = value
        self._n = n + 1
        self.values = self._buf[:n + 1]
        return self.values

    def _grow(self, n1: int) -> None:
        buf = np.empty(max(2 * self._buf.shape[0], n1), self._buf.dtype)
        buf[:self._n] = self._buf[:self._n]
        self._buf = buf

    def drop_first(self, d: int) -> np.ndarray:
        """Forget the first ``d`` values (into a new buffer: views handed out before keep their values)."""
        rest = self._buf[d:self._n]
        buf = np.empty(max(64, 2 * rest.shape[0]), self._buf.dtype)
        buf[:rest.shape[0]] = rest
        self._buf, self._n = buf, rest.shape[0]
        self.values = buf[:self._n]
        return self.values


def check_positive(name: str, value: float) -> float:
    """Validate a positive finite number (rates, windows in seconds)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid value for {name!r}: expected a positive number, but got {value!r}.") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"Invalid value for {name!r}: expected a positive number, but got {value!r}.")
    return v


class GridPreprocessor:
    """Base class: grid bookkeeping and input validation for streaming preprocessors.

    Subclasses implement ``_ingest(ts, x)`` (new, validated samples) and
    ``_emit(k0, t)`` (values for grid times ``t``, shape (m,), starting at
    index ``k0``) and set ``latency`` (seconds).
    """

    latency: float = 0.0
    #: Largest push whose timestamps are checked in Python scalars (a live push brings a sample or two); larger ones
    #: go through the array code. Both keep the same samples; 0 forces the array code.
    few_push: int = 8

    def __init__(self, fs: float = 4.0, origin: float = 0.0):
        self.fs = check_positive("fs", fs)
        try:
            self.origin = float(origin)
        except (TypeError, ValueError):
            raise ValueError(f"Invalid value for 'origin': expected a time in seconds, but got {origin!r}.") from None
        if not np.isfinite(self.origin):
            raise ValueError(f"Invalid value for 'origin': expected a finite time in seconds, but got {origin!r}.")
        self.next_index = 0  # first grid index not yet emitted
        self.last_ts = -np.inf  # last accepted input timestamp
        self.known_until = -np.inf  # all input with ts <= known_until has been pushed
        self.n_dropped = 0

    # -- input ---------------------------------------------------------------------------------
    def push(self, timestamps, values) -> None:
        """Feed raw samples.

        Parameters
        ----------
        timestamps : array-like, shape (n,)
            Sample times in the stream's time base (seconds), increasing.
        values : array-like, shape (n,)
            Samples in canonical units (RR s, HR bpm, ECG mV, PPG au, EDA uS).
            NaN is allowed and treated as a missing or invalid sample.
        """
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        if ts.shape != x.shape:
            raise ValueError(f"Invalid input: timestamps and values must have the same length, but got "
                             f"{ts.shape[0]} timestamps and {x.shape[0]} values.")
        n = ts.shape[0]
        if n == 0:
            return
        if n <= self.few_push:  # a live push (a sample or two): the same test in Python scalars
            tl = ts.tolist()
            last = self.last_ts
            for t in tl:
                if not (t > last and math.isfinite(t)):  # (NaN fails t > last)
                    break  # something to drop: the array code below drops it and warns
                last = t
            else:
                self.last_ts = last
                if last > self.known_until:
                    self.known_until = last
                self._ingest(ts, x)
                return
        finite = np.isfinite(ts)
        # keep only strictly increasing timestamps (also against the last accepted one)
        prev = np.maximum.accumulate(np.concatenate([[self.last_ts], np.where(finite, ts, -np.inf)]))[:-1]
        keep = finite & (ts > prev)
        if not keep.all():
            n_bad = int((~keep).sum())
            self.n_dropped += n_bad
            logger.warning("%s: dropped %d sample(s) with non-increasing or non-finite timestamps",
                           type(self).__name__, n_bad)
            ts, x = ts[keep], x[keep]
            if ts.size == 0:
                return
        self.last_ts = float(ts[-1])
        self.known_until = max(self.known_until, self.last_ts)
        self._ingest(ts, x)

    def pull(self, until: float) -> GridBlock:
        """Emit every grid sample ``k`` not yet emitted with ``t_k <= until - latency``.

        Parameters
        ----------
        until : float
            Stream time up to which all input has been pushed (seconds).

        Returns
        -------
        block : GridBlock
            Possibly empty (``len(block) == 0``), starting at the next grid index.
        """
        k0, m = self._due(until)
        if m <= 0:  # nothing to emit (pulls more often than the grid rate): _emit of no grid time changes nothing
            return self._empty_block(k0)
        return self._emit_due(k0, m)

    def pull_scalar(self, until: float) -> tuple[float, int] | GridBlock:
        """:meth:`pull`, giving one grid sample as Python scalars where the preprocessor has a scalar path.

        For the pipeline's live tick, which takes one grid sample of every stream: no arrays and no block for it.

        Parameters
        ----------
        until : float
            As for :meth:`pull`.

        Returns
        -------
        sample : tuple of (float, int) | GridBlock
            ``(value, quality code)`` of grid sample ``next_index - 1`` when the pull emits exactly one sample and
            the preprocessor works it out in scalars (bitwise the block's ``values[0]`` and ``quality[0]``);
            otherwise the block :meth:`pull` returns.
        """
        k0, m = self._due(until)
        if m <= 0:
            return self._empty_block(k0)
        if m == 1:
            one = self._emit_scalar(self.origin + k0 / self.fs)  # (the grid time _emit_due gives)
            if one is not None:
                self.next_index = k0 + 1
                return one
        return self._emit_due(k0, m)

    def _due(self, until: float) -> tuple[int, int]:
        """Declare input complete up to ``until`` and finalise it.

        Returns
        -------
        k0, m : int
            The first grid index due and how many are due (``m <= 0``: none).
        """
        until = float(until)
        if not math.isfinite(until):
            raise ValueError(f"Invalid value for 'until': expected a finite time in seconds, but got {until!r}.")
        if until > self.known_until:
            self.known_until = until
        self._advance(self.known_until)
        k_last = last_index_at_or_before(until - self.latency, self.fs, self.origin)
        k0 = self.next_index
        return k0, k_last - k0 + 1

    def _emit_due(self, k0: int, m: int) -> GridBlock:
        """Emit the ``m >= 1`` grid samples due from ``k0``."""
        # one grid time (a live pull) without np.arange: the same double, origin + float(k0) / fs
        t = np.array([self.origin + k0 / self.fs]) if m == 1 else grid_times(k0, m, self.fs, self.origin)
        block = self._emit(k0, t)
        self.next_index = k0 + m
        return block

    # -- subclass hooks ------------------------------------------------------------------------
    def _ingest(self, ts: np.ndarray, x: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _advance(self, known_until: float) -> None:
        """Finalise whatever input ``known_until`` makes final (default: nothing)."""

    def _emit(self, k0: int, t: np.ndarray) -> GridBlock:  # pragma: no cover - abstract
        raise NotImplementedError

    def _emit_scalar(self, tt: float) -> tuple[float, int] | None:
        """``(values[0], quality[0])`` of ``_emit(k0, [tt])`` in scalars, with the same effects on the state.

        None: no scalar path (now); the caller calls ``_emit``. By default there is none.
        """
        return None

    def _empty_block(self, k0: int) -> GridBlock:
        """What ``_emit(k0, t)`` returns for no grid time (``t`` of shape (0,))."""
        return GridBlock(k0, np.empty(0), np.empty(0, np.uint8))


def stream_in_chunks(p: GridPreprocessor, ts, x, rng: np.random.Generator, t_end: float,
                     max_chunk: int = 50) -> GridBlock:
    """Push ``ts, x`` in random chunks with random pulls in between (for tests and benchmarks).

    Each pull's ``until`` lies between the last pushed timestamp and the next
    one, so it honours the contract. Returns all blocks concatenated, ending
    with ``pull(t_end + latency)``.
    """
    ts = np.asarray(ts, float)
    x = np.asarray(x, float)
    blocks = []
    i = 0
    while i < ts.size:
        n = int(rng.integers(1, max_chunk + 1))
        p.push(ts[i:i + n], x[i:i + n])
        i = min(i + n, ts.size)
        if i < ts.size and rng.random() < 0.5:
            lo, hi = ts[i - 1], ts[i]
            blocks.append(p.pull(lo + rng.random() * (hi - lo)))
    blocks.append(p.pull(float(t_end) + p.latency))
    return concat_blocks(blocks)
