"""Synthetic physiology: realistic enough to test the DSP honestly, and faithful to the scripted truth."""

from __future__ import annotations

import dataclasses
import time
import uuid

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d
from scipy.optimize import curve_fit
from scipy.signal import detrend, welch

from attune_monitor.acquisition.convention import describe
from attune_monitor.acquisition.physiology import simulate_session
from attune_monitor.acquisition.scenario import ScenarioError, builtin_names, load_scenario, parse_scenario


@pytest.fixture(scope="module")
def demo():
    return {seed: simulate_session(load_scenario("couple-rupture-repair"), seed) for seed in range(3)}


@pytest.fixture(scope="module")
def confounds():
    return simulate_session(load_scenario("couple-confounds"), 5)


def _hr_grid(session, pid, fs=4.0):
    """Heart rate (bpm) on a grid from the RR stream (or the 1 Hz HR stream)."""
    g = np.arange(0, session.duration_s, 1 / fs)
    try:
        s = session.stream(pid, "rr")
        return np.interp(g, s.timestamps, 60000.0 / s.values[:, 0])
    except KeyError:
        s = session.stream(pid, "hr")
        return np.interp(g, s.timestamps, s.values[:, 0])


def _windowed_r(a, b, fs, win_s, step_s=5.0):
    """Centre times and Pearson r of linearly detrended windows (plain numpy reference)."""
    n, st = int(win_s * fs), int(step_s * fs)
    starts = np.arange(0, a.size - n, st)
    r = np.array([np.corrcoef(detrend(a[i:i + n]), detrend(b[i:i + n]))[0, 1] for i in starts])
    return (starts + n / 2) / fs, r


def test_every_builtin_scenario_loads_and_simulates():
    names = builtin_names()
    assert {"couple-calm", "couple-rupture-repair", "group-withdrawal", "couple-confounds"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        session = simulate_session(sc, 1, 30)
        assert {s.participant for s in session.streams} == set(sc.ids)
        for s in session.streams:
            assert np.all(np.diff(s.timestamps) > 0) and np.all(np.isfinite(s.values)), s.name


def test_same_seed_is_bitwise_identical_and_another_seed_differs():
    sc = load_scenario("couple-confounds")
    a, b, c = simulate_session(sc, 11, 60), simulate_session(sc, 11, 60), simulate_session(sc, 12, 60)
    for x, y, z in zip(a.streams, b.streams, c.streams):
        assert x.timestamps.tobytes() == y.timestamps.tobytes() and x.values.tobytes() == y.values.tobytes()
        assert x.source_id == y.source_id and x.source_id != z.source_id
        assert x.values.tobytes() != z.values.tobytes()
    assert a.truth == b.truth


def test_streams_follow_the_convention():
    session = simulate_session(load_scenario("couple-confounds"), 3, 20)
    expected = {("P1", "rr"): ("ms", 0.0), ("P1", "ecg"): ("uV", 130.0), ("P1", "eda"): ("microsiemens", 4.0),
                ("P2", "rr"): ("ms", 0.0), ("P2", "ppg"): ("au", 64.0), ("P2", "eda"): ("microsiemens", 32.0)}
    assert {(s.participant, s.kind) for s in session.streams} == set(expected)
    for s in session.streams:
        d = describe(s.header_xml)
        assert (d.kind, d.participant, d.unit, d.srate) == (s.kind, s.participant, *expected[(s.participant, s.kind)])
        assert d.manufacturer and d.device and d.scale is not None
        assert s.source_id == f"attune-sim-3-{s.participant.lower()}-{s.device.lower().replace('+', '')}-{s.kind}"
        assert d.averaging_s is None  # beat by beat or raw: nothing to date back


def test_wrist_hr_is_the_trailing_average_it_declares():
    """A simulated wrist HR value at tick t is 60 x (beats - 1) / span of the beats in (t - 4 s, t], and the
    stream says so (``averaging_s`` 4), so analysis dates it back by 2 s."""
    from attune_monitor.acquisition.physiology import HR_DEVICE_AVERAGING_S

    sc = load_scenario("couple-calm")
    sc = dataclasses.replace(sc, participants=[dataclasses.replace(p, heart="both") for p in sc.participants])
    session = simulate_session(sc, 5, 120)
    s = session.stream("P1", "hr")
    assert describe(s.header_xml).hr_averaging_s == HR_DEVICE_AVERAGING_S == 4.0
    beats = session.latent["P1"]["beats"]
    for t, v in zip(s.timestamps[::17], s.values[::17, 0]):
        inside = beats[(beats > t - 4.0) & (beats <= t)]
        assert v == pytest.approx(60.0 * (inside.size - 1) / (inside[-1] - inside[0]), abs=0.01)


def test_rr_is_continuous_time_not_on_a_sample_grid(demo):
    s = demo[0].stream("P1", "rr")
    ts, rr = s.timestamps, s.values[:, 0].astype(float)
    assert s.srate == 0 and 450 <= ts.size <= 750  # ~66 bpm over the scenario's 540 s
    # RR (ms) is the time since the previous beat, to float32 precision
    np.testing.assert_allclose(rr[1:], np.diff(ts) * 1000, atol=1e-3)
    ms = ts * 1000
    frac = ms - np.floor(ms)
    assert np.std(frac) > 0.25  # fractions of a millisecond spread over [0, 1): no sample grid
    assert np.unique(np.round(np.diff(ts), 6)).size > 0.95 * (ts.size - 1)


def test_rsa_peak_in_rr_spectrum_at_breathing_rate():
    sc = parse_scenario({"name": "rsa", "duration_s": 600, "coupling": 0.0,
                         "participants": [{"id": "P1", "hr_bpm": 65, "resp_hz": 0.25}]})
    session = simulate_session(sc, 4)
    s = session.stream("P1", "rr")
    g = np.arange(5, 595, 0.25)
    rr = np.interp(g, s.timestamps, s.values[:, 0])
    f, p = welch(detrend(rr), fs=4.0, nperseg=512)
    band = (f > 0.12) & (f < 0.5)
    peak = f[band][np.argmax(p[band])]
    assert abs(peak - 0.25) < 0.03
    # the peak stands out from its neighbourhood (not just the largest of a flat band)
    assert p[band].max() > 5 * np.median(p[band])


def test_scr_shape_is_bi_exponential():
    sc = parse_scenario({"name": "scr", "duration_s": 900, "coupling": 0.0,
                         "participants": [{"id": "P1", "eda": "shimmer", "eda_us": 4.0}]})
    session = simulate_session(sc, 8)
    eda = session.stream("P1", "eda")
    lat = session.latent["P1"]
    on, amp = lat["scr_onsets_s"], lat["scr_amps_us"]
    # the phasic part: the device signal minus the tonic level
    phasic = eda.values[:, 0] - np.interp(eda.timestamps, lat["t"], lat["eda_tonic_us"])
    gaps_before, gaps_after = np.diff(on, prepend=-np.inf), np.diff(on, append=np.inf)
    isolated = (gaps_before > 20) & (gaps_after > 30) & (on > 5) & (on < 860) & (amp > 0.1)
    assert isolated.sum() >= 3

    def biexp(t, a, tr, td):
        tt = np.maximum(t, 0)
        return a * (np.exp(-tt / td) - np.exp(-tt / tr)) * (t > 0)

    def gauss(t, a, mu, w):  # a symmetric bump: the wrong shape, for contrast
        return a * np.exp(-0.5 * ((t - mu) / w) ** 2)

    for t0 in on[isolated]:
        m = (eda.timestamps >= t0 - 2) & (eda.timestamps < t0 + 30)
        t, y = eda.timestamps[m] - t0, phasic[m]
        p, _ = curve_fit(biexp, t, y, p0=[1.0, 0.5, 4.0], bounds=([0, 0.05, 1.0], [50, 3, 40]))
        r2 = 1 - np.var(y - biexp(t, *p)) / np.var(y)
        g, _ = curve_fit(gauss, t, y, p0=[np.max(y), 2.0, 3.0], bounds=([0, -2, 0.1], [50, 30, 30]))
        r2_gauss = 1 - np.var(y - gauss(t, *g)) / np.var(y)
        t_peak = t[np.argmax(y)]
        assert 0.2 < p[1] < 0.7 and 4.0 < p[2] < 10.0 and r2 > 0.95, (p, r2)
        assert r2 > r2_gauss
        assert 0.6 < t_peak < 1.8  # about a second to rise


def test_truth_matches_the_script():
    session = simulate_session(load_scenario("group-withdrawal"), 2)
    t = session.truth
    assert t["schema"] == "attune.truth/1" and t["scenario"] == "group-withdrawal" and t["seed"] == 2
    assert t["participants"] == ["P1", "P2", "P3", "P4"] and t["coupling"] == pytest.approx(0.7)
    (r,) = t["ruptures"]
    assert (r["onset_s"], r["offset_s"], r["repair_s"], r["who"], r["style"]) == (270.0, 330.0, 338.0, "P3",
                                                                                  "withdrawn")
    assert r["pairs"] == [["P1", "P3"], ["P2", "P3"], ["P3", "P4"]]
    # and the latent coupling does what the truth says
    c = session.latent["P3"]["coupling"]
    tt = session.latent["P3"]["t"]
    assert c[(tt > 275) & (tt < 330)].max() == 0 and np.allclose(c[(tt < 269) | (tt > 338.1)], 0.7)


def test_partners_synchronise_in_calm_and_not_during_ruptures(demo):
    calm_r, rupt_r, eda_calm, eda_rupt = [], [], [], []
    for session in demo.values():
        a, b = _hr_grid(session, "P1"), _hr_grid(session, "P2")
        tc, r = _windowed_r(a, b, 4.0, 30.0)
        ea = np.interp(np.arange(0, session.duration_s, 0.25), session.stream("P1", "eda").timestamps,
                       session.stream("P1", "eda").values[:, 0])
        eb = np.interp(np.arange(0, session.duration_s, 0.25), session.stream("P2", "eda").timestamps,
                       session.stream("P2", "eda").values[:, 0])
        te, re = _windowed_r(ea, eb, 4.0, 20.0)
        calm = np.ones(tc.size, bool)
        calm_e = np.ones(te.size, bool)
        for ru in session.truth["ruptures"]:
            calm &= (tc + 15 < ru["onset_s"]) | (tc - 15 > ru["repair_s"])
            calm_e &= (te + 10 < ru["onset_s"]) | (te - 10 > ru["repair_s"])
            rupt_r.extend(r[(tc - 15 >= ru["onset_s"] + 3) & (tc + 15 <= ru["offset_s"])])
            eda_rupt.extend(re[(te - 10 >= ru["onset_s"] + 3) & (te + 10 <= ru["offset_s"])])
        calm_r.extend(r[calm])
        eda_calm.extend(re[calm_e])
    assert 0.45 < np.mean(calm_r) < 0.85
    assert abs(np.mean(rupt_r)) < 0.25
    assert np.mean(calm_r) - np.mean(rupt_r) > 0.35
    assert np.mean(eda_calm) > 0.4 and np.mean(eda_calm) - np.mean(eda_rupt) > 0.3


def _event_locked(session, pid, kind, times, dirs):
    """Mean response (after minus before) of a stream to moments at ``times`` (HR signed by the moment's direction)."""
    st = session.stream(pid, kind)
    g = np.arange(0, session.duration_s, 0.25)
    v = st.values[:, 0].astype(float)
    x = np.interp(g, st.timestamps, 60000.0 / v if kind == "rr" else v)
    x = x - uniform_filter1d(x, 60, mode="nearest")  # minus the 15 s moving average: the slow drive out
    after = np.array([np.interp(t + np.arange(2.0, 6.0, 0.25), g, x).mean()
                      - np.interp(t + np.arange(-2.0, 0.5, 0.25), g, x).mean() for t in times])
    return float(np.mean(after * (np.sign(dirs) if kind == "rr" else 1.0)))


@pytest.mark.parametrize("style", ["withdrawn", "aversive"])
def test_partners_respond_to_shared_moments_except_who_ruptures(style):
    people = [{"id": "P1", "eda": "shimmer"}, {"id": "P2", "eda": "shimmer", "hr_bpm": 74}]
    rupture = [{"onset_s": 400, "duration_s": 400, "who": "P2", "style": style}]
    sc = parse_scenario({"name": "ev", "duration_s": 1200, "shared_events_per_min": 8, "participants": people,
                         "ruptures": rupture})
    s = simulate_session(sc, 1)
    ev, dirs = s.latent["P1"]["shared_events_s"], s.latent["P1"]["shared_events_hr_dir"]
    assert 120 < ev.size < 200 and np.array_equal(ev, s.latent["P2"]["shared_events_s"])
    calm = ((ev > 20) & (ev < 380)) | ((ev > 830) & (ev < 1180))
    rupt = (ev > 410) & (ev < 790)
    for pid in ("P1", "P2"):
        # both skin conductances rise after shared moments while attuned (co-occurring SCRs) ...
        assert _event_locked(s, pid, "eda", ev[calm], dirs[calm]) > 0.15
    assert np.mean([_event_locked(s, pid, "rr", ev[calm], dirs[calm]) for pid in ("P1", "P2")]) > 1.5  # bpm
    # ... the one who ruptures stops responding to them, the partner goes on
    assert abs(_event_locked(s, "P2", "eda", ev[rupt], dirs[rupt])) < 0.05
    assert _event_locked(s, "P1", "eda", ev[rupt], dirs[rupt]) > 0.1
    shared = s.latent["P2"]["response_shared"]
    resp = s.latent["P2"]["response_s"]
    inside = (resp > 410) & (resp < 790)
    assert not np.any(shared & inside)
    own_rate = (inside & ~shared).sum() / 380 * 60
    assert own_rate > 2.0 if style == "aversive" else own_rate == 0  # aversive: own moments; withdrawn: none
    # drive only (no shared moments): no response at those times
    s0 = simulate_session(parse_scenario({"name": "ev0", "duration_s": 1200, "shared_events_per_min": 0,
                                          "participants": people}), 1)
    assert s0.latent["P1"]["shared_events_s"].size == 0
    for pid in ("P1", "P2"):
        assert abs(_event_locked(s0, pid, "eda", ev[calm], dirs[calm])) < 0.05


def test_confounds_are_where_the_truth_says(confounds):
    s = confounds
    by_kind = {}
    for c in s.truth["confounds"]:
        by_kind.setdefault(c["kind"], []).append(c)
    assert s.truth["ruptures"] == []
    # electrode loss: near-zero EDA, or no samples at all
    for c in by_kind["electrode_loss"]:
        (pid,) = c["participants"]
        eda = s.stream(pid, "eda")
        inside = (eda.timestamps >= c["onset_s"]) & (eda.timestamps < c["offset_s"])
        if c["mode"] == "zero":
            assert inside.sum() > 50 and eda.values[inside].max() < 0.05
            assert eda.values[~inside].min() > 0.5
        else:
            assert inside.sum() == 0 and np.diff(eda.timestamps).max() >= c["offset_s"] - c["onset_s"]
    # strap dropout: no beats (and no PPG) sent, but beats before and after
    (c,) = by_kind["strap_dropout"]
    for kind in ("rr", "ppg"):
        ts = s.stream("P2", kind).timestamps
        assert not np.any((ts >= c["onset_s"]) & (ts < c["offset_s"]))
        assert np.any(ts < c["onset_s"]) and np.any(ts > c["offset_s"])
    # ectopic beats: a premature beat then a compensatory pause
    (c,) = by_kind["ectopic"]
    rr = s.stream("P1", "rr")
    assert len(c["times_s"]) == 6
    for t_ect in c["times_s"]:
        k = int(np.argmin(np.abs(rr.timestamps - t_ect)))
        assert abs(rr.timestamps[k] - t_ect) < 1e-9
        normal = np.median(np.r_[rr.values[k - 4:k, 0], rr.values[k + 2:k + 6, 0]])  # RR around it
        short, long_ = rr.values[k, 0], rr.values[k + 1, 0]
        assert short < 0.75 * normal and long_ > 1.1 * normal and long_ > 1.6 * short
        assert abs(short + long_ - 2 * normal) < 0.15 * normal
    # motion: EDA spikes far steeper than anything outside the window
    (c,) = by_kind["motion"]
    eda = s.stream("P2", "eda")
    slope = np.abs(np.diff(eda.values[:, 0])) * eda.srate
    tm = eda.timestamps[1:]
    inside = (tm >= c["onset_s"]) & (tm < c["offset_s"] + 1)
    ok = ~inside & ~((tm > 245) & (tm < 270))  # away from the electrode gap
    assert slope[inside].max() > 3 * slope[ok].max()
    # shared stressor: both hearts speed up together
    (c,) = by_kind["shared_stressor"]
    for pid in ("P1", "P2"):
        hr = _hr_grid(s, pid)
        g = np.arange(0, s.duration_s, 0.25)
        before = hr[(g > c["onset_s"] - 20) & (g < c["onset_s"])].mean()
        during = hr[(g > c["onset_s"] + 10) & (g < c["offset_s"])].mean()
        assert during - before > 8


def test_ecg_r_peaks_match_beats_with_a_real_detector(demo):
    nk = pytest.importorskip("neurokit2")
    session = demo[1]
    ecg = session.stream("P1", "ecg")
    assert np.all(ecg.values == np.round(ecg.values)) and np.abs(ecg.values).max() < 32768
    _, info = nk.ecg_peaks(ecg.values[:, 0].astype(float), sampling_rate=130)
    peaks = ecg.timestamps[info["ECG_R_Peaks"]]
    beats = session.latent["P1"]["beats"]
    err = np.abs(peaks[:, None] - beats[None, :]).min(axis=1)
    assert abs(peaks.size - beats.size) <= 3
    assert np.mean(err < 0.02) > 0.97


def test_scenario_validation_messages(tmp_path):
    base = {"name": "x", "participants": [{"id": "P1"}, {"id": "P2"}]}
    with pytest.raises(ScenarioError, match=r"scenario x: rupture 1: 'who' must be one of P1, P2, but got 'P3'"):
        parse_scenario(dict(base, ruptures=[{"onset_s": 10, "duration_s": 20, "who": "P3"}]))
    with pytest.raises(ScenarioError, match=r"rupture 1: 'style' must be one of aversive, withdrawn"):
        parse_scenario(dict(base, ruptures=[{"onset_s": 10, "duration_s": 20, "who": "P1", "style": "angry"}]))
    with pytest.raises(ScenarioError, match=r"participant 2: 'eda' must be one of e4, emotibit, shimmer, none"):
        parse_scenario(dict(base, participants=[{"id": "P1"}, {"id": "P2", "eda": "apple"}]))
    with pytest.raises(ScenarioError, match=r"'coupling' must be between 0 and 1, but got 1.5"):
        parse_scenario(dict(base, coupling=1.5))
    with pytest.raises(ScenarioError, match=r"'shared_events_per_min' must be between 0 and 30, but got -1"):
        parse_scenario(dict(base, shared_events_per_min=-1))
    with pytest.raises(ScenarioError, match=r"confound 1: 'kind' must be one of shared_stressor"):
        parse_scenario(dict(base, confounds=[{"kind": "sneeze", "onset_s": 1, "duration_s": 1}]))
    with pytest.raises(ScenarioError, match=r"unknown key\(s\) colour"):
        parse_scenario(dict(base, colour="red"))
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="expected one of couple-calm"):
        load_scenario("no-such-scenario")


def test_with_participants_grows_and_refuses_to_drop_actors():
    sc = load_scenario("couple-calm").with_participants(4)
    assert sc.ids == ["P1", "P2", "P3", "P4"]
    with pytest.raises(ScenarioError, match="involve P3"):
        load_scenario("group-withdrawal").with_participants(2)


def test_sixty_minute_dyad_generates_in_seconds():
    t0 = time.perf_counter()
    session = simulate_session(load_scenario("couple-confounds"), 1, 3600)
    assert time.perf_counter() - t0 < 10
    assert session.stream("P1", "ecg").timestamps.size == 3600 * 130


def test_lsl_publishing_delivers_the_session_complete_and_in_order():
    from attune_monitor.acquisition.lsl import pylsl
    from attune_monitor.acquisition.simulator import Simulator

    prefix = f"test-sim-{uuid.uuid4().hex[:10]}"
    sim = Simulator.from_scenario(load_scenario("couple-confounds"), seed=9, duration_s=12, source_prefix=prefix,
                                  speed=12.0)
    session = sim.session
    inlets = {}
    try:
        sim.open()
        infos = pylsl.resolve_bypred(f"starts-with(source_id,'{prefix}')", len(session.streams), 10.0)
        assert len(infos) == len(session.streams)
        for info in infos:
            inlet = pylsl.StreamInlet(info, max_buflen=60)
            full = inlet.info(timeout=5.0)
            d = describe(full.as_xml())
            want = next(s for s in session.streams if s.source_id == full.source_id())
            assert (d.kind, d.participant, d.unit, d.device, d.srate) == (
                want.kind, want.participant, want.unit, want.device, want.srate)
            inlet.open_stream(timeout=5.0)
            inlets[want.source_id] = inlet
        origin = sim.start()
        got = {k: ([], []) for k in inlets}
        deadline = time.monotonic() + 20
        expected = {s.source_id: s.timestamps.size for s in session.streams}
        while time.monotonic() < deadline and any(len(got[k][1]) < n for k, n in expected.items()):
            for k, inlet in inlets.items():
                values, stamps = inlet.pull_chunk(timeout=0.0)
                got[k][0].extend(values)
                got[k][1].extend(stamps)
            time.sleep(0.02)
        assert sim.wait(5.0) and sim.error is None
        for s in session.streams:
            values, stamps = got[s.source_id]
            assert len(stamps) == s.timestamps.size, s.name
            np.testing.assert_allclose(np.asarray(stamps) - origin, s.timestamps, atol=1e-6)
            np.testing.assert_array_equal(np.asarray(values, dtype=np.float32), s.values)
    finally:
        for inlet in inlets.values():
            inlet.close_stream()
        inlets.clear()
        sim.stop()


def test_two_simulators_of_one_session_publish_distinct_source_ids_and_a_restart_gets_its_own_back():
    """A second simulator of the same session on this machine is instance 2 (source_ids end in -run2), so a
    monitor never sees duplicates; when the first stops, a new one is instance 1 again: the same source_ids, so
    a monitor recovers its streams."""
    from attune_monitor.acquisition.lsl import pylsl
    from attune_monitor.acquisition.simulator import Simulator

    prefix = f"test-inst-{uuid.uuid4().hex[:10]}"
    make = lambda: Simulator.from_scenario(load_scenario("couple-calm"), seed=2, duration_s=5,  # noqa: E731
                                           source_prefix=prefix)
    first, second = make(), make()
    base = sorted(s.source_id for s in first.session.streams)
    third = None
    try:
        first.open()
        second.open()
        assert (first.instance, second.instance) == (1, 2)
        assert sorted(s.source_id for s in first.session.streams) == base
        assert sorted(s.source_id for s in second.session.streams) == [f"{b}-run2" for b in base]
        live = pylsl.resolve_bypred(f"starts-with(source_id,'{prefix}')", 2 * len(base), 10.0)
        assert sorted(i.source_id() for i in live) == sorted(base + [f"{b}-run2" for b in base])
        first.stop()
        third = make()
        third.open()
        assert third.instance == 1 and sorted(s.source_id for s in third.session.streams) == base
    finally:
        for sim in (first, second, third):
            if sim is not None:
                sim.stop()


def test_two_attune_simulate_runs_are_two_sets_of_streams(tmp_path):
    """`attune simulate` twice on one machine: the second run's streams have their own source_ids (it says so)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from attune_monitor.acquisition.lsl import pylsl

    root = Path(__file__).resolve().parents[2]
    prefix = f"test-2runs-{uuid.uuid4().hex[:10]}"
    cmd = [sys.executable, "-m", "attune_monitor.ui.cli", "simulate", "--scenario", "couple-calm", "--duration", "30",
           "--seed", "4", "--source-prefix", prefix]
    env = dict(os.environ, PYTHONPATH=str(root))
    runs = []
    try:
        for _ in range(2):
            p = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            runs.append(p)
            deadline = time.monotonic() + 30
            while "publishing at" not in (line := p.stdout.readline()):
                assert line and time.monotonic() < deadline, p.stderr.read()
        n = len(simulate_session(load_scenario("couple-calm"), 4, 30, source_prefix=prefix).streams)
        live = pylsl.resolve_bypred(f"starts-with(source_id,'{prefix}')", 2 * n, 10.0)
        ids = [i.source_id() for i in live]
        assert len(ids) == 2 * n and len(set(ids)) == 2 * n
        assert sum(i.endswith("-run2") for i in ids) == n
    finally:
        for p in runs:
            p.kill()
        errs = [p.communicate(timeout=10)[1] for p in runs]  # waits and closes the pipes
    assert "instance 2" in errs[1]
