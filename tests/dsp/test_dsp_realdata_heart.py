"""Beats and HR from real ECG/PPG (Polar H10, Movesense, NeuroKit recordings) against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.dsp.heart import signal_to_hr_grid
from attune_monitor.dsp.peaks import detect_beats
from attune_monitor.dsp.quality import is_valid
from tests.helpers.beat_match import match_rates

pytestmark = pytest.mark.realdata

MOVESENSE = "tutorial_dyadic_movesense/data"
STAMP = "2025_01_25-16_42_59"


def test_neurokit_resting_ecg_and_ppg(realdata):
    pd = pytest.importorskip("pandas")
    nk = pytest.importorskip("neurokit2")
    df = pd.read_csv(realdata / "NeuroKit-data/bio_resting_5min_100hz.csv")
    t = np.arange(len(df)) / 100.0
    ecg = df["ECG"].to_numpy(float)
    ours = detect_beats("ecg", t, ecg, 100.0)
    _, info = nk.ecg_peaks(ecg, sampling_rate=100, method="neurokit")
    ref = t[info["ECG_R_Peaks"]]
    sens, ppv = match_rates(ours[ours > 3], ref[ref > 3])  # our first 2 s train the threshold
    assert sens >= 0.97 and ppv >= 0.97, (sens, ppv)

    ppg = df["PPG"].to_numpy(float)
    ours = detect_beats("ppg", t, ppg, 100.0)
    ref = t[nk.ppg_findpeaks(nk.ppg_clean(ppg, sampling_rate=100), sampling_rate=100)["PPG_Peaks"]]
    sens, ppv = match_rates(ours[ours > 4], ref[ref > 4])
    assert sens >= 0.97 and ppv >= 0.97, (sens, ppv)


@pytest.mark.parametrize("path,seconds", [("spectHR/SUB_013.xdf", 300), ("spectHR/sub001.xdf", None),
                                          ("PolarBand2lsl/data.xdf", None)])
def test_polar_h10_ecg_xdf(realdata, path, seconds):
    pyxdf = pytest.importorskip("pyxdf")
    nk = pytest.importorskip("neurokit2")
    streams, _ = pyxdf.load_xdf(str(realdata / path), select_streams=[{"type": "ECG"}])
    st = streams[0]
    ts = st["time_stamps"]
    x = np.asarray(st["time_series"], float)[:, 0] * 1e-3  # microvolts -> mV
    if seconds:  # an excerpt keeps the test fast
        keep = ts < ts[0] + seconds
        ts, x = ts[keep], x[keep]
    ours = detect_beats("ecg", ts, x, 130.0)
    rr = np.diff(ours)
    hr = 60.0 / rr
    assert 40 <= np.median(hr) <= 180
    assert np.mean((rr < 0.25) | (rr > 2.5)) < 0.02
    _, info = nk.ecg_peaks(x, sampling_rate=130, method="neurokit")
    ref = ts[info["ECG_R_Peaks"]]
    sens, ppv = match_rates(ours[ours > ts[0] + 3], ref[ref > ts[0] + 3])
    assert sens >= 0.95 and ppv >= 0.95, (sens, ppv)
    # and through the whole pipeline onto the grid
    g = signal_to_hr_grid("ecg", ts, x, 130.0)
    assert abs(np.nanmedian(g.values) - np.median(hr)) < 3
    assert is_valid(g.quality).mean() > 0.7


def _movesense(realdata, device):
    pd = pytest.importorskip("pandas")
    folder = realdata / MOVESENSE / device
    # first line is a fixed-width title ("ECG ... 200"), then a CSV header
    ecg = pd.read_csv(folder / f"ECG-{STAMP}.csv", skiprows=1)
    hr = pd.read_csv(folder / f"HR-{STAMP}.csv", skiprows=1)
    return ecg["Timestamp"].to_numpy(float), ecg["Sample"].to_numpy(float) * 1e-3, hr


def _block_alignment(ours_rr_ms, dev_rr_ms, block=20):
    """Median |ECG RR - device RR| (ms) per block of device beats, each block at its best beat offset.

    The device's RR list has no timestamps and skips beats around lost packets
    and the recording pause, so the sequences are aligned block by block.
    """
    out = []
    for b0 in range(0, dev_rr_ms.size - block, block):
        blk = dev_rr_ms[b0:b0 + block]
        win = np.lib.stride_tricks.sliding_window_view(ours_rr_ms, block)
        out.append(np.min(np.median(np.abs(win - blk), axis=1)))
    return np.asarray(out)


@pytest.mark.parametrize("device", ["234130000540", "234130000594"])
def test_movesense_ecg_vs_device_rr(realdata, device):
    ts, x, hr = _movesense(realdata, device)
    dev = hr["RRData"].to_numpy(float)[3:]  # the first rows are the device's start-up transient
    # the device's own RR agree with its own average HR column (within 1 bpm)
    assert abs(np.mean(60000.0 / dev) - hr["Average"].to_numpy(float)[3:].mean()) < 1.0
    ours = detect_beats("ecg", ts, x, 200.0)
    d = np.diff(ours)
    ours_rr = 1000.0 * d[d < 3.0]  # not across the recording pause
    per_block = _block_alignment(ours_rr, dev)
    assert np.median(per_block) <= 8.0  # device RR are quantised to 1/128 s (7.8 ms)
    assert np.mean(per_block <= 16.0) >= 0.9
    # mean HR of the ECG-derived RR vs the device RR
    assert abs(60000.0 / ours_rr.mean() - 60000.0 / dev.mean()) < 2.0
