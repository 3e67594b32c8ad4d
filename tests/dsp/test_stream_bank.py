"""The stream banks (:mod:`attune_monitor.dsp.stream_bank`) give the pipeline what per-stream pulls give, bit for bit.

A messy group session (skin conductance at 4 and 15 Hz with jitter, flat runs, motion, electrode off, NaN and
timestamp gaps; device heart rate with and without dating back, NaN and implausible values; an RR stream; people
who join late or vanish; a stream whose samples come in late bursts; a stream with repeated and decreasing
timestamps) runs through two pipelines: one pulling every stream on its own (``stream_bank_min = None``, the
reference) and one with banks for groups of two streams on. Pushes come as a sample at a time or as everything up
to each tick, and ``advance`` runs in live ticks or random chunks (several grid samples per pull: the banks hand
their rows back). Every update (grid, codes, windows, events, arousal), the signal-loss periods and the episodes
must be the same.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from attune_monitor.dsp import stream_bank
from attune_monitor.dsp.pipeline import PipelineConfig, SessionPipeline, Slot
from tests.dsp.test_pull_paths import _digest, _eda_stream, _heart_stream

pytestmark = pytest.mark.skipif(not stream_bank.available(), reason="the banks need numba")

SECONDS = 220.0


def _group(seed: int, n_people: int = 12, uniform: bool = False):
    """Slots and each slot's (timestamps, values) of the messy group (see the module notes); ``uniform``: everybody
    has device heart rate without dating back and 4 Hz skin conductance (one bank per modality)."""
    rng = np.random.default_rng(seed)
    slots, data = [], []
    for k in range(n_people):
        p = f"P{k + 1}"
        t0 = 0.3 if k % 4 else rng.uniform(20.0, 60.0)                 # every fourth joins late
        t1 = SECONDS if k % 5 != 1 else rng.uniform(100.0, 170.0)      # some vanish before the end
        heart = "rr" if k == 7 and not uniform else "hr"
        averaging = 4.0 if k % 3 == 2 and not uniform else 0.0          # two banks of device heart rate
        slots.append(Slot(p, heart, 0.0 if heart == "rr" else 1.0, f"{p}-{heart}",
                          averaging_s=averaging if heart == "hr" else 0.0))
        data.append(_heart_stream(rng, heart, t0, t1, aligned=k == 3))
        srate = 15.0 if k % 5 == 4 and not uniform else 4.0            # two banks of skin conductance
        slots.append(Slot(p, "eda", srate, f"{p}-eda"))
        data.append(_eda_stream(rng, srate, t0 + rng.uniform(0, 1), t1, aligned=k == 3))
    # a stream with repeated, decreasing and NaN timestamps (the push drops them: the bank hands the row back)
    ts, x = data[2 * 5 + 1]
    ts = ts.copy()
    bad = rng.random(ts.size)
    ts[bad < 0.01] = np.nan
    ts[(bad >= 0.01) & (bad < 0.02)] -= 0.5
    data[2 * 5 + 1] = (ts, x)
    return slots, data


def _run(slots, data, bank_min, untils, single: bool, late: int, cls=SessionPipeline, ahead=()) -> tuple:
    """Every update's digest, the loss periods and the episodes of one pipeline over the session, and the pipeline."""
    pipe = cls.__new__(cls)
    pipe.stream_bank_min = bank_min
    pipe.__init__(slots, 0.0, PipelineConfig())
    cursor, out = [0] * len(data), []
    for until in untils:
        for s, (ts, x) in enumerate(data):
            if s == late and until < SECONDS and (until % 6.0) > 0.3:
                continue  # this stream's samples arrive in bursts, every 6 s, after the ticks have passed them
            due = until + 6.0 if s in ahead else until  # (these streams' samples come 6 s early)
            j = int(np.searchsorted(ts, due, side="right")) if np.isfinite(ts).all() else _upto(ts, due)
            if j > cursor[s]:
                if single:
                    for a in range(cursor[s], j):
                        pipe.push(s, ts[a:a + 1], x[a:a + 1])
                else:
                    pipe.push(s, ts[cursor[s]:j], x[cursor[s]:j])
                cursor[s] = j
        out.append(_digest(pipe.advance(float(until))))
    pipe.inside_at_end = sum(int(b.inside.sum()) for b, _ in pipe._banks)  # (the flush takes several at once)
    out.append(_digest(pipe.flush(SECONDS)))
    return (out, repr(pipe.loss.periods), repr(pipe.finish())), pipe


def _upto(ts: np.ndarray, until: float) -> int:
    """Index after the last sample of a stream with bad timestamps that is due by ``until`` (in arrival order)."""
    good = np.where(np.isfinite(ts), ts, -np.inf)
    return int(np.searchsorted(np.maximum.accumulate(good), until, side="right"))


def _untils(rng, how: str) -> np.ndarray:
    if how == "tick":
        return np.arange(0.25, SECONDS + 0.25, 0.25)
    lo, hi = {"short": (0.02, 2.0), "long": (5.0, 60.0)}[how]
    u = np.cumsum(rng.uniform(lo, hi, int(2 * SECONDS / (lo + hi)) + 50))
    return u[u < SECONDS]


class _Count:
    """Counts the calls of a bank method (and calls it)."""

    def __init__(self, monkeypatch, name: str):
        self.n = 0
        inner = getattr(stream_bank.StreamBank, name)

        def wrapper(bank, *args):
            self.n += 1
            return inner(bank, *args)

        monkeypatch.setattr(stream_bank.StreamBank, name, wrapper)


@pytest.mark.parametrize("seed, how, single, uniform", [
    (1, "tick", False, False), (2, "tick", False, False), (1, "tick", True, False), (1, "short", False, False),
    (2, "long", True, False), (1, "tick", False, True), (2, "tick", True, True), (2, "short", False, True)])
def test_banks_give_the_per_stream_updates(seed, how, single, uniform, monkeypatch):
    slots, data = _group(seed, uniform=uniform)
    untils = _untils(np.random.default_rng(seed + 20), how)
    late = 2 * 9  # P10's heart rate arrives in bursts
    ref, ref_pipe = _run(slots, data, None, untils, single, late)
    released, adopted = _Count(monkeypatch, "release"), _Count(monkeypatch, "adopt")
    direct = [0, 0]  # takes of a modality's grid sample straight from its bank's arrays, other takes
    take = SessionPipeline._take_scalars

    def counted(pipe, m):
        b = pipe._bank_rows.get(m, (-1,))[0]
        fresh = b in pipe._fresh and pipe._fresh[b][0][0] == pipe.k
        out = take(pipe, m)
        direct[0 if fresh else 1] += out is not None
        return out

    monkeypatch.setattr(SessionPipeline, "_take_scalars", counted)
    got, pipe = _run(slots, data, 2, untils, single, late)
    assert not ref_pipe._banks
    kinds = sorted((type(b).__name__, len(g)) for b, g in pipe._banks)
    if uniform:  # one bank per modality: a live tick's samples go from the bank's arrays into the grid
        assert kinds == [("EdaBank", 12), ("HeartRateBank", 12)], kinds
        assert direct[0] > (500 if how == "tick" else 0) and direct[1] > 10, direct
    else:
        assert kinds == [("EdaBank", 2), ("EdaBank", 10), ("HeartRateBank", 4), ("HeartRateBank", 7)], kinds
        assert direct[0] == 0
    assert got[1:] == ref[1:]  # loss periods, episodes
    for k, (a, b) in enumerate(zip(got[0], ref[0])):
        assert a == b, f"update {k} differs"
    assert len(got[0]) == len(ref[0])
    # the flush handed every row back: each object's state is the reference's (buffers: the tail both keep)
    for _, slots_of in pipe._banks:
        for i in slots_of:
            p, q = pipe._pre[i], ref_pipe._pre[i]
            assert (p.next_index, p.known_until, p.last_ts) == (q.next_index, q.known_until, q.last_ts)
            names = ("_ts", "_x", "_flag", "_lvl", "_ton", "_q") if hasattr(p, "_flag") else ("_ts", "_x")
            for name in names:
                a, b = getattr(p, name), getattr(q, name)
                k = min(a.size, b.size)
                # heart rate drops its samples the same way at every grid sample; skin conductance as it fills
                assert a.size == b.size if len(names) == 2 else k > 0
                assert a[a.size - k:].tobytes() == b[b.size - k:].tobytes(), name
            if hasattr(p, "_flag"):
                assert (p._zi, p._tzi, p._last_clean_ts) == (q._zi, q._tzi, q._last_clean_ts)
    n_grid = sum(d[1][0][1][1] for d in got[0] if d[1])
    assert n_grid == int(SECONDS * 4) + 1  # the grid was produced
    codes = set()
    for d in got[0]:
        for _m, _, _, q in d[1]:
            codes |= set(np.frombuffer(q, np.uint8).tolist())
    assert {0, 1, 2, 3, 4, 5} <= codes, codes  # ok, corrected, no data, electrode off, motion, implausible
    # the rows left the banks (bad timestamps, bursts, motion to bridge, several grid samples due) and came back
    assert released.n > 5
    if how == "long":  # several grid samples due at every pull: the objects pull them all
        assert adopted.n == 0 and released.n == sum(len(g) for _, g in pipe._banks)
    else:
        assert adopted.n > 0
    if how == "tick":
        assert adopted.n > 3
        assert pipe.inside_at_end >= 20  # most rows are in their bank at the end


class _EveryOtherTick(SessionPipeline):
    """Hands every row of its banks to the objects before every other pull (they take them back after it)."""

    stream_bank_min = 2
    n_pulls = 0

    def _pull_streams(self, until):
        self.n_pulls += 1
        if self.n_pulls % 2:
            for bank, _ in self._banks:
                for r in np.flatnonzero(bank.inside).tolist():
                    bank.release(r)
        super()._pull_streams(until)


@pytest.mark.parametrize("seed", [3, 4])
def test_rows_handed_over_every_other_tick(seed):
    """Rows going back and forth between bank and object every tick give the per-stream updates bit for bit; with
    some skin-conductance samples pushed early, the objects bridge motion stretches well before the grid reaches
    them and the banks interpolate across what the objects bridged."""
    slots, data = _group(seed, uniform=True)
    untils = _untils(None, "tick")
    ahead = {2 * k + 1 for k in range(0, 12, 2)}
    ref, _ = _run(slots, data, None, untils, False, -1, ahead=ahead)
    got, pipe = _run(slots, data, 2, untils, False, -1, cls=_EveryOtherTick, ahead=ahead)
    assert pipe._banks and pipe.n_pulls > 800
    assert got == ref


def test_banked_rows_pull_what_their_objects_pull():
    """Row by row: a bank's pull of a tick gives the grid sample its preprocessor object's ``pull_scalar`` gives
    from the same state (the bank's state handed to a copy of the object), over a whole session."""
    slots, data = _group(5)
    pipe = SessionPipeline.__new__(SessionPipeline)
    pipe.stream_bank_min = 2
    pipe.__init__(slots, 0.0, PipelineConfig())

    n_one = 0
    cursor = [0] * len(data)
    for until in np.arange(0.25, 120.0, 0.25):
        for s, (ts, x) in enumerate(data):
            j = _upto(ts, until)
            if j > cursor[s]:
                pipe.push(s, ts[cursor[s]:j], x[cursor[s]:j])
                cursor[s] = j
        for bank, slots_of in pipe._banks:
            for r in np.flatnonzero(~bank.inside).tolist():  # rows handed back: pulled by their objects
                if isinstance(pipe._pull_one(slots_of[r], float(until), True), tuple):
                    bank.adopt(r)
            rows = np.flatnonzero(bank.inside)
            objs = []
            for r in rows.tolist():
                twin = copy.deepcopy(bank.pres[r])  # (stale while the row is in the bank)
                bank.write_state(r, twin)
                objs.append(twin)
            status = bank.pull(float(until))
            for r, p in zip(rows.tolist(), objs):
                want = p.pull_scalar(float(until))
                if status[r] == 1:
                    n_one += 1
                    if not isinstance(want, tuple):  # (nothing to interpolate from: a block of one sample)
                        assert len(want) == 1
                        want = (float(want.values[0]), int(want.quality[0]))
                    assert np.array([want[0]]).tobytes() == np.array([bank.vals[r]]).tobytes()
                    assert want[1] == bank.quals[r] and p.next_index == bank.next_index(r)
                elif status[r] == 0:
                    assert len(want) == 0
            for r in np.flatnonzero(bank.status[rows] == 2).tolist():
                bank.release(int(rows[r]))
                pipe._pull_one(slots_of[int(rows[r])], float(until), True)
        # the pipeline's own bookkeeping is not under test here: clear what the pulls left pending
        for lst in pipe._pending:
            lst.clear()
    assert n_one > 0.8 * 120 * 4 * sum(len(g) for _, g in pipe._banks)


def test_size_threshold_and_a_dyad_does_not_import_numba():
    code = ("import sys\n"
            "from attune_monitor.dsp.pipeline import SessionPipeline, Slot\n"
            "from attune_monitor.dsp.stream_bank import STREAM_BANK_MIN_STREAMS as N\n"
            "def slots(n): return [Slot(f'P{i}', k, r) for i in range(n) for k, r in (('hr', 1.0), ('eda', 4.0))]\n"
            "p = SessionPipeline(slots(2), 0.0); assert not p._banks\n"
            "p = SessionPipeline(slots(N - 1), 0.0); assert not p._banks\n"
            "assert 'numba' not in sys.modules, 'numba imported'\n"
            "p = SessionPipeline(slots(N), 0.0); assert len(p._banks) == 2\n"
            "assert 'numba' in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
