"""Memory of the synchrony engine's work arrays in a long live session (issue 21).

A live tick hands the engine as many synchrony windows as completed since the last one; how many depends on the
machine's load (a stalled tick brings a backlog). The work arrays kept between ticks (``engine._Scratch``) must not
grow with every backlog size seen: one buffer per name, as large as the largest call's.
"""

from __future__ import annotations

import inspect
import tracemalloc

import numpy as np

from attune_monitor.dsp import engine as en
from attune_monitor.dsp import synchrony as sy

FS = 4.0


def _kept_by_scratch(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still allocated by lines of ``engine._Scratch`` (numpy reports its data buffers to tracemalloc)."""
    lines, first = inspect.getsourcelines(en._Scratch)
    return sum(t.size for t in snapshot.traces
               if t.traceback[0].filename == en.__file__ and first <= t.traceback[0].lineno < first + len(lines))


def test_work_arrays_kept_between_ticks_do_not_grow_with_each_backlog_size(rng):
    """Windows per call 1..30 (then smaller again) through one scratch, 9 people (every work array is used): the
    results equal those of a fresh scratch bit for bit, and what stays allocated is one set of the largest call's
    arrays (one per shape seen before: 15.5 times that)."""
    P, win, L = 9, 121, 20
    n = win - L
    ia, ib = sy.pair_index(P)
    scratch = en._Scratch()
    sizes = [*range(1, 31), 30, 7, 1]
    arrays = [8 * max(sizes) * P * k for k in (3 * (win + 1), (L + 1) * n, (L + 1) * P)]  # cumsum, follow, r
    assert max(arrays) <= en._Scratch.max_bytes  # each is kept
    largest = sum(arrays)
    tracemalloc.start()
    try:
        for n_w in sizes:
            W = np.cumsum(rng.standard_normal((n_w, P, win)), -1) + rng.uniform(-50, 50, (1, P, 1))
            got = en._xcorr_full(W, ia, ib, L, True, FS, scratch)
            ref = en._xcorr_full(W, ia, ib, L, True, FS)  # a fresh scratch
            assert got is not None and ref is not None
            for g, r in zip(got, ref):
                np.testing.assert_array_equal(g, r)
        kept = _kept_by_scratch(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    assert largest <= kept <= largest + 4096, (kept, largest)
    assert scratch  # alive until measured


def test_a_request_larger_than_max_bytes_is_not_kept():
    """Above ``max_bytes`` an array is made for the call and not kept; the buffer kept before stays."""
    scratch = en._Scratch()
    small = scratch.get("x", (4, 5))
    assert small.shape == (4, 5) and small.flags.c_contiguous
    big_rows = en._Scratch.max_bytes // (8 * 5) + 1
    tracemalloc.start()
    try:
        big = scratch.get("x", (big_rows, 5))
        assert big.shape == (big_rows, 5)
        del big
        kept = _kept_by_scratch(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    assert kept == 0  # the large one was freed with the caller's last reference
    again = scratch.get("x", (2, 5))
    assert np.shares_memory(again, small)  # the small buffer serves smaller requests
