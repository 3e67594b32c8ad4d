"""EDA preprocessing: electrode-off, motion, resampling, tonic/phasic, chunked == batch, real E4/NeuroKit EDA."""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.dsp.eda import EdaPreprocessor, eda_to_grid
from attune_monitor.dsp.grid import stream_in_chunks
from attune_monitor.dsp.quality import Quality, is_valid

FS = 4.0


def smooth(t):
    """A slow, known skin-conductance course (uS)."""
    return 5.0 + 1.0 * np.sin(2 * np.pi * t / 60.0) + 0.3 * np.sin(2 * np.pi * t / 23.0)


@pytest.mark.parametrize("srate", [4.0, 15.0, 32.0, 100.0])
def test_resampling_from_any_device_rate(rng, srate):
    ts = np.arange(0, 120, 1 / srate) + 0.3
    ts = ts + 0.02 / srate * rng.standard_normal(ts.size)
    b = eda_to_grid(ts, smooth(ts), srate, fs=FS, origin=0.0)
    t = b.times(FS, 0.0)
    ok = is_valid(b.quality)
    assert ok[(t > 1) & (t < 119)].all()
    assert not ok[t < 0.3].any()
    # the causal low-pass lags a little: compare after a short settling
    sel = ok & (t > 5)
    # (group delay of the 1 Hz low-pass ~0.2 s times a slope of up to 0.18 uS/s)
    assert np.max(np.abs(b.values[sel] - smooth(t[sel]))) < 0.05
    np.testing.assert_allclose(b.phasic[sel], (b.values - b.tonic)[sel])


@pytest.mark.parametrize("bad", ["zero", "flat", "high"])
def test_electrode_off(rng, bad):
    srate = 15.0
    ts = np.arange(0, 60, 1 / srate)
    x = smooth(ts) + 0.005 * rng.standard_normal(ts.size)
    off = (ts >= 20) & (ts < 32)
    x[off] = {"zero": 0.0, "flat": 2.345, "high": 150.0}[bad]
    b = eda_to_grid(ts, x, srate, fs=FS, origin=0.0)
    t = b.times(FS, 0.0)
    inside = (t > 20.3) & (t < 31.7)
    assert np.all(b.quality[inside] == Quality.ELECTRODE_OFF)
    assert np.all(np.isnan(b.values[inside]))
    # the steps into and out of the bad stretch are themselves motion-like (+-1 s)
    assert is_valid(b.quality[(t > 2) & (t < 18.5)]).all()
    assert is_valid(b.quality[(t > 33.5) & (t < 59)]).all()


def test_flat_shorter_than_5s_is_kept(rng):
    ts = np.arange(0, 40, 0.25)
    x = smooth(ts) + 0.002 * rng.standard_normal(ts.size)
    x[(ts >= 10) & (ts < 13)] = 4.2  # 3 s flat: not enough to call the electrode off
    b = eda_to_grid(ts, x, 4.0, fs=FS, origin=0.0)
    assert not np.any(b.quality == Quality.ELECTRODE_OFF)


def test_motion_spike_removed_and_bridged(rng):
    srate = 32.0
    ts = np.arange(0, 60, 1 / srate)
    truth = smooth(ts)
    x = truth + 0.003 * rng.standard_normal(ts.size)
    spike = (ts >= 30) & (ts < 30.15)
    x[spike] += 4.0  # 4 uS in a few samples: impossible for skin
    b = eda_to_grid(ts, x, srate, fs=FS, origin=0.0)
    t = b.times(FS, 0.0)
    near = (t > 29) & (t < 31.5)
    assert np.any(b.quality[near] == Quality.CORRECTED)
    assert is_valid(b.quality[near]).all()  # short: bridged
    assert np.max(np.abs(b.values[near] - smooth(t[near]))) < 0.1  # the spike is gone
    # unprotected low-pass would keep a bump of roughly 0.4 uS
    y = eda_to_grid(ts, x, srate, fs=FS, origin=0.0, max_slope=1e6).values
    assert np.nanmax(np.abs(y[near] - smooth(t[near]))) > 0.2


def test_long_motion_stays_missing(rng):
    srate = 32.0
    ts = np.arange(0, 60, 1 / srate)
    x = smooth(ts) + 0.003 * rng.standard_normal(ts.size)
    art = (ts >= 30) & (ts < 34)
    x[art] += 2.0 * np.sign(np.sin(2 * np.pi * 2 * ts[art]))  # 4 s of jumps
    b = eda_to_grid(ts, x, srate, fs=FS, origin=0.0)
    t = b.times(FS, 0.0)
    assert np.all(b.quality[(t > 30.5) & (t < 33.5)] == Quality.MOTION)
    assert np.all(np.isnan(b.values[(t > 30.5) & (t < 33.5)]))


def test_sample_gap_is_no_data():
    ts = np.arange(0, 60, 0.25)
    ts = ts[(ts < 20) | (ts >= 26)]
    b = eda_to_grid(ts, smooth(ts), 4.0, fs=FS, origin=0.0)
    t = b.times(FS, 0.0)
    assert np.all(b.quality[(t > 20) & (t < 26)] == Quality.NO_DATA)


@pytest.mark.parametrize("seed", range(4))
def test_chunked_equals_batch(seed):
    rng = np.random.default_rng(seed)
    srate = 15.0
    ts = 1000.0 + np.arange(0, 200, 1 / srate)
    x = smooth(ts) + 0.01 * np.random.default_rng(50).standard_normal(ts.size)
    x[(ts > 1030) & (ts < 1030.2)] += 3.0  # motion (bridged)
    x[(ts > 1060) & (ts < 1064)] += 3.0 * (np.arange(((ts > 1060) & (ts < 1064)).sum()) % 2)  # motion (missing)
    x[(ts > 1100) & (ts < 1110)] = 0.0  # electrode off
    x[(ts > 1140) & (ts < 1150)] = 3.0  # flat
    keep = (ts < 1170) | (ts > 1175)  # gap
    ts, x = ts[keep], x[keep]
    batch = eda_to_grid(ts, x, srate, fs=FS, origin=1000.5)
    assert {0, 1, 2, 3, 4} <= set(np.unique(batch.quality))
    live = stream_in_chunks(EdaPreprocessor(fs=FS, origin=1000.5, srate=srate), ts, x, rng, t_end=ts[-1],
                            max_chunk=40)
    np.testing.assert_array_equal(live.quality, batch.quality)
    np.testing.assert_allclose(live.values, batch.values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(live.tonic, batch.tonic, rtol=0, atol=1e-9)


def test_validation():
    with pytest.raises(ValueError, match="Invalid value for 'srate'.*srate=4"):
        EdaPreprocessor()
    with pytest.raises(ValueError, match="Invalid value for 'flat_s'"):
        EdaPreprocessor(srate=4, flat_s=-1)


# -- real recordings ---------------------------------------------------------------------------
def _scr_peaks(phasic, fs, prominence=0.02):
    from scipy.signal import find_peaks

    pk, _ = find_peaks(np.nan_to_num(phasic), prominence=prominence)
    return pk / fs


@pytest.mark.realdata
def test_real_e4_eda_clean(realdata):
    pd = pytest.importorskip("pandas")
    e = pd.read_csv(realdata / "emopaircompete/D1_5/ID_1/round_1/phase1/EDA.csv")
    # Unix seconds without assuming a datetime64 unit (pandas 3 parses these as [us], pandas 2 as [ns]).
    ts = ((pd.to_datetime(e["time"]) - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)).to_numpy(float)
    x = e["EDA"].to_numpy(float)
    b = eda_to_grid(ts, x, 4.0, fs=FS)
    valid = is_valid(b.quality).mean()
    assert valid >= 0.99, f"only {valid:.1%} valid on clean E4 EDA"
    t = b.times(FS, ts[0])
    ok = is_valid(b.quality)
    # level follows the raw signal (low-passed at 1 Hz)
    assert np.median(np.abs(b.values[ok] - np.interp(t[ok], ts, x))) < 0.02


@pytest.mark.realdata
def test_real_neurokit_eda_scr_peaks_preserved(realdata):
    pd = pytest.importorskip("pandas")
    nk = pytest.importorskip("neurokit2")
    x = pd.read_csv(realdata / "NeuroKit-data/bio_eventrelated_100hz.csv")["EDA"].to_numpy(float)
    ts = np.arange(x.size) / 100.0
    b = eda_to_grid(ts, x, 100.0, fs=FS, origin=0.0)
    assert is_valid(b.quality).mean() >= 0.99
    _, info = nk.eda_process(x, sampling_rate=100)
    ref = np.asarray(info["SCR_Peaks"]) / 100.0
    ours = _scr_peaks(b.phasic, FS)
    # every NeuroKit SCR has one of ours within 1.5 s (ours is causal: slightly later)
    d = np.array([np.min(np.abs(ours - r)) for r in ref])
    assert len(ref) >= 5 and np.all(d <= 1.5), d
    assert len(ours) <= 2.5 * len(ref)


def test_absurd_values_are_not_data_and_raise_no_warning(rng):
    """A device that reports 1e308 / -1e308 (nonsense): those samples are no data, the rest stays clean, and
    numpy's overflow in the slope check is not a warning on the user's terminal."""
    import warnings

    ts = np.arange(0, 60, 0.25)
    x = smooth(ts) + 0.002 * rng.standard_normal(ts.size)
    x[100], x[101] = 1e308, -1e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = eda_to_grid(ts, x, 4.0, fs=FS, origin=0.0)
    t = b.times(FS, 0.0)
    at = (t >= ts[100]) & (t <= ts[101])
    assert at.any() and not is_valid(b.quality[at]).any()
    ok = is_valid(b.quality)
    assert np.all(np.abs(b.values[ok] - smooth(t[ok])) < 0.1)  # nothing of the nonsense leaks into the signal
    assert is_valid(b.quality[(t > 5) & (t < 20)]).all() and is_valid(b.quality[(t > 32) & (t < 55)]).all()
