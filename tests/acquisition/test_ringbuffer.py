"""RingBuffer: bounded memory, wrap-around, incremental reads, overflow accounting."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from attune_monitor.acquisition.ringbuffer import RingBuffer


def test_wraparound_matches_reference_list(rng):
    """Random chunk sizes (some larger than the buffer) against a plain Python list of everything pushed."""
    buf = RingBuffer(37)
    ref_t, ref_v = [], []
    cursor, seen_t = 0, []
    for i in range(300):
        n = int(rng.integers(0, 50 if i % 10 else 90))
        t = np.arange(len(ref_t), len(ref_t) + n) * 0.1
        v = rng.normal(size=n)
        buf.push(t, v)
        ref_t += list(t)
        ref_v += list(v)
        # the buffer holds exactly the newest `capacity` samples, in order
        keep = min(len(ref_t), buf.capacity)
        chunk = buf.read(max(0, len(ref_t) - keep))
        np.testing.assert_array_equal(chunk.timestamps, ref_t[len(ref_t) - keep:])
        np.testing.assert_array_equal(chunk.values, ref_v[len(ref_v) - keep:])
        assert chunk.n_lost == 0
        # an incremental reader that keeps up sees every sample exactly once
        if n <= buf.capacity:
            t_new, v_new, cursor2 = buf.read_new(cursor)
            assert cursor2 - cursor == len(t_new)
            seen_t += list(t_new)
            cursor = cursor2
        else:  # this reader fell behind: it is told how many it lost
            chunk = buf.read(cursor)
            assert chunk.n_lost == n - buf.capacity
            assert chunk.cursor - cursor - len(chunk.timestamps) == chunk.n_lost
            seen_t += [None] * chunk.n_lost + list(chunk.timestamps)
            cursor = chunk.cursor
    assert len(seen_t) == len(ref_t)
    assert [s for s in seen_t if s is not None] == [t for t, s in zip(ref_t, seen_t) if s is not None]


def test_memory_is_fixed_by_capacity_not_session_length():
    buf = RingBuffer.for_seconds(10.0, 100.0)  # 10 s at 100 Hz (+25 % headroom)
    assert buf.capacity == 1250
    before = buf.nbytes
    arrays = (buf._t, buf._v, buf._c)
    for k in range(200):  # 200 s of data
        buf.push(np.arange(100) * 0.01 + k, np.ones(100))
    assert buf.nbytes == before == 1250 * (8 + 8 + 1)
    assert all(a is b for a, b in zip(arrays, (buf._t, buf._v, buf._c)))  # never reallocated
    assert len(buf) == 1250 and buf.n_written == 20000


def test_get_window_returns_copies_of_the_last_seconds():
    buf = RingBuffer(100)
    t = np.arange(250) * 0.5  # 0 .. 124.5 s
    buf.push(t, t * 2)
    wt, wv = buf.get_window(10.0)
    np.testing.assert_array_equal(wt, t[(t > t[-1] - 10)])
    np.testing.assert_array_equal(wv, wt * 2)
    wt[:] = -1  # a copy: the buffer is untouched
    assert buf.get_window(10.0)[0][0] == 115.0  # (124.5 - 10, 124.5]
    wt2, _ = buf.get_window(5.0, now=100.0)
    np.testing.assert_array_equal(wt2, t[(t > 95.0) & (t <= 100.0)])
    assert buf.get_window(1000.0)[0].size == 100  # never more than the capacity


def test_concurrent_writer_and_reader_lose_nothing():
    buf = RingBuffer(500)
    total = 20000
    got = []

    def writer():
        for k in range(0, total, 10):
            buf.push(np.arange(k, k + 10, dtype=float), np.arange(k, k + 10, dtype=float))

    th = threading.Thread(target=writer)
    th.start()
    cursor = 0
    while th.is_alive() or cursor < total:
        chunk = buf.read(cursor)
        assert chunk.n_lost == 0 or len(got) + chunk.n_lost + len(chunk.values) == chunk.cursor
        got += [None] * chunk.n_lost + list(chunk.values)
        cursor = chunk.cursor
    th.join(5)
    # whatever was not lost arrived intact and in order
    assert len(got) == total
    idx = np.array([g for g in got if g is not None])
    assert np.all(np.diff(idx) > 0)
    assert set(idx.astype(int)) <= set(range(total))


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(0)
    with pytest.raises(ValueError, match="differ in length"):
        RingBuffer(4).push([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="cursor"):
        RingBuffer(4).read(-1)
