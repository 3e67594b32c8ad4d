"""XDF streams whose samples arrive in bursts (a Polar H10's ECG over LSL, as LabRecorder records it) give heart rate.

A Polar H10 hands LSL ~73 ECG samples at a time, all with one stamp, every ~0.56 s. Read as recorded, no beat
detector can use that; :func:`attune_monitor.acquisition.files.load_recording` re-stamps such streams the way pyxdf
dejitters (a straight line of time on sample index per unbroken segment) while leaving irregular streams (RR, markers),
streams stamped sample by sample and real gaps alone. Every test here loads through ``load_recording`` without
asking for any dejittering itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.acquisition.files import RecordedStream, Recording, dejitter_bursts, load_recording
from attune_monitor.acquisition.physiology import simulate_session
from attune_monitor.acquisition.scenario import parse_scenario
from attune_monitor.acquisition.xdf_writer import XdfWriter
from attune_monitor.dsp.heart import signal_to_hr_grid
from attune_monitor.dsp.quality import is_valid

PACKET = 73          # samples per Polar H10 ECG notification
GAP = (50.0, 52.0)   # s: a planted hole in P1's ECG (the strap lost contact)


def _scenario():
    people = [{"id": pid, "heart": "rr", "ecg": True, "eda": "e4", "hr_bpm": bpm} for pid, bpm in (("P1", 62),
                                                                                                   ("P2", 84))]
    return parse_scenario({"name": "bursts", "duration_s": 100, "coupling": 0.5, "participants": people})


def _bursty(ts, rng, rate_error=0.002):
    """LSL stamps the way a Polar H10 bridge makes them: each packet of PACKET samples stamped with the arrival of
    its last sample (20-320 ms later), from a device whose clock runs ``rate_error`` fast (130 Hz on its clock is
    130.26 Hz on the computer's). Returns (true times on the computer's clock, stamps), each shape (n,)."""
    true = ts * (1.0 - rate_error)
    out = np.empty_like(true)
    for a in range(0, true.size, PACKET):
        b = min(a + PACKET, true.size)
        out[a:b] = true[b - 1] + rng.uniform(0.02, 0.32)
    return true, np.maximum.accumulate(out)   # arrivals stay in order


@pytest.fixture(scope="module")
def bursty_file(tmp_path_factory):
    """An XDF with both people's ECG stamped in bursts (a 2-s hole planted in P1's: the packets it cuts into
    are lost), their RR (one stamp per beat),
    P1's EDA stamped sample by sample, and a marker stream. Returns (path, {name: (true times, written stamps)})."""
    rng = np.random.default_rng(20261207)
    sim = simulate_session(_scenario(), seed=5, duration_s=100)
    path = tmp_path_factory.mktemp("bursts") / "bursts.xdf"
    written = {}
    with XdfWriter(path, fsync=False) as w:
        for s in sim.streams:
            ts, vals = s.timestamps.copy(), s.values
            true, stamps = _bursty(ts, rng) if s.kind == "ecg" else (ts, ts)
            if s.kind == "ecg" and s.participant == "P1":   # the packets of the hole never arrive
                packet = np.arange(ts.size) // PACKET
                lost = np.unique(packet[(ts >= GAP[0]) & (ts < GAP[1])])
                keep = ~np.isin(packet, lost)
                true, stamps, vals = true[keep], stamps[keep], vals[keep]
            true, stamps = 1000.0 + true, 1000.0 + stamps
            sid = w.add_stream(s.header_xml)
            for a in range(0, stamps.size, PACKET):
                w.write_samples(sid, stamps[a:a + PACKET], vals[a:a + PACKET])
            w.write_clock_offset(sid, 1000.0, 0.0)
            written[s.name] = (true, stamps)
        mid = w.add_stream(dict(name="Experiment markers", type="Markers", channel_count=1, nominal_srate=0.0,
                                channel_format="string", source_id="exp-markers"))
        marks = 1000.0 + np.array([10.0, 10.0, 40.5, 99.0])   # two at the same time: an irregular stream
        w.write_samples(mid, marks, [["start"], ["task A"], ["task B"], ["end"]])
        written["Experiment markers"] = (marks, marks)
    return path, written, sim


def _stream(rec, name):
    return next(s for s in rec.streams if s.descriptor.name == name)


def test_bursty_ecg_is_restamped_on_a_straight_line_and_the_planted_gap_stays(bursty_file):
    path, written, _ = bursty_file
    rec = load_recording(path)
    for who in ("P1", "P2"):
        s = _stream(rec, f"{who} H10 ECG")
        true, stamps = written[s.descriptor.name]
        assert np.mean(np.diff(stamps) < 1e-6) > 0.95     # as written: bursts
        err = s.timestamps - true
        if who == "P1":
            hole = np.flatnonzero(np.diff(true) > 1.0)[0]
            before, after = np.arange(true.size) <= hole, np.arange(true.size) > hole
            for part in (before, after):   # each side of the gap on its own line: 300-ms arrival jitter fitted to 20 ms
                assert np.std(err[part]) < 0.02, np.std(err[part])
            # the hole stays a hole (2 s and the packets it cut into), to within a tenth of a second
            jump = s.timestamps[after][0] - s.timestamps[before][-1]
            assert abs(jump - (true[after][0] - true[before][-1])) < 0.1, jump
            assert np.all(np.diff(s.timestamps[before]) < 0.01) and np.all(np.diff(s.timestamps[after]) < 0.01)
        else:
            assert np.std(err) < 0.02
        # the offset is the packet's latency plus half a packet: below half a second, as pyxdf's fit gives
        assert 0 < np.mean(err) < 0.5
    assert any("P1 H10 ECG" in n and "2 segment(s)" in n for n in rec.notes), rec.notes


def test_irregular_and_sample_by_sample_streams_keep_their_recorded_stamps(bursty_file):
    path, written, _ = bursty_file
    rec = load_recording(path)
    for name in ("P1 H10 RR", "P2 H10 RR", "P1 E4 EDA", "Experiment markers"):
        s = _stream(rec, name)
        np.testing.assert_array_equal(s.timestamps, written[name][1])
    assert not any("RR" in n or "EDA" in n for n in rec.notes)


def test_bursty_ecg_gives_heart_rate_close_to_the_truth_and_none_in_the_gap(bursty_file):
    path, written, sim = bursty_file
    rec = load_recording(path)
    s = _stream(rec, "P1 H10 ECG")
    origin = 1000.0
    g = signal_to_hr_grid("ecg", s.timestamps, s.signal, s.descriptor.srate, origin=origin)
    t = origin + (g.start + np.arange(g.values.size)) / 4.0
    ok = is_valid(g.quality)
    assert ok[t > origin + 15].mean() > 0.85
    # the truth: the simulator's beats -> HR, at the same times (the re-stamped stream lags by < 0.5 s)
    beats = sim.latent["P1"]["beats"] * (1.0 - 0.002)   # on the computer's clock
    hr_true = np.interp(t - origin, beats[1:], 60.0 / np.diff(beats))
    good = ok & (t > origin + 15)
    assert np.median(np.abs(g.values[good] - hr_true[good])) < 2.0
    in_gap = (t >= origin + GAP[0] + 0.5) & (t < origin + GAP[1])
    assert not ok[in_gap].any()
    # as recorded (the stamps of the bursts), the same samples give next to no heart rate: what the loader fixes
    raw = signal_to_hr_grid("ecg", written["P1 H10 ECG"][1], s.signal, s.descriptor.srate, origin=origin)
    assert is_valid(raw.quality).mean() < 0.2


def test_dejitter_bursts_leaves_regular_and_short_streams_alone():
    ts = 5.0 + np.arange(1000) / 130.0
    out, info = dejitter_bursts(ts, 130.0)
    assert info is None and np.array_equal(out, ts)
    out, info = dejitter_bursts([1.0, 1.0, 1.0], 130.0)   # too short to tell
    assert info is None
    # one lone burst (too few to fit a line): nominal spacing through the middle of the stamps
    out, info = dejitter_bursts(np.r_[np.full(73, 2.0), np.full(73, 9.0)], 130.0)
    assert info["segments"] == 2
    np.testing.assert_allclose(np.diff(out[:73]), 1 / 130.0)
    assert abs(out[:73].mean() - 2.0) < 1e-9 and abs(out[73:].mean() - 9.0) < 1e-9


# -- real LabRecorder recordings ---------------------------------------------------------------------------------------
REAL = ["spectHR/sub001.xdf", "spectHR/SUB_013.xdf", "PolarBand2lsl/data.xdf"]


def _neurokit_hr(realdata, name):
    """The independent estimate: neurokit2's R-peaks on the recorded ECG samples, RR from sample counts at the
    rate of the raw stamps ((n-1) / duration; pyxdf without dejitter, not Attune's stamps). Returns
    (seconds from the first sample of each beat, HR bpm)."""
    pyxdf = pytest.importorskip("pyxdf")
    nk = pytest.importorskip("neurokit2")
    st = pyxdf.load_xdf(str(realdata / name), dejitter_timestamps=False, select_streams=[{"type": "ECG"}])[0][0]
    ts = np.asarray(st["time_stamps"])
    x = np.asarray(st["time_series"], float)[:, 0]
    fs = (ts.size - 1) / (ts[-1] - ts[0])
    _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=fs), sampling_rate=fs)
    tp = np.asarray(info["ECG_R_Peaks"]) / fs
    rr = np.diff(tp)
    ok = (rr > 0.3) & (rr < 2.0)
    return tp[1:][ok], 60.0 / rr[ok]


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL)
def test_real_polar_h10_ecg_gives_heart_rate_through_the_pipeline(realdata, name):
    """Real LabRecorder Polar H10 ECG (98.5 % of stamps in bursts) has heart rate all through the offline pipeline,
    close to neurokit2's on the same samples (before the fix: P1 was no_data for the whole file)."""
    from attune_monitor.ui.runner import analyze_recording

    rec = load_recording(realdata / name)
    ecg = next(s for s in rec.physio_streams() if s.descriptor.kind == "ecg")
    assert any("bursts" in n for n in rec.notes)
    # a second person (the same ECG a third of the file later) so that the pipeline has a pair
    d1 = type(ecg.descriptor)(**{**ecg.descriptor.__dict__, "participant": "P1"})
    d2 = type(ecg.descriptor)(**{**ecg.descriptor.__dict__, "participant": "P2", "name": "partner",
                                 "source_id": "partner"})
    v = np.asarray(ecg.values)
    two = Recording(rec.path, [RecordedStream(d1, ecg.timestamps, v),
                               RecordedStream(d2, ecg.timestamps, np.roll(v, -v.shape[0] // 3, axis=0))])
    analysis = analyze_recording(two)
    assert analysis.participants == ["P1", "P2"]
    hr = analysis.grid["hr"][0]
    t = np.arange(hr.size) / analysis.fs
    start = min(10.0, t[-1] / 4)   # the first beats train the detector (data.xdf is 12.9 s long)
    settled = t > start
    assert np.isfinite(hr[settled]).mean() > 0.9, np.isfinite(hr[settled]).mean()
    ref_t, ref_hr = _neurokit_hr(realdata, name)
    assert 40 < np.nanmedian(hr) < 180
    assert abs(np.nanmedian(hr[settled]) - np.median(ref_hr[ref_t > start])) < 2.0
    # and window by window (30 s) where the recording is long enough
    diffs = [np.nanmedian(hr[(t >= a) & (t < a + 30)]) - np.median(ref_hr[(ref_t >= a) & (ref_t < a + 30)])
             for a in np.arange(10.0, t[-1] - 30, 30)]
    if diffs:
        assert np.median(np.abs(diffs)) < 1.0 and np.max(np.abs(diffs)) < 4.0, diffs


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL)
def test_real_stamps_are_pyxdfs_dejittered_ones(realdata, name):
    """Without a gap, the re-stamped ECG is exactly what pyxdf's own dejitter gives."""
    pyxdf = pytest.importorskip("pyxdf")
    rec = load_recording(realdata / name)
    ecg = next(s for s in rec.physio_streams() if s.descriptor.kind == "ecg")
    ref = pyxdf.load_xdf(str(realdata / name), select_streams=[{"type": "ECG"}])[0][0]["time_stamps"]
    np.testing.assert_allclose(ecg.timestamps, ref, rtol=0, atol=1e-6)
