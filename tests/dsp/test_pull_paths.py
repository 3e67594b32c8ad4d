"""The preprocessors' live paths (issue 21) give what their array paths give, on a messy randomised group session.

A live pull finalises a sample or two per stream; :class:`attune_monitor.dsp.eda.EdaPreprocessor` then flags,
cleans and resamples them with Python scalars (``_flags_few``, ``_clean_few``, ``_emit_one``) and the device-HR
path of :class:`attune_monitor.dsp.heart.HeartPreprocessor` interpolates one grid time in scalars
(``_hr_value_one``); a pull with no grid time due returns an empty block without calling ``_emit``. Those are
meant to be bit for bit the array code that a batch (or a large chunk) runs. Here a randomised session of several
people (skin conductance at 4, 15 and 32 Hz with jittered timestamps, device HR or RR; NaN, timestamp gaps, flat
runs, motion spikes, electrode off, people who join late or vanish early) is fed to the pipeline's preprocessors
twice per chunking, once as they run and once forced onto their array paths, in chunks from a live tick (0.25 s)
to a minute, and the grid values, tonic and phasic levels and quality codes must be equal (NaN where NaN), bit
for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.dsp.eda import EdaPreprocessor
from attune_monitor.dsp.grid import grid_times
from attune_monitor.dsp.heart import HeartPreprocessor
from attune_monitor.dsp.pipeline import PipelineConfig, SessionPipeline, Slot

SECONDS = 260.0


def _eda_stream(rng, srate: float, t0: float, t1: float, aligned: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Skin conductance (uS) at ``srate`` from ``t0`` to ``t1`` with jitter (none when ``aligned``: every sample
    on a grid time), gaps and every kind of artefact."""
    period = 1.0 / srate
    if aligned:
        ts = np.arange(np.ceil(t0 * srate), np.floor(t1 * srate)) / srate
    else:
        ts = np.arange(t0, t1, period) + rng.uniform(-0.3, 0.3) * period
        ts = ts + rng.uniform(-0.2, 0.2, ts.size) * period  # jitter: still strictly increasing
    x = 4.0 + np.abs(np.cumsum(rng.standard_normal(ts.size)) * 0.02 / np.sqrt(srate)) + 0.002 * rng.standard_normal(
        ts.size)
    keep = np.ones(ts.size, bool)
    for _ in range(rng.integers(2, 5)):
        a = rng.uniform(t0, t1)
        kind = rng.integers(0, 6)
        if kind == 0:    # flat run, from well under to well over flat_s (5 s)
            sel = (ts > a) & (ts < a + rng.uniform(2.0, 9.0))
            x[sel] = round(float(x[sel][0]) if sel.any() else 5.0, 3)
        elif kind == 1:  # motion spike (bridged when short)
            x[(ts > a) & (ts < a + rng.uniform(0.1, 3.0))] += rng.uniform(2.0, 6.0)
        elif kind == 2:  # electrode off
            x[(ts > a) & (ts < a + rng.uniform(0.5, 8.0))] = rng.choice([0.0, 0.01, 150.0])
        elif kind == 3:  # NaN burst
            x[(ts > a) & (ts < a + rng.uniform(0.05, 2.0))] = np.nan
        elif kind == 4:  # timestamp gap, short and long
            keep &= ~((ts > a) & (ts < a + rng.uniform(0.3, 12.0)))
        else:            # alternating motion
            sel = (ts > a) & (ts < a + rng.uniform(1.0, 4.0))
            x[sel] += 3.0 * (np.arange(sel.sum()) % 2)
    return ts[keep], x[keep]


def _heart_stream(rng, kind: str, t0: float, t1: float, aligned: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Device HR (bpm, ~1 Hz, irregular; on whole seconds when ``aligned``) or RR (s, one per beat) with NaN,
    implausible values and a gap."""
    if kind == "hr":
        ts = (np.arange(np.ceil(t0), t1 + 5) if aligned
              else t0 + np.cumsum(rng.uniform(0.6, 1.4, int(t1 - t0) + 5)))
        x = 70 + np.cumsum(rng.standard_normal(ts.size))
        x[rng.random(ts.size) < 0.04] = np.nan
        x[rng.random(ts.size) < 0.03] = rng.choice([10.0, 300.0])
    else:
        rr = 0.8 + 0.05 * np.cumsum(rng.standard_normal(int(1.3 * (t1 - t0)))) / 10
        rr = np.clip(rr, 0.4, 1.5)
        rr[rng.random(rr.size) < 0.03] *= 0.5   # extra / ectopic beats
        rr[rng.random(rr.size) < 0.02] = 3.0    # implausible
        ts = t0 + np.cumsum(rr)
        x = rr
    a = rng.uniform(t0, t1)
    keep = ~((ts > a) & (ts < a + rng.uniform(2.0, 10.0)))
    ts, x = ts[keep], x[keep]
    return ts[ts < t1], x[ts < t1]


def _session(seed: int, n_people: int = 7):
    """Slots and each slot's (timestamps, values): rates 4/15/32 Hz, HR or RR, late joiners and leavers; the 4th
    person's samples lie on grid times (4 Hz skin conductance, device HR on whole seconds)."""
    rng = np.random.default_rng(seed)
    slots, data = [], []
    for k in range(n_people):
        p = f"P{k + 1}"
        t0 = 0.3 if k % 3 else rng.uniform(20.0, 60.0)                 # every third joins late
        t1 = SECONDS if k % 4 != 1 else rng.uniform(120.0, 200.0)        # some vanish before the end
        heart = "rr" if k % 5 == 2 else "hr"
        slots.append(Slot(p, heart, 0.0 if heart == "rr" else 1.0, f"{p}-{heart}",
                          averaging_s=4.0 if (heart == "hr" and k % 2) else 0.0))
        aligned = k == 3  # samples exactly on grid times (the interpolation's exact-match branch)
        data.append(_heart_stream(rng, heart, t0, t1, aligned))
        srate = (4.0, 15.0, 32.0)[k % 3]
        slots.append(Slot(p, "eda", srate, f"{p}-eda"))
        data.append(_eda_stream(rng, srate, t0 + rng.uniform(0, 1), t1, aligned))
    return slots, data


def _array_paths(pipe: SessionPipeline) -> None:
    """Switch every preprocessor of ``pipe`` onto its array paths (the reference)."""
    for p in pipe._pre:
        p._empty_block = lambda k0, p=p: p._emit(k0, np.empty(0))  # a pull with no grid time due
        if isinstance(p, EdaPreprocessor):
            p.few_max = 0
            p._emit = p._emit_many
        elif isinstance(p, HeartPreprocessor) and p.kind == "hr":
            p._hr_values = p._hr_values_many


def _untils(rng, how: str) -> np.ndarray:
    """Pull times: live ticks, random short or random long chunks, up to the end of the session."""
    if how == "tick":
        return np.arange(0.25, SECONDS + 0.25, 0.25)
    lo, hi = {"short": (0.02, 2.0), "long": (5.0, 60.0)}[how]
    untils = np.cumsum(rng.uniform(lo, hi, int(2 * SECONDS / (lo + hi)) + 50))
    return untils[untils < SECONDS]


def _feed(pipe: SessionPipeline, data, untils) -> list:
    """Push each stream's samples up to each ``until`` and pull every preprocessor of ``pipe`` as its
    ``advance`` does; returns each slot's blocks, the last from a pull past the end and every latency."""
    cursor = [0] * len(data)
    blocks: list = [[] for _ in data]
    end = SECONDS + max(p.latency for p in pipe._pre) + 1.0
    for until in [*untils, end]:
        for s, (ts, x) in enumerate(data):
            j = int(np.searchsorted(ts, until, side="right"))
            if j > cursor[s]:
                pipe.push(s, ts[cursor[s]:j], x[cursor[s]:j])
                cursor[s] = j
        for s, p in enumerate(pipe._pre):
            blocks[s].append(p.pull(float(until)))
    return blocks


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("how", ["tick", "short", "long"])
def test_live_paths_equal_array_paths_on_a_messy_group(seed, how):
    slots, data = _session(seed)
    runs = []
    for reference in (False, True):
        pipe = SessionPipeline(slots, 0.0, PipelineConfig())
        if reference:
            _array_paths(pipe)
        runs.append(_feed(pipe, data, _untils(np.random.default_rng(seed + 10), how)))
    live, ref = runs
    codes = set()
    for s, slot in enumerate(slots):
        got, want = live[s], ref[s]
        assert [(b.start, len(b)) for b in got] == [(b.start, len(b)) for b in want]
        assert sum(len(b) for b in got) > 4 * SECONDS
        for f in ("values", "quality", "tonic", "phasic"):
            a = [getattr(b, f) for b in got]
            if a[0] is None:
                assert slot.kind != "eda"
                continue
            np.testing.assert_array_equal(np.concatenate(a), np.concatenate([getattr(b, f) for b in want]))
        if slot.kind == "eda":
            codes |= set(np.concatenate([b.quality for b in got]).tolist())
    # the session exercised what the live paths decide: ok, corrected (bridged motion), motion, electrode off
    # (out of range and flat), no data
    assert {0, 1, 2, 3, 4} <= codes, codes
    if how == "tick":  # the live case: (almost) every pull emitted one grid time through the scalar paths
        n_one = sum(len(b) == 1 for bs in live for b in bs)
        assert n_one > 0.9 * SECONDS * 4 * len(slots)


def test_one_grid_time_is_grid_times():
    """A pull of one grid time builds it as ``origin + k0 / fs`` in Python: the same double as grid_times."""
    rng = np.random.default_rng(3)
    for _ in range(20000):
        k0 = int(rng.integers(0, 10 ** rng.integers(1, 9)))
        fs = float(rng.choice([4.0, 10.0, 3.0, 7.3, rng.uniform(0.5, 100)]))
        origin = float(rng.choice([0.0, rng.uniform(-1e6, 1e6), rng.uniform(0, 1e9)]))
        assert grid_times(k0, 1, fs, origin)[0] == origin + k0 / fs


def test_flags_of_absurd_ranges_live_equal_the_array_code():
    """With a conductance range whose levels overflow (max_level / resolution > the largest double) and values up
    there, the live flags equal the array code's: a level of inf never continues a run (np.diff gives NaN there),
    so a constant stretch up there is not flat."""
    rng = np.random.default_rng(8)
    ts = np.arange(0.0, 60.0, 0.25)
    x = 4.0 + 0.01 * rng.standard_normal(ts.size)
    x[(ts > 10) & (ts < 25)] = 5e306       # level 5e310 -> inf: constant, yet not flat for the array code
    x[(ts > 40) & (ts < 42)] = 3e306       # a short one (not flat)
    blocks = []
    for few in (16, 0):
        p = EdaPreprocessor(fs=4.0, origin=0.0, srate=4.0, max_level=1e307)
        p.few_max = few
        out = []
        with np.errstate(over="ignore", invalid="ignore"):  # the array code: levels of inf, inf - inf (warned)
            for i in range(ts.size):
                p.push(ts[i:i + 1], x[i:i + 1])
                out.append(p.pull(ts[i]))
            out.append(p.pull(ts[-1] + p.latency))
        blocks.append(np.concatenate([b.quality for b in out]))
    np.testing.assert_array_equal(blocks[0], blocks[1])
    assert (blocks[0][15 * 4:20 * 4] == 0).all()  # the constant stretch up there: not flat, ok


@pytest.mark.parametrize("kind", ["eda", "hr", "rr"])
def test_small_pushes_keep_what_the_array_code_keeps(kind, caplog):
    """A push of a few samples checks its timestamps in Python scalars (``few_push``); with repeated, decreasing,
    NaN and infinite timestamps among pushes of 1 to 12 samples, it keeps, drops (and warns about) exactly what the
    array code keeps and drops, and the grid is the same bit for bit."""
    rng = np.random.default_rng(11)
    ts = np.cumsum(rng.uniform(0.05, 0.5, 3000))
    x = (4.0 + 0.1 * rng.random(ts.size)) if kind == "eda" else (
        70 + rng.standard_normal(ts.size) if kind == "hr" else rng.uniform(0.6, 1.0, ts.size))
    bad = rng.random(ts.size)
    ts[bad < 0.02] = np.nan
    ts[(bad >= 0.02) & (bad < 0.03)] = np.inf
    ts[(bad >= 0.03) & (bad < 0.05)] -= rng.uniform(0.0, 2.0, int(((bad >= 0.03) & (bad < 0.05)).sum()))
    ts[(bad >= 0.05) & (bad < 0.06)] = -np.inf
    cuts = np.cumsum(rng.integers(1, 13, ts.size))
    cuts = np.r_[0, cuts[cuts < ts.size], ts.size]
    pulls = rng.random(cuts.size) < 0.5
    runs = []
    for few in (8, 0):
        p = (EdaPreprocessor(fs=4.0, origin=0.0, srate=4.0) if kind == "eda"
             else HeartPreprocessor(kind, fs=4.0, origin=0.0, srate=1.0 if kind == "hr" else None))
        p.few_push = few
        caplog.clear()
        blocks, states = [], []
        for a, b, pull in zip(cuts[:-1], cuts[1:], pulls):
            p.push(ts[a:b], x[a:b])
            states.append((p.last_ts, p.known_until, p.n_dropped))
            if pull:
                blocks.append(p.pull(p.last_ts))
        blocks.append(p.pull(p.last_ts + p.latency))
        runs.append((states, [(b.start, b.values.tobytes(), b.quality.tobytes()) for b in blocks],
                     caplog.text.count("dropped")))
    assert runs[0] == runs[1]
    assert runs[0][0][-1][2] > 100 and runs[0][2] > 50  # samples were dropped (and warned about) along the way


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("how", ["tick", "short"])
def test_scalar_pulls_are_the_pulled_blocks(seed, how):
    """``pull_scalar`` gives a pull of one grid sample as ``(value, code)``, bit for bit the block ``pull`` gives
    (and that block otherwise), on every stream of the messy session, leaving the preprocessor where ``pull`` does;
    the reference's device HR searches its samples with numpy (``few_search = 0``), the scalar path as a list."""
    slots, data = _session(seed)
    pipes = [SessionPipeline(slots, 0.0, PipelineConfig()) for _ in range(2)]
    for p in pipes[1]._pre:
        if isinstance(p, HeartPreprocessor):
            p.few_search = 0
    untils = _untils(np.random.default_rng(seed + 10), how)
    cursor = [0] * len(data)
    n_scalar = 0
    for until in [*untils, SECONDS + 10.0]:
        for s, (ts, x) in enumerate(data):
            j = int(np.searchsorted(ts, until, side="right"))
            if j > cursor[s]:
                for pipe in pipes:
                    pipe.push(s, ts[cursor[s]:j], x[cursor[s]:j])
                cursor[s] = j
        for p, ref in zip(pipes[0]._pre, pipes[1]._pre):
            got, want = p.pull_scalar(float(until)), ref.pull(float(until))
            if isinstance(got, tuple):
                n_scalar += 1
                assert len(want) == 1 and want.start == p.next_index - 1
                assert np.array([got[0]]).tobytes() == want.values.tobytes() and got[1] == int(want.quality[0])
                assert type(got[0]) is float and type(got[1]) is int
            else:
                assert (got.start, got.values.tobytes(), got.quality.tobytes()) == (
                    want.start, want.values.tobytes(), want.quality.tobytes())
            assert p.next_index == ref.next_index
    if how == "tick":  # device HR and skin conductance have scalar paths, RR does not
        n_rr = sum(s.kind == "rr" for s in slots)
        assert n_scalar > 0.9 * SECONDS * 4 * (len(slots) - n_rr)


def _digest(upd) -> tuple:
    """Every array and event of an update, as bytes / reprs."""
    windows = tuple((m, k, np.asarray(v).tobytes()) for m in sorted(upd.windows) for k, v in
                    sorted(upd.windows[m].items()))
    return (upd.grid_start, tuple((m, upd.grid[m].shape, upd.grid[m].tobytes(), upd.quality[m].tobytes())
                                  for m in sorted(upd.grid)), windows, repr(upd.events),
            upd.arousal.tobytes(), upd.arousal_state.tobytes(), upd.arousal_div.tobytes())


@pytest.mark.parametrize("how", ["tick", "short", "long"])
@pytest.mark.parametrize("drop_eda", [False, True])
def test_pipeline_scalar_pulls_equal_block_pulls(how, drop_eda):
    """The pipeline taking live grid samples as scalars (``scalar_pulls``) gives the updates of taking them as blocks,
    bit for bit, on the messy session in live ticks and random chunks, also with a person without a skin stream
    (whose row is then filled a person at a time)."""
    slots, data = _session(3)
    if drop_eda:
        slots, data = slots[:-1], data[:-1]  # the last person has heart rate only
    untils = [*_untils(np.random.default_rng(13), how), SECONDS]
    runs = []
    for scalar in (True, False):
        pipe = SessionPipeline(slots, 0.0, PipelineConfig())
        pipe.scalar_pulls = scalar
        cursor, out = [0] * len(data), []
        for until in untils:
            for s, (ts, x) in enumerate(data):
                j = int(np.searchsorted(ts, until, side="right"))
                if j > cursor[s]:
                    pipe.push(s, ts[cursor[s]:j], x[cursor[s]:j])
                    cursor[s] = j
            out.append(_digest(pipe.advance(float(until))))
        out.append(_digest(pipe.flush(SECONDS)))
        runs.append((out, repr(pipe.loss.periods), repr(pipe.finish())))
    assert runs[0] == runs[1]
    assert sum(g[1][1] for d in runs[0][0] for g in d[1][:1]) > 4 * SECONDS - 40  # the grid was produced
