"""Heart rate on the grid: RR cleaning, gaps, device HR, and chunked == batch."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from attune_monitor.dsp.grid import concat_blocks, stream_in_chunks
from attune_monitor.dsp.heart import HeartPreprocessor, hr_to_grid, rr_to_hr_grid, signal_to_hr_grid
from attune_monitor.dsp.quality import Quality, is_valid

FS = 4.0


def _grid_t(block, origin=0.0):
    return block.times(FS, origin)


def test_constant_rr_is_exactly_75_bpm():
    rr = np.full(120, 0.8)
    bt = 5.0 + np.cumsum(rr)
    b = rr_to_hr_grid(bt, rr, fs=FS, origin=0.0)
    t = _grid_t(b)
    inside = (t > bt[0]) & (t <= bt[-1])
    assert np.all(b.values[inside] == 75.0)
    assert np.all(b.quality[inside] == Quality.OK)
    # before the first beat nothing is known: NO_DATA, not a made-up value
    assert np.all(b.quality[t < bt[0] - 0.8] == Quality.NO_DATA)
    assert np.all(np.isnan(b.values[t < bt[0] - 0.8]))


def _truth_series(rng, n=400):
    rr = 0.85 + 0.04 * np.sin(np.arange(n) / 6.0) + 0.01 * rng.standard_normal(n)
    return rr, np.cumsum(rr) + 2.0


def test_ectopic_missed_extra_beats_are_corrected(rng):
    rr_true, bt_true = _truth_series(rng)
    t_truth_hr = 60.0 / rr_true
    bt = list(bt_true)
    # ectopic at beat 60: premature by 35 %, compensatory pause after
    shift = 0.35 * rr_true[60]
    bt[59] -= shift
    # missed beat: drop beat 150; extra beats: insert one inside interval 250 and 320
    bt_arr = np.asarray(bt)
    bt_arr = np.delete(bt_arr, 150)
    for j in (250, 320):
        bt_arr = np.sort(np.r_[bt_arr, bt_true[j] - 0.4 * rr_true[j]])
    rr = np.diff(bt_arr)
    bt_arr = bt_arr[1:]
    b = rr_to_hr_grid(bt_arr, rr, fs=FS, origin=0.0)
    t = _grid_t(b)
    truth = np.full(t.shape, np.nan)
    j = np.searchsorted(bt_true, t)
    inside = (j > 0) & (j < bt_true.size)
    truth[inside] = t_truth_hr[j[inside]]
    valid = is_valid(b.quality) & inside
    err = np.abs(b.values[valid] - truth[valid])
    assert valid.mean() > 0.95
    assert np.median(err) < 0.5
    # around each artefact the error is bounded (uncorrected it would be ~ 20-50 bpm)
    for tb in (bt_true[59], bt_true[150], bt_true[250], bt_true[320]):
        near = valid & (np.abs(t - tb) < 1.5)
        assert np.max(np.abs(b.values[near] - truth[near])) < 8.0
        assert np.any(b.quality[np.abs(t - tb) < 1.5] == Quality.CORRECTED)
    # without correction the raw HR deviates a lot there (the test can fail)
    raw = 60.0 / rr
    assert raw.max() > 120 or raw.min() < 40


def test_gap_longer_than_3s_is_no_data_never_interpolated():
    rr = np.full(200, 0.8)
    bt = np.cumsum(rr)
    bt[100:] += 6.0  # 6 s dropout without beats (RR stream: the next RR is still a normal 0.8 s)
    b = rr_to_hr_grid(bt, rr, fs=FS, origin=0.0)
    t = _grid_t(b)
    gap = (t > bt[99] + 0.01) & (t <= bt[100] - 0.8 - 0.01)
    assert gap.sum() >= 4 * 5
    assert np.all(b.quality[gap] == Quality.NO_DATA)
    assert np.all(np.isnan(b.values[gap]))
    after = (t > bt[100] - 0.8) & (t <= bt[-1])
    assert np.all(b.values[after] == 75.0)


def test_implausible_rr_is_flagged_not_used():
    rr = np.full(100, 0.8)
    rr[50] = 3.5  # impossible (> 2.5 s)
    bt = np.cumsum(rr)
    b = rr_to_hr_grid(bt, rr, fs=FS, origin=0.0)
    t = _grid_t(b)
    sel = (t > bt[49] + 0.6) & (t <= bt[50])
    assert np.all(b.quality[sel] == Quality.IMPLAUSIBLE)
    assert np.all(np.isnan(b.values[sel]))


def test_device_hr_1hz_interpolated_and_gaps():
    ts = np.arange(0.0, 60.0, 1.0)
    hr = 70 + 5 * np.sin(ts / 10)
    hr[30] = 300.0  # implausible
    keep = (ts < 40) | (ts > 45)  # a 6 s gap
    b = hr_to_grid(ts[keep], hr[keep], fs=FS, origin=0.0)
    t = _grid_t(b)
    ok = is_valid(b.quality)
    ref = np.interp(t, ts[keep], hr[keep])
    assert np.allclose(b.values[ok], ref[ok], atol=1e-12)
    assert np.all(b.quality[(t > 29) & (t < 31)] == Quality.IMPLAUSIBLE)
    assert np.all(b.quality[(t > 40) & (t < 46)] == Quality.NO_DATA)
    assert ok[(t >= 1) & (t <= 28)].all() and ok[(t >= 47) & (t <= 59)].all()


def _synthetic_rr(rng, n=300):
    rr = 0.8 + 0.05 * rng.standard_normal(n)
    rr[50], rr[51] = 0.5, 1.1
    rr[100] = 1.6
    rr[150:152] = [0.3, 0.5]
    rr[200] = 3.2
    bt = np.cumsum(rr) + 10.3
    bt[230:] += 7.0
    return bt, rr


@pytest.mark.parametrize("seed", range(6))
def test_rr_chunked_equals_batch(seed):
    rng = np.random.default_rng(seed)
    bt, rr = _synthetic_rr(np.random.default_rng(99))
    batch = rr_to_hr_grid(bt, rr, fs=FS, origin=1.7)
    live = stream_in_chunks(HeartPreprocessor("rr", fs=FS, origin=1.7), bt, rr, rng, t_end=bt[-1], max_chunk=9)
    assert live.start == batch.start == 0
    np.testing.assert_array_equal(live.quality, batch.quality)
    np.testing.assert_allclose(live.values, batch.values, rtol=0, atol=1e-9)
    assert {Quality.OK, Quality.CORRECTED, Quality.NO_DATA, Quality.IMPLAUSIBLE} <= set(np.unique(batch.quality))


@pytest.mark.parametrize("seed", range(3))
def test_hr_chunked_equals_batch(seed):
    rng = np.random.default_rng(seed)
    ts = np.sort(np.r_[np.arange(0, 40, 1.0), np.arange(48, 90, 1.0)]) + 0.01 * rng.standard_normal(82)
    hr = 60 + 20 * rng.random(ts.size)
    hr[10] = 10.0
    batch = hr_to_grid(ts, hr, fs=FS, origin=0.0)
    live = stream_in_chunks(HeartPreprocessor("hr", fs=FS, origin=0.0), ts, hr, rng, t_end=ts[-1], max_chunk=5)
    np.testing.assert_array_equal(live.quality, batch.quality)
    np.testing.assert_allclose(live.values, batch.values, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind,srate", [("ecg", 130.0), ("ppg", 64.0)])
def test_signal_chunked_equals_batch_across_gaps(kind, srate):
    nk = pytest.importorskip("neurokit2")
    sim = nk.ecg_simulate if kind == "ecg" else nk.ppg_simulate
    x = sim(duration=70, sampling_rate=int(srate), heart_rate=72, random_state=7)
    ts = 50.0 + np.arange(x.size) / srate + 1e-4 * np.random.default_rng(1).standard_normal(x.size)
    ts = np.sort(ts)
    keep = (ts < 80) | (ts > 85)  # 5 s without samples
    ts, x = ts[keep], x[keep]
    batch = signal_to_hr_grid(kind, ts, x, srate, fs=FS, origin=50.0)
    assert np.nanmedian(batch.values) == pytest.approx(72, abs=3)
    assert np.any(batch.quality == Quality.WARMUP)
    t = batch.times(FS, 50.0)
    assert not is_valid(batch.quality[(t > 80.5) & (t < 85)]).any()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        p = HeartPreprocessor(kind, fs=FS, origin=50.0, srate=srate)
        live = stream_in_chunks(p, ts, x, rng, t_end=ts[-1], max_chunk=200)
        np.testing.assert_array_equal(live.quality, batch.quality)
        np.testing.assert_allclose(live.values, batch.values, rtol=0, atol=1e-9)


def test_output_depends_only_on_input_up_to_latency():
    bt, rr = _synthetic_rr(np.random.default_rng(5))
    p = HeartPreprocessor("rr", origin=0.0)
    cut = 120.0
    m = bt <= cut
    p.push(bt[m], rr[m])
    first = p.pull(cut)
    full = rr_to_hr_grid(bt, rr, origin=0.0)
    n = len(first)
    assert n > 0 and first.times(FS, 0.0)[-1] <= cut - p.latency
    np.testing.assert_array_equal(first.quality, full.quality[:n])
    np.testing.assert_array_equal(first.values, full.values[:n])
    rest = p.pull(cut)  # nothing new until more input is declared
    assert len(rest) == 0 and rest.start == n


def test_non_increasing_timestamps_are_dropped_with_warning(caplog):
    p = HeartPreprocessor("rr", origin=0.0)
    with caplog.at_level(logging.WARNING, logger="attune_monitor.dsp.grid"):
        p.push([1.0, 1.8, 1.8, 1.5, 2.6], [0.8, 0.8, 0.8, 0.8, 0.8])
    assert p.n_dropped == 2
    assert "non-increasing" in caplog.text


def test_validation_messages():
    with pytest.raises(ValueError, match="Invalid value for 'kind': expected one of rr, hr, ecg, ppg, but got 'eda'"):
        HeartPreprocessor("eda")
    with pytest.raises(ValueError, match="Invalid value for 'srate'.*srate=130"):
        HeartPreprocessor("ecg")
    with pytest.raises(ValueError, match="Invalid value for 'fs'"):
        HeartPreprocessor("rr", fs=0)
    with pytest.raises(ValueError, match="same length"):
        HeartPreprocessor("rr").push([1.0, 2.0], [0.8])
    with pytest.raises(ValueError, match="not contiguous"):
        p = HeartPreprocessor("rr")
        b = p.pull(20.0)
        concat_blocks([b, b])


def _trailing_average_hr(beats, ticks, span):
    """What a wrist device sends: at each tick, 60 x (beats - 1) / their time span over the last ``span`` s."""
    hi = np.searchsorted(beats, ticks, side="right")
    lo = np.searchsorted(beats, ticks - span, side="right")
    return 60.0 * (hi - lo - 1) / (beats[hi - 1] - beats[lo])


def _beats(hr_of_t, t_end):
    """Beat times whose instantaneous HR follows ``hr_of_t`` (integral pulse frequency modulation)."""
    t = np.arange(0.0, t_end, 0.01)
    phase = np.cumsum(hr_of_t(t)) / 60.0 * 0.01
    return np.interp(np.arange(1.0, phase[-1]), phase, t)


def _best_lag_s(a, b, max_lag=40):
    """Lag (s, at 4 Hz) by which ``a`` trails ``b`` the most similarly: argmax of r(a[k+L], b[k])."""
    rs = []
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b[: b.size - lag]) if lag >= 0 else (a[: a.size + lag], b[-lag:])
        ok = np.isfinite(x) & np.isfinite(y)
        rs.append(np.corrcoef(x[ok], y[ok])[0, 1])
    return (np.argmax(rs) - max_lag) / FS


@pytest.mark.parametrize("span", [4.0, 10.0])
def test_device_hr_is_dated_back_by_half_its_averaging_span(span):
    """Known truth: a device HR that averages the last ``span`` s of beats trails the beat-by-beat HR by
    ~span / 2; dated back by half its span it lines up with the same person's RR-derived HR."""
    def hr_of_t(t):
        return 70 + 8 * np.sin(2 * np.pi * t / 23.0) + 4 * np.sin(2 * np.pi * t / 61.0)

    beats = _beats(hr_of_t, 400.0)
    ticks = np.arange(20.0, 390.0, 1.0)
    dev = _trailing_average_hr(beats, ticks, span)
    ref = rr_to_hr_grid(beats[1:], np.diff(beats), fs=FS, origin=0.0, t_end=390.0).values
    raw = hr_to_grid(ticks, dev, fs=FS, origin=0.0, t_end=390.0).values
    dated = hr_to_grid(ticks, dev, fs=FS, origin=0.0, t_end=390.0, averaging_s=span).values
    n = min(ref.size, raw.size, dated.size)
    assert _best_lag_s(raw[:n], ref[:n]) == pytest.approx(span / 2, abs=0.5)
    assert abs(_best_lag_s(dated[:n], ref[:n])) <= 0.5
    # the values are the same, only their time moved: raw at t is dated at t - span / 2
    k = int(span / 2 * FS)
    both = np.isfinite(raw[200 + k:n])
    np.testing.assert_allclose(dated[200:n - k][both], raw[200 + k:n][both], atol=1e-9)


@pytest.mark.parametrize("seed", range(2))
def test_dated_device_hr_chunked_equals_batch(seed):
    rng = np.random.default_rng(seed)
    ts = np.sort(np.r_[np.arange(0, 40, 1.0), np.arange(48, 90, 1.0)]) + 0.01 * rng.standard_normal(82)
    hr = 60 + 20 * rng.random(ts.size)
    batch = hr_to_grid(ts, hr, fs=FS, origin=0.0, averaging_s=4.0)
    p = HeartPreprocessor("hr", fs=FS, origin=0.0, averaging_s=4.0)
    assert p.latency == pytest.approx(p.max_gap + 2.0)
    live = stream_in_chunks(p, ts, hr, rng, t_end=ts[-1], max_chunk=5)
    np.testing.assert_array_equal(live.quality, batch.quality)
    np.testing.assert_allclose(live.values, batch.values, rtol=0, atol=1e-9)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_device_hr_averaging_span_is_checked(bad):
    with pytest.raises(ValueError, match="averaging_s.*seconds a device HR value averages"):
        HeartPreprocessor("hr", averaging_s=bad)


def test_dated_device_hr_holds_its_last_value_up_to_its_own_timestamp():
    """The last value before a gap (or the end) averages the beats up to its timestamp: after dating it back
    it covers those 2 s, not a made-up hole (which the signal-loss report would show at every recording's end)."""
    ts = np.r_[np.arange(10.0, 40.0, 1.0), np.arange(50.0, 61.0, 1.0)]
    hr = np.full(ts.size, 70.0)
    b = hr_to_grid(ts, hr, fs=FS, origin=0.0, t_end=70.0, averaging_s=4.0)
    t = _grid_t(b)
    ok = is_valid(b.quality)
    assert ok[(t >= 8.0) & (t <= 39.0)].all() and ok[(t >= 48.0) & (t <= 60.0)].all()
    assert not ok[(t > 39.0) & (t < 48.0)].any() and not ok[t > 60.0].any()
    assert np.all(b.values[ok] == 70.0)
