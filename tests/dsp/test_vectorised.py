"""The live tick's fast paths (issue 21) give what the plain paths give.

* :func:`attune_monitor.dsp.grid.sosfilt_rows` (several people's signals through one filter call, each row from
  its own state) equals :func:`scipy.signal.sosfilt` person by person;
* the EDA flag stage, which looks only at the samples that can change the new flags, gives the same grid live
  (one sample per pull, as the headless monitor pulls) as in one batch, on a multi-person series with flat
  runs longer than that look-back, motion, electrode-off and a gap;
* ``RuptureDetector.pair_states()``, built once per processed step and shared until the next, equals the
  states of an identical pipeline that never asked in between.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from attune_monitor.dsp.eda import EdaPreprocessor, eda_to_grid
from attune_monitor.dsp.grid import concat_blocks, sosfilt_1d, sosfilt_rows
from attune_monitor.dsp.pipeline import PipelineConfig, SessionPipeline, Slot


def _group_eda(n_people: int, seconds: float, srate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Skin conductance of ``n_people`` (uS), shape (n_people, n): a shared slow course, each person's own walk,
    and planted artefacts that the flag stage must see the same way live and in batch."""
    rng = np.random.default_rng(seed)
    ts = np.arange(0.0, seconds, 1.0 / srate) + 0.1
    n = ts.size
    shared = 5.0 + np.sin(2 * np.pi * ts / 70.0)
    x = (shared + np.cumsum(rng.standard_normal((n_people, n)), axis=1) * 0.003
         + 0.004 * rng.standard_normal((n_people, n)))
    x[0, (ts > 30) & (ts < 52)] = 4.321           # flat 22 s: far longer than the 6-s look-back of the flags
    x[1, (ts > 40) & (ts < 40.3)] += 4.0          # motion spike (bridged)
    x[2, (ts > 60) & (ts < 70)] = 0.0             # electrode off
    x[3, (ts > 80) & (ts < 84)] += 3.0 * (np.arange(((ts > 80) & (ts < 84)).sum()) % 2)  # long motion
    x[4, (ts > 90) & (ts < 95.2)] = 6.0           # flat just over flat_s
    x[5, (ts > 100) & (ts < 104.9)] = 6.0         # flat just under flat_s
    return ts, x


def test_sosfilt_rows_equals_scipy_person_by_person():
    rng = np.random.default_rng(7)
    ts, x = _group_eda(6, 60.0, 4.0, seed=3)
    for sos in (signal.butter(2, 0.5, output="sos"), signal.butter(4, 0.05, output="sos")):
        zi = rng.standard_normal((x.shape[0], sos.shape[0], 2))
        y, zf = sosfilt_rows(sos, x, zi)
        for p in range(x.shape[0]):
            y_ref, zf_ref = signal.sosfilt(sos, x[p], zi=zi[p])
            np.testing.assert_allclose(y[p], y_ref, rtol=0, atol=1e-12)
            np.testing.assert_allclose(zf[p], zf_ref, rtol=0, atol=1e-12)
            y1, z1 = sosfilt_1d(sos, x[p, :5], zi[p])
            np.testing.assert_array_equal(y1, signal.sosfilt(sos, x[p, :5], zi=zi[p])[0])
            np.testing.assert_array_equal(z1, signal.sosfilt(sos, x[p, :5], zi=zi[p])[1])
    # the inputs are not modified (the kernel works in place on copies)
    zi0 = zi.copy()
    x0 = x.copy()
    sosfilt_rows(sos, x, zi)
    np.testing.assert_array_equal(zi, zi0)
    np.testing.assert_array_equal(x, x0)


def test_eda_live_one_sample_per_pull_equals_batch_for_every_person():
    srate, fs = 4.0, 4.0
    ts, x = _group_eda(6, 140.0, srate, seed=11)
    keep = (ts < 120) | (ts > 123)  # a gap in everybody's stream
    ts, x = ts[keep], x[:, keep]
    codes = set()
    for p in range(x.shape[0]):
        batch = eda_to_grid(ts, x[p], srate, fs=fs, origin=0.0, t_end=ts[-1])
        live = EdaPreprocessor(fs=fs, origin=0.0, srate=srate)
        blocks = []
        for i in range(ts.size):
            live.push(ts[i:i + 1], x[p, i:i + 1])
            blocks.append(live.pull(ts[i]))
        blocks.append(live.pull(ts[-1] + live.latency))
        got = concat_blocks(blocks)
        np.testing.assert_array_equal(got.quality, batch.quality)
        np.testing.assert_allclose(got.values, batch.values, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.tonic, batch.tonic, rtol=0, atol=1e-12)
        codes |= set(np.unique(batch.quality).tolist())
    assert {0, 1, 2, 3, 4} <= codes  # ok, corrected, motion, electrode off and no data all occurred


def _group_pipeline(n_people: int) -> tuple[SessionPipeline, list]:
    rng = np.random.default_rng(5)
    people = [f"P{k + 1}" for k in range(n_people)]
    slots = [Slot(p, "hr", 1.0, f"{p}-hr") for p in people] + [Slot(p, "eda", 4.0, f"{p}-eda") for p in people]
    seconds = 200
    t_hr, t_eda = np.arange(seconds) + 0.5, np.arange(seconds * 4) / 4 + 0.125
    shared_hr = np.cumsum(rng.standard_normal(seconds))
    hr = 70 + 5 * np.tanh((shared_hr + 0.5 * np.cumsum(rng.standard_normal((n_people, seconds)), 1)) / 5)
    shared_eda = np.cumsum(rng.standard_normal(seconds * 4)) * 0.01
    eda = 5 + np.abs(shared_eda + 0.005 * np.cumsum(rng.standard_normal((n_people, seconds * 4)), 1))
    feed = []
    for k in range(1, seconds * 4 + 1):
        until = k / 4
        chunk = []
        for p in range(n_people):
            sel = (t_hr > until - 0.25) & (t_hr <= until)
            if sel.any():
                chunk.append((p, t_hr[sel], hr[p, sel]))
            sel = (t_eda > until - 0.25) & (t_eda <= until)
            chunk.append((n_people + p, t_eda[sel], eda[p, sel]))
        feed.append((until, chunk))
    return SessionPipeline(slots, 0.0, PipelineConfig()), feed


def test_pair_states_shared_between_steps_equal_a_fresh_build():
    asked = _group_pipeline(4)[0]
    fresh, feed = _group_pipeline(4)
    n_steps = 0
    for until, chunk in feed:
        for pipe in (asked, fresh):
            for slot, t, v in chunk:
                pipe.push(slot, t, v)
        a, b = asked.advance(until), fresh.advance(until)
        assert a.n_new == b.n_new
        first, again = asked.detector.pair_states(), asked.detector.pair_states()
        assert first == again and first is not again  # a new list of the same states between two steps
        n_steps += sum(w["t"].size for w in a.windows.values())
    assert n_steps > 300
    got = asked.detector.pair_states()
    ref = fresh.detector.pair_states()  # its first call: built from the machines now
    assert got == ref
    assert {ps["state"] for ps in ref} - {"calibrating"}  # the pairs got past learning: states worth comparing


def _live_pulls_both_ways(make, ts, x, fs, patch):
    """Feed ``x`` sample by sample, pulling one grid time at a time, into a preprocessor and into a deep copy of
    it taken before each pull whose scalar one-sample path is switched off by ``patch``; yield both blocks."""
    import copy

    p = make()
    for i in range(ts.size):
        p.push(ts[i:i + 1], x[i:i + 1])
        until = ts[i]
        while True:  # pull grid times one by one (a live pull at the grid rate)
            ref = copy.deepcopy(p)
            patch(ref)
            nxt = (p.next_index / fs) + p.latency + 1e-9
            if nxt > until:
                break
            got, want = p.pull(nxt), ref.pull(nxt)
            yield got, want, p, ref


def test_eda_one_grid_time_path_is_bitwise_the_array_path():
    """EdaPreprocessor's scalar path for a pull of one grid time (the live case) gives bit for bit the values,
    tonic, phasic and codes of the array path, and leaves the same buffers, on every person of a series with
    motion, electrode-off, flat runs and a gap."""
    ts, x = _group_eda(6, 140.0, 4.0, seed=11)
    keep = (ts < 120) | (ts > 123)
    ts, x = ts[keep], x[:, keep]
    n_one, codes = 0, set()
    for p in range(x.shape[0]):
        for got, want, a, b in _live_pulls_both_ways(lambda: EdaPreprocessor(fs=4.0, origin=0.0, srate=4.0), ts,
                                                     x[p], 4.0, lambda r: setattr(r, "_emit", r._emit_many)):
            n_one += len(got) == 1
            for f in ("values", "quality", "tonic", "phasic"):
                np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
            codes |= set(got.quality.tolist())
            np.testing.assert_array_equal(a._ts, b._ts)
    assert n_one > 2000 and {0, 1, 2, 3, 4} <= codes


def test_device_hr_one_grid_time_path_is_bitwise_the_array_path():
    """HeartPreprocessor("hr")'s scalar path for one grid time gives bit for bit the array path's value and code,
    dated back (averaging_s 4: the hold after the last sample) or not, through NaN, implausible values (both
    ends of the range), gaps longer than max_gap and irregular timestamps; the same samples are kept."""
    from attune_monitor.dsp.heart import HeartPreprocessor

    rng = np.random.default_rng(4)
    ts = np.cumsum(rng.uniform(0.3, 1.7, 400)) + 0.2
    ts = np.concatenate([ts[:150], ts[150:] + 9.0])   # a gap longer than max_gap (3 s)
    x = 70 + np.cumsum(rng.standard_normal(ts.size))
    x[rng.random(ts.size) < 0.05] = np.nan
    x[rng.random(ts.size) < 0.05] = 300.0
    x[rng.random(ts.size) < 0.03] = 10.0
    for averaging in (0.0, 4.0):
        n_one, codes = 0, set()
        for got, want, a, b in _live_pulls_both_ways(
                lambda averaging=averaging: HeartPreprocessor("hr", fs=4.0, origin=0.0, averaging_s=averaging),
                ts, x, 4.0, lambda r: setattr(r, "_hr_values", r._hr_values_many)):
            n_one += len(got) == 1
            np.testing.assert_array_equal(got.values, want.values)
            np.testing.assert_array_equal(got.quality, want.quality)
            codes |= set(got.quality.tolist())
            np.testing.assert_array_equal(a._ts, b._ts)
            np.testing.assert_array_equal(a._x, b._x)
        assert n_one > 1000 and {0, 2, 5} <= codes, (averaging, codes)  # ok, no data, implausible


def test_fisher_clip_spelt_out_is_min_max():
    """The detector's Fisher z clips with comparisons instead of min(max()): the same value for every input, the
    bounds, just inside and outside them, signed zeros, infinities and NaN (which passes, as through min/max)."""
    import math

    from attune_monitor.dsp.detector import _fisher

    rng = np.random.default_rng(2)
    edge = [0.0, -0.0, 0.999, -0.999, np.nextafter(0.999, 1), np.nextafter(0.999, 0), np.nextafter(-0.999, -1),
            np.nextafter(-0.999, 0), 1.0, -1.0, 1.5, -7.0, math.inf, -math.inf]
    for r in [*edge, *rng.uniform(-1.2, 1.2, 2000).tolist()]:
        want = math.atanh(min(max(r, -0.999), 0.999))
        got = _fisher(float(r))
        assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want), r
    assert math.isnan(_fisher(math.nan))
