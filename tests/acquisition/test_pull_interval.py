"""Many receivers in one process pull less often each (issue 21: a 64-person live monitor, 144 streams).

One worker thread per stream, each waking every 20 ms, cost a 64-person monitor most of a core and its ticks the
GIL; :func:`pull_interval` bounds the pulls of all the receivers together, never waiting longer than
:data:`MAX_PULL_INTERVAL_S` (well under the live source's 0.5-s safety margin), and small sessions are unchanged.
"""

from __future__ import annotations

import numpy as np

from attune_monitor.acquisition.inlet import (
    MAX_PULL_INTERVAL_S,
    RECEIVER_PULLS_PER_S,
    StreamReceiver,
    pull_interval,
)
from attune_monitor.acquisition.lsl import pylsl
from tests.acquisition.test_inlet import NOT_STALE, make_info, sid, wait_until


def test_pull_interval_by_number_of_receivers():
    assert RECEIVER_PULLS_PER_S == 800.0 and MAX_PULL_INTERVAL_S == 0.1
    assert pull_interval(0) == pull_interval(4) == pull_interval(16) == 0.02  # a dyad, a small group: as before
    assert np.isclose(pull_interval(32), 0.04) and np.isclose(pull_interval(64), 0.08)
    assert pull_interval(80) == pull_interval(144) == pull_interval(10_000) == 0.1  # never longer than 0.1 s
    assert pull_interval(144, poll_interval=0.5) == 0.5  # a receiver's own longer interval is kept
    assert pull_interval(2, poll_interval=0.005) == 0.005
    for n in range(0, 400, 7):  # at most 800 pulls per second in all, until the 0.1-s cap
        assert n / pull_interval(n) <= RECEIVER_PULLS_PER_S + 1e-9 or pull_interval(n) == MAX_PULL_INTERVAL_S


def test_forty_receivers_are_counted_and_lose_nothing():
    """40 streams at 32 Hz into 40 receivers: each pulls every 0.05 s (40 / 800), and every sample arrives, in order."""
    base = StreamReceiver.running()
    n_streams, n = 40, 96  # 3 s at 32 Hz each
    prefix = sid("many")
    tags = [f"{prefix}-{k}" for k in range(n_streams)]
    outlets = [pylsl.StreamOutlet(make_info(f"P{k} EDA", "eda", f"P{k}", tags[k], srate=32, unit="uS"))
               for k in range(n_streams)]
    receivers = []
    try:
        found = {i.source_id(): i for i in pylsl.resolve_bypred(f"starts-with(source_id,'{prefix}-')", n_streams, 30.0)}
        assert sorted(found) == sorted(tags)
        receivers = [StreamReceiver(found[tag], stale_after=NOT_STALE).start() for tag in tags]
        assert wait_until(lambda: StreamReceiver.running() == base + n_streams)
        assert np.isclose(pull_interval(StreamReceiver.running()), max(0.02, (base + n_streams) / 800.0))
        for o in outlets:
            assert o.wait_for_consumers(30.0)
        t0 = pylsl.local_clock() - n / 32
        for k in range(n):
            for i, o in enumerate(outlets):
                o.push_sample([2.0 + 0.05 * i + 0.001 * k], t0 + k / 32)  # plausible uS, each stream its own
        assert wait_until(lambda: all(r.buffer.n_written >= n for r in receivers))
        for i, r in enumerate(receivers):
            t, v, cursor = r.read_new(0)
            assert cursor == n
            np.testing.assert_allclose(v, 2.0 + 0.05 * i + 0.001 * np.arange(n), rtol=1e-6)  # complete, in order
            assert np.all(np.diff(t) > 0)
    finally:
        for r in receivers:
            r.close()
        del outlets
    assert wait_until(lambda: StreamReceiver.running() == base)
