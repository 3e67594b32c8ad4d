"""Causal ECG R-peak and PPG pulse-peak detection against known beats and NeuroKit2."""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.dsp.peaks import BeatDetector, detect_beats
from tests.helpers.beat_match import match_rates


def synthetic_ecg(rng, srate, beats, duration, invert=False):
    """Gaussian Q-R-S-T waves at known R times, with baseline wander and noise (mV)."""
    t = np.arange(0, duration, 1 / srate)
    x = 0.15 * np.sin(2 * np.pi * 0.25 * t) + 0.02 * rng.standard_normal(t.size)
    for b in beats:
        x += -0.1 * np.exp(-0.5 * ((t - b + 0.03) / 0.008) ** 2)
        x += 1.2 * np.exp(-0.5 * ((t - b) / 0.010) ** 2)
        x += -0.3 * np.exp(-0.5 * ((t - b - 0.03) / 0.010) ** 2)
        x += 0.3 * np.exp(-0.5 * ((t - b - 0.28) / 0.05) ** 2)
    return t, (-x if invert else x)


@pytest.mark.parametrize("srate", [130.0, 200.0, 100.0])
@pytest.mark.parametrize("invert", [False, True])
def test_ecg_peaks_on_known_beats(rng, srate, invert):
    rr = 0.8 + 0.15 * np.sin(np.arange(90) / 5) + 0.02 * rng.standard_normal(90)
    beats = 1.0 + np.cumsum(rr)
    beats = beats[beats < 70]
    t, x = synthetic_ecg(rng, srate, beats, 72.0, invert)
    ours = detect_beats("ecg", t, x, srate)
    truth = beats[beats > 2.5]  # the first 2 s train the threshold
    sens, ppv = match_rates(ours[ours > 2.5], truth, tol=0.02)
    assert sens >= 0.99 and ppv >= 0.99


def test_ecg_peaks_on_neurokit_simulation():
    nk = pytest.importorskip("neurokit2")
    srate = 250
    x = nk.ecg_simulate(duration=60, sampling_rate=srate, heart_rate=80, heart_rate_std=5, random_state=42)
    t = np.arange(x.size) / srate
    ours = detect_beats("ecg", t, x, srate)
    _, info = nk.ecg_peaks(x, sampling_rate=srate, method="neurokit")
    ref = t[info["ECG_R_Peaks"]]
    sens, ppv = match_rates(ours[ours > 3], ref[ref > 3])
    assert sens >= 0.99 and ppv >= 0.99


def test_ppg_peaks_on_neurokit_simulation():
    nk = pytest.importorskip("neurokit2")
    srate = 64
    x = nk.ppg_simulate(duration=90, sampling_rate=srate, heart_rate=70, random_state=3)
    t = np.arange(x.size) / srate
    ours = detect_beats("ppg", t, x, srate)
    info = nk.ppg_findpeaks(nk.ppg_clean(x, sampling_rate=srate), sampling_rate=srate)
    ref = t[info["PPG_Peaks"]]
    sens, ppv = match_rates(ours[ours > 4], ref[ref > 4], tol=0.06)
    assert sens >= 0.97 and ppv >= 0.97
    assert np.median(60 / np.diff(ours)) == pytest.approx(70, abs=3)


def test_detector_chunked_equals_batch(rng):
    srate = 130.0
    beats = 0.5 + np.cumsum(0.75 + 0.05 * rng.standard_normal(60))
    t, x = synthetic_ecg(rng, srate, beats, 45.0)
    keep = (t < 20) | (t > 21.5)  # a dropout: the detector restarts
    t, x = t[keep], x[keep]
    batch = detect_beats("ecg", t, x, srate)
    d = BeatDetector("ecg", srate)
    got, rrs = [], []
    i = 0
    while i < t.size:
        n = int(rng.integers(1, 300))
        d.push(t[i:i + n], x[i:i + n])
        i += n
        bt, rr = d.advance(t[min(i, t.size) - 1])
        got.append(bt)
        rrs.append(rr)
    bt, rr = d.advance(np.inf)
    got = np.concatenate(got + [bt])
    rr = np.concatenate(rrs + [rr])
    np.testing.assert_array_equal(got, batch)
    assert np.isnan(rr[0]) and np.sum(np.isnan(rr)) == 2  # one restart after the dropout
    assert not np.any((got > 20) & (got < 21.5))


def test_detector_validation():
    with pytest.raises(ValueError, match="Invalid value for 'kind': expected one of ecg, ppg, but got 'eda'"):
        BeatDetector("eda", 100)
    with pytest.raises(ValueError, match="Invalid parameter"):
        BeatDetector("ecg", 100, windw=0.2)
