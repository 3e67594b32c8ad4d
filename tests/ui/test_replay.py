"""Replay: re-publishing a recording over LSL, and replaying through the live pipeline."""

from __future__ import annotations

import json
import re
import time
import uuid

import numpy as np
import pytest

from attune_monitor.acquisition.files import load_recording
from attune_monitor.acquisition.lsl import pylsl
from attune_monitor.acquisition.replay_publish import RecordingPublisher
from attune_monitor.acquisition.xdf_writer import XdfWriter


def _write_small(path, rng):
    """3 s of a 2-channel 50 Hz stream, an irregular RR stream and a marker stream."""
    with XdfWriter(path, fsync=False) as w:
        a = w.add_stream(dict(name="P1 ECG", type="ECG", channel_count=2, nominal_srate=50.0, channel_format="float32",
                              source_id="pub-ecg", desc={"participant": "P1", "manufacturer": "TestCo", "channels": [
                                  {"label": "ECG", "unit": "microvolts"}, {"label": "index", "unit": "n"}]}))
        b = w.add_stream(dict(name="P1 RR", type="RR", channel_count=1, nominal_srate=0.0, channel_format="double64",
                              source_id="pub-rr", desc={"participant": "P1"}))
        c = w.add_stream(dict(name="Notes", type="Markers", channel_count=1, nominal_srate=0.0,
                              channel_format="string", source_id="pub-notes"))
        t = 100.0 + np.arange(150) / 50.0
        w.write_samples(a, t, np.c_[rng.normal(0, 100, 150), np.arange(150)])
        beats = 100.0 + np.cumsum(rng.uniform(0.7, 0.9, 3))
        w.write_samples(b, beats, rng.uniform(700, 900, (3, 1)))
        w.write_samples(c, [100.5, 102.0], [["start ü"], ["half"]])


def test_publish_keeps_headers_samples_and_shifted_timestamps(tmp_path, rng):
    path = tmp_path / "small.xdf"
    _write_small(path, rng)
    rec = load_recording(path)
    suffix = f"-{uuid.uuid4().hex}"
    pub = RecordingPublisher(rec, speed=4.0, source_suffix=suffix, chunk_interval=0.02)
    pub.open()
    inlets = {}
    try:
        for name in ("ecg", "rr", "notes"):
            found = pylsl.resolve_byprop("source_id", f"pub-{name}{suffix}", 1, 5.0)
            assert found, f"outlet pub-{name}{suffix} not found"
            inlets[name] = pylsl.StreamInlet(found[0], processing_flags=0)
            inlets[name].open_stream(5.0)
        full = inlets["ecg"].info(5.0)
        time.sleep(0.3)
        t_wall = time.monotonic()
        shift = pub.start()
        got = {k: ([], []) for k in inlets}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for k, inlet in inlets.items():
                vals, ts = inlet.pull_chunk(timeout=0.0, max_samples=1000)
                got[k][0].extend(vals)
                got[k][1].extend(ts)
            if pub.finished and len(got["ecg"][1]) >= 150 and len(got["rr"][1]) >= 3 and len(got["notes"][1]) >= 2:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - t_wall
    finally:
        for inlet in inlets.values():
            inlet.close_stream()
        pub.stop()
    assert pub.error is None
    # 3 s recorded at 4x: ~0.75 s of pushing (not instantly, not drifting)
    assert 0.5 < elapsed < 3.0, elapsed
    by_name = {s.descriptor.name: s for s in rec.streams}
    ecg = by_name["P1 ECG"]
    np.testing.assert_array_equal(np.array(got["ecg"][0], dtype=np.float32), np.asarray(ecg.values, np.float32))
    np.testing.assert_allclose(got["ecg"][1], ecg.timestamps + shift, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(np.array(got["rr"][0]), by_name["P1 RR"].values)
    np.testing.assert_allclose(got["rr"][1], by_name["P1 RR"].timestamps + shift, rtol=0, atol=1e-7)
    assert [v[0] for v in got["notes"][0]] == ["start ü", "half"]
    np.testing.assert_allclose(got["notes"][1], np.array([100.5, 102.0]) + shift, rtol=0, atol=1e-7)
    # the original header travels: all channels, desc with participant, manufacturer, channel labels
    assert full.channel_count() == 2 and full.nominal_srate() == 50.0 and full.type() == "ECG"
    d = full.desc()
    assert d.child_value("participant") == "P1" and d.child_value("manufacturer") == "TestCo"
    ch = d.child("channels").child("channel")
    labels = []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    assert labels == ["ECG", "index"]
    # "now" is the replay start: the first sample's timestamp is the local clock at start
    assert abs((ecg.timestamps[0] + shift) - pylsl.local_clock()) < elapsed + 1.0


def test_publisher_refuses_bad_speed_and_start(tmp_path, rng):
    path = tmp_path / "small.xdf"
    _write_small(path, rng)
    rec = load_recording(path)
    with pytest.raises(ValueError, match="'speed'"):
        RecordingPublisher(rec, speed=0)
    with pytest.raises(ValueError, match="'start_s'"):
        RecordingPublisher(rec, start_s=99.0)


SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2] / "recordings"


def _episodes_json(episodes):
    return json.dumps([ep.to_json() for ep in sorted(episodes, key=lambda e: (e.onset_s, e.pair))], sort_keys=True)


@pytest.mark.timeout(90)
def test_replay_through_runner_gives_the_same_episodes_as_analyze():
    """Live replay (many small ticks at 200x) and offline analysis run the same causal pipeline."""
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.ui.runner import Runner, analyze_recording

    path = SAMPLE / "sample-couple.xdf"
    ana = analyze_recording(load_recording(path))
    assert ana.episodes, "the sample session has scripted ruptures: the analysis should flag some"
    runner = Runner(RecordingSource(load_recording(path), speed=200.0), tick_s=0.02)
    ticks = []
    runner.listeners.append(lambda upd: ticks.append(upd))
    runner.start()
    try:
        assert runner.finished.wait(60), "the replay did not finish"
    finally:
        runner.stop()
    assert runner.error is None
    assert len(ticks) > 20  # really chunked, not one batch
    assert _episodes_json(runner.pipeline.detector.episodes) == _episodes_json(ana.episodes)
    assert [e["id"] for e in runner.model.snapshot().episodes] == [e.id for e in ana.episodes]


@pytest.mark.timeout(90)
def test_replay_cli_headless(capsys):
    from attune_monitor.ui.cli import main
    from attune_monitor.ui.runner import analyze_recording

    path = SAMPLE / "sample-group.xdf"
    assert main(["replay", str(path), "--headless", "--speed", "64"]) == 0
    out = capsys.readouterr().out
    n = len(analyze_recording(load_recording(path)).episodes)
    assert "people: P1, P2, P3; pairs: P1-P2, P1-P3, P2-P3" in out
    assert "] status: P1 hr=ok eda=ok; P2 hr=ok eda=ok; P3 hr=ok eda=ok" in out  # replay: from the grid
    # 420 s recording: the session ends with its last grid sample (06:59 or, when a loaded machine hands the
    # last second over in one piece, the sample at 07:00)
    ended = re.search(r"session ended at (\d\d):(\d\d)", out)
    assert ended and 418 <= 60 * int(ended[1]) + int(ended[2]) <= 420, out[-300:]
    assert f": {n} possible rupture(s)" in out


def test_replay_cli_refuses_bad_input(tmp_path, capsys):
    from attune_monitor.ui.cli import main

    assert main(["replay", str(tmp_path / "nope.xdf"), "--headless"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["replay", str(SAMPLE / "sample-couple.xdf"), "--speed", "0"]) == 2
    assert "'--speed'" in capsys.readouterr().err
    assert main(["replay", str(SAMPLE / "sample-couple.xdf"), "--start", "9999", "--headless"]) == 2
    assert "lasts 540 s" in capsys.readouterr().err


def test_replay_shows_the_recordings_markers(tmp_path, monkeypatch):
    """`attune replay` puts the recording's markers on the model at their session times (origin = first sample)."""
    import attune_monitor.ui.commands.replay as replay
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.ui.cli import main

    session = simulate_session(load_scenario("couple-calm"), 3, 60.0)
    path = tmp_path / "couple.xdf"
    with XdfWriter(path, fsync=False) as w:
        for st in session.streams:
            w.write_samples(w.add_stream(st.header_xml), st.timestamps + 500.0, st.values)
        m = w.add_stream(dict(name="Attune markers", type="Markers", channel_count=1, nominal_srate=0,
                              channel_format="string"))
        w.write_samples(m, [520.0, 530.5], [[json.dumps({"kind": "repair", "text": "", "t": 20.0})], ["trial ü"]])
    first = min(float(st.timestamps[0]) for st in session.streams) + 500.0
    seen = {}

    def fake_view(runner, args, **kw):
        seen["markers"] = runner.model.snapshot(10).markers
        runner.stop()
        return 0

    monkeypatch.setattr(replay, "open_view", fake_view)
    assert main(["replay", str(path), "--headless"]) == 0
    got = [(m["t"], m["kind"], m["text"]) for m in seen["markers"]]
    assert [(k, txt) for _, k, txt in got] == [("repair", ""), ("note", "Attune markers: trial ü")]
    np.testing.assert_allclose([t for t, _, _ in got], [520.0 - first, 530.5 - first])


# -- pre-roll: the view opens on the recording's first minutes, already processed --------------------------------

@pytest.fixture(scope="module")
def couple_analysis():
    from attune_monitor.ui.runner import analyze_recording

    return analyze_recording(load_recording(SAMPLE / "sample-couple.xdf"))


def _replay_a_moment(monkeypatch, capsys, *argv, play_s=0.6):
    """`attune replay sample-couple.xdf --headless ARGV` at 1x with a view that lets the runner tick for ``play_s``
    seconds; the model's snapshots when the view opens and after those ticks, and what was said on stderr."""
    import attune_monitor.ui.commands.replay as replay
    from attune_monitor.ui.cli import main

    seen = {}

    def fake_view(runner, args, **kw):
        seen["open"] = runner.model.snapshot(600)
        runner.start()
        time.sleep(play_s)
        seen["after"] = runner.model.snapshot(600)
        runner.stop()
        return 0

    monkeypatch.setattr(replay, "open_view", fake_view)
    assert main(["replay", str(SAMPLE / "sample-couple.xdf"), "--headless", *argv]) == 0
    seen["err"] = capsys.readouterr().err
    return seen


def _state_at(ana, pair, t):
    """The pair's state in ``attune analyze``'s state changes at session time ``t``."""
    state = "calibrating"
    for tc, p, st in ana.state_changes:
        if tuple(p) == tuple(pair) and tc <= t + 1e-9:
            state = st
    return state


def _episode_keys(eps):
    return [(e["id"], tuple(e["pair"]), e["onset_s"], e["flagged_s"], e["open"], e.get("outcome"), e["offset_s"])
            for e in eps]


def _check_against_analysis(snap, ana):
    """The pre-rolled model holds what `attune analyze` found up to its last window: the same synchrony, the
    same pair states, the same episodes."""
    from attune_monitor.dsp.detector import episode_dict

    t_last = min(float(snap.sync[m][0][-1]) for m in ("hr", "eda"))
    for m in ("hr", "eda"):
        t, s, _c = snap.sync[m]
        ref = ana.sync[m]
        idx = np.searchsorted(ref["t"], t)
        np.testing.assert_allclose(ref["t"][idx], t)
        np.testing.assert_allclose(s, ref["sync"][:, idx], equal_nan=True)
    for ps in snap.pair_states:
        assert ps["state"] == _state_at(ana, ps["pair"], t_last), (ps["pair"], t_last)
    found = [episode_dict(e) for e in ana.episodes if e.flagged_s <= t_last]
    assert _episode_keys(snap.episodes) == _episode_keys(found)
    return t_last


@pytest.mark.timeout(90)
def test_replay_opens_with_the_baseline_prerolled(monkeypatch, capsys, couple_analysis):
    """Default: the first 3:00 are processed before the view opens (the couple is measurably in tune from 2:29):
    the view opens on their signals, synchrony and the pair's state as `attune analyze` has them, and plays on
    from 3:00 at 1x (not from 3:00 plus the time the view took to open)."""
    seen = _replay_a_moment(monkeypatch, capsys)
    assert "pre-rolled the first 3:00" in seen["err"] and "every pair has measured its baseline" in seen["err"]
    for key in ("open", "after"):
        snap = seen[key]
        assert 170 <= snap.t_now <= 182, (key, snap.t_now)      # the grid trails the clock by the causal filters
        assert snap.sync["hr"][0].size >= 130 and snap.sync["hr"][0][0] <= 35
        assert [ps["state"] for ps in snap.pair_states] == ["attuned"]
        assert not snap.arming["learning"]
        assert snap.grid["hr"][0][0] <= 1.0                     # the signals from the start of the recording
        _check_against_analysis(snap, couple_analysis)
    assert seen["open"].replay["position_s"] == pytest.approx(180.0)
    assert 180.0 < seen["after"].replay["position_s"] <= 180.0 + 3.0


@pytest.mark.timeout(90)
def test_prerolled_episodes_equal_analyze(monkeypatch, capsys, couple_analysis):
    """--preroll 420 takes in the first scripted rupture (flagged at 5:04, repaired): the view opens with that
    episode, closed, exactly as `attune analyze` has it, and the pair's state there (in tune again)."""
    seen = _replay_a_moment(monkeypatch, capsys, "--preroll", "420", play_s=0.3)
    assert "pre-rolled the first 7:00" in seen["err"]
    snap = seen["open"]
    t_last = _check_against_analysis(snap, couple_analysis)
    assert t_last > 404 and len(snap.episodes) == 1 and snap.episodes[0]["outcome"] == "repaired"
    assert snap.replay["position_s"] == pytest.approx(420.0)


@pytest.mark.timeout(60)
def test_no_preroll_keeps_the_replay_at_its_start(monkeypatch, capsys):
    seen = _replay_a_moment(monkeypatch, capsys, "--no-preroll")
    assert "pre-rolled" not in seen["err"]
    assert seen["open"].t_now == 0.0 and seen["open"].sync["hr"][0].size == 0
    after = seen["after"]
    assert after.t_now < 3.0 and after.replay["position_s"] < 3.0
    assert after.sync["hr"][0].size == 0                         # the first 30-s window is not complete yet
    assert after.arming["learning"] and all(ps["state"] == "calibrating" for ps in after.pair_states)


def test_preroll_options_are_checked(capsys):
    from attune_monitor.ui.cli import main

    path = str(SAMPLE / "sample-couple.xdf")
    assert main(["replay", path, "--preroll", "9999", "--headless"]) == 2
    assert "'--preroll'" in capsys.readouterr().err
    assert main(["replay", path, "--preroll", "-5", "--headless"]) == 2
    assert "'--preroll'" in capsys.readouterr().err
    # one place to start: --start, --preroll or --no-preroll
    assert main(["replay", path, "--start", "10", "--no-preroll", "--headless"]) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_default_preroll_follows_the_settings_and_plays_half_the_recording_at_least():
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.dsp.pipeline import PipelineConfig
    from attune_monitor.ui.commands.replay import default_preroll
    from attune_monitor.ui.runner import Runner

    rec = load_recording(SAMPLE / "sample-couple.xdf")
    runner = Runner(RecordingSource(rec), PipelineConfig(window_s=20.0))
    assert default_preroll(runner, 1000.0) == (20.0 + 120.0 + 30.0, 20.0 + 240.0 + 30.0)
    assert default_preroll(runner, 540.0) == (170.0, 270.0)     # half of the recording is played at least
    assert default_preroll(runner, 200.0) == (100.0, 100.0)


def test_replay_clock_starts_when_the_view_does():
    """A source made, then a view that takes 0.5 s to open at 100x: the replay goes on from where it stood (before,
    it had already jumped 50 s when the first frame was drawn)."""
    from attune_monitor.acquisition.sources import RecordingSource

    source = RecordingSource(load_recording(SAMPLE / "sample-couple.xdf"), speed=100.0)
    source.poll(horizon_s=60.0)
    time.sleep(0.5)
    source.start_clock()
    source.poll()
    assert 60.0 <= source.position_s < 60.0 + 15.0
