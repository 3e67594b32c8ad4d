"""A bounded, thread-safe ring buffer of one signal's values, LSL timestamps and quality codes.

Memory is fixed when the buffer is made (``capacity`` samples, normally
``buffer_seconds`` times the stream's rate) and never grows with the length
of a session. A writer thread calls :meth:`RingBuffer.push`; readers get
**copies**, either of the last seconds (:meth:`RingBuffer.get_window`, for
plots) or of everything new since their cursor (:meth:`RingBuffer.read_new`,
for the pipeline). A cursor is the absolute index of the next sample to read
(the number of samples ever pushed when the reader is up to date), so a
reader that falls more than ``capacity`` samples behind learns exactly how
many samples it lost.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["Chunk", "RingBuffer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """What :meth:`RingBuffer.read` hands a reader.

    Attributes
    ----------
    timestamps : ndarray, shape (n,)
        LSL timestamps (seconds, float64), in the order the samples arrived.
    values : ndarray, shape (n,)
        Values in canonical units (float64); NaN where a sample was flagged.
    codes : ndarray, shape (n,)
        :class:`attune_monitor.dsp.quality.Quality` code per sample (uint8).
    cursor : int
        Pass this to the next read.
    n_lost : int
        Samples that were overwritten before this reader got to them (0 unless
        the reader fell more than ``capacity`` samples behind).
    """

    timestamps: np.ndarray
    values: np.ndarray
    codes: np.ndarray
    cursor: int
    n_lost: int = 0


class RingBuffer:
    """Preallocated circular storage for ``(timestamp, value, code)`` samples.

    Parameters
    ----------
    capacity : int
        Number of samples kept. Older samples are overwritten.

    Notes
    -----
    All methods are thread-safe (one lock); every array a reader gets is a
    copy, so it stays valid while the writer goes on.
    """

    def __init__(self, capacity: int):
        capacity = int(capacity)
        if capacity < 1:
            raise ValueError(
                f"Invalid value for 'capacity': expected a positive number of samples, but got {capacity}.")
        self.capacity = capacity
        self._t = np.full(capacity, np.nan, dtype=np.float64)
        self._v = np.full(capacity, np.nan, dtype=np.float64)
        self._c = np.zeros(capacity, dtype=np.uint8)
        self._written = 0  # samples ever pushed: the next sample's absolute index
        self._lock = threading.Lock()

    @classmethod
    def for_seconds(cls, seconds: float, rate: float) -> RingBuffer:
        """A buffer holding ``seconds`` of a stream at ``rate`` Hz (with 25 % headroom for rate drift)."""
        if not seconds > 0 or not rate > 0:
            raise ValueError(
                f"Invalid buffer: expected positive 'seconds' and 'rate', but got seconds={seconds}, rate={rate}."
            )
        return cls(max(16, math.ceil(seconds * rate * 1.25)))

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer's arrays (constant for its lifetime)."""
        return self._t.nbytes + self._v.nbytes + self._c.nbytes

    @property
    def n_written(self) -> int:
        """Samples ever pushed (also the cursor of a reader that is up to date)."""
        with self._lock:
            return self._written

    def __len__(self) -> int:
        with self._lock:
            return min(self._written, self.capacity)

    def push(self, timestamps, values, codes=None) -> None:
        """Append samples, overwriting the oldest ones when full.

        Parameters
        ----------
        timestamps : array-like, shape (n,)
        values : array-like, shape (n,)
        codes : array-like of uint8, shape (n,) | None
            Quality codes; ``None`` means all ``Quality.OK`` (0).
        """
        t = np.asarray(timestamps, dtype=np.float64).ravel()
        v = np.asarray(values, dtype=np.float64).ravel()
        if t.shape != v.shape:
            raise ValueError(f"timestamps and values differ in length: {t.shape[0]} vs {v.shape[0]}.")
        c = np.zeros(t.shape, np.uint8) if codes is None else np.asarray(codes, dtype=np.uint8).ravel()
        n = t.shape[0]
        if n == 0:
            return
        cap = self.capacity
        if n > cap:  # only the newest `cap` samples can be kept
            skip = n - cap
            t, v, c = t[skip:], v[skip:], c[skip:]
        else:
            skip = 0
        with self._lock:
            start = (self._written + skip) % cap
            m = t.shape[0]
            first = min(m, cap - start)
            self._t[start:start + first] = t[:first]
            self._v[start:start + first] = v[:first]
            self._c[start:start + first] = c[:first]
            if first < m:
                rest = m - first
                self._t[:rest] = t[first:]
                self._v[:rest] = v[first:]
                self._c[:rest] = c[first:]
            self._written += n

    def _copy_range(self, begin: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of absolute samples ``begin .. end-1`` (caller holds the lock and checked bounds)."""
        n = end - begin
        idx = (np.arange(n) + begin) % self.capacity if n else np.empty(0, dtype=np.intp)
        return self._t[idx], self._v[idx], self._c[idx]

    def read(self, cursor: int = 0) -> Chunk:
        """Every sample pushed since ``cursor``, as copies.

        Parameters
        ----------
        cursor : int
            Absolute index of the first sample wanted (0 for "from the start";
            a previous ``Chunk.cursor`` to continue).

        Returns
        -------
        chunk : Chunk
            ``chunk.n_lost`` > 0 when the oldest wanted samples were already overwritten.
        """
        cursor = int(cursor)
        if cursor < 0:
            raise ValueError(f"Invalid value for 'cursor': expected an index >= 0, but got {cursor}.")
        with self._lock:
            end = self._written
            oldest = max(0, end - self.capacity)
            begin = min(max(cursor, oldest), end)
            n_lost = max(0, oldest - cursor) if cursor < end else 0
            t, v, c = self._copy_range(begin, end)
        if n_lost:
            logger.warning("reader fell behind: %d samples were overwritten before they were read", n_lost)
        return Chunk(t, v, c, end, n_lost)

    def read_new(self, cursor: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Incremental read for the pipeline.

        Returns
        -------
        timestamps : ndarray, shape (n,)
        values : ndarray, shape (n,)
        new_cursor : int
            ``new_cursor - cursor - n`` samples were lost to overflow (0 normally;
            :meth:`read` reports it directly, with quality codes).
        """
        chunk = self.read(cursor)
        return chunk.timestamps, chunk.values, chunk.cursor

    def get_window(self, seconds: float, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The samples of the last ``seconds`` (copies).

        Parameters
        ----------
        seconds : float
            Window length in seconds.
        now : float | None
            End of the window, in LSL time; default: the newest sample's timestamp.

        Returns
        -------
        timestamps : ndarray, shape (n,)
        values : ndarray, shape (n,)
        """
        t, v, _ = self.get_window_with_codes(seconds, now)
        return t, v

    def get_window_with_codes(self, seconds: float, now: float | None = None):
        """Like :meth:`get_window`, also returning the quality codes, shape (n,)."""
        with self._lock:
            end = self._written
            begin = max(0, end - self.capacity)
            t, v, c = self._copy_range(begin, end)
        if t.size == 0:
            return t, v, c
        stop = t[-1] if now is None else float(now)
        keep = (t > stop - float(seconds)) & (t <= stop)
        return t[keep], v[keep], c[keep]
