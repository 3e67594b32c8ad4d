"""Runner: recording on demand (the GUI's record button) from a replayed session."""

from __future__ import annotations

import math
import os
import stat

import pyxdf

from attune_monitor.acquisition.files import load_recording
from attune_monitor.acquisition.sources import RecordingSource
from attune_monitor.ui.runner import Runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_start_and_stop_recording(tmp_path):
    rec = load_recording(os.path.join(ROOT, "recordings", "sample-couple.xdf"))
    runner = Runner(RecordingSource(rec, speed=math.inf))
    out = tmp_path / "take.xdf"
    runner.start_recording(out, label="couple-07")
    assert runner.model.recording["path"] == str(out) and runner.model.recording["active"]
    runner.model.add_marker("rupture_noticed", "voice rose")
    for _ in range(3):
        runner.step()
    st = runner.stop_recording()
    assert st["path"] == str(out) and runner.model.recording is None
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    streams, _ = pyxdf.load_xdf(str(out))
    names = {s["info"]["name"][0]: s for s in streams}
    sync = [n for n in names if "synchrony" in n.lower()]
    assert sync and len(names[sync[0]]["time_stamps"]) > 200
    markers = [s for n, s in names.items() if "marker" in n.lower()]
    assert markers and any("voice rose" in m[0] for m in markers[0]["time_series"])
    assert runner.stop_recording() is None  # idempotent
    # our own derived streams ("Attune synchrony hr" ...) are never mistaken for a person's heart or EDA
    assert load_recording(out).physio_streams() == []


def test_a_stream_that_appears_later_is_announced():
    """Slots are fixed when monitoring starts; a later stream is told to the user, not silently ignored."""
    rec = load_recording(os.path.join(ROOT, "recordings", "sample-couple.xdf"))

    class LateStreamSource(RecordingSource):
        announced = False

        def new_streams(self):
            if self.announced:
                return []
            self.announced = True
            return ["P3 Polar H10 RR"]

    runner = Runner(LateStreamSource(rec, speed=math.inf))
    runner.step()
    runner.step()
    msgs = runner.model.snapshot().messages
    assert sum("P3 Polar H10 RR" in m and "restart monitoring" in m for m in msgs) == 1


def test_other_apps_markers_show_live_at_their_session_time():
    """A live session with two people and another app's marker stream: each marker reaches the model at its
    session time (its LSL timestamp - the source's origin), as a note, and is not handed to the marker sinks."""
    import time
    import uuid

    import numpy as np

    from attune_monitor.acquisition.live import LiveSession
    from attune_monitor.acquisition.lsl import pylsl
    from attune_monitor.acquisition.sources import LiveSource

    tag = f"attune-mk-{uuid.uuid4().hex[:8]}"

    from tests.helpers.lsl_outlets import hr_outlet

    outs = [hr_outlet(tag, "P1"), hr_outlet(tag, "P2")]
    task = pylsl.StreamOutlet(pylsl.StreamInfo(f"{tag} task", "Markers", 1, 0.0, "string", f"{tag}-task"))
    session = LiveSession(match=f"{tag}*", rescan_interval=0.5, discover_timeout=1.0).start()
    runner = None
    try:
        deadline = time.monotonic() + 10
        while len(session.participants) < 2 and time.monotonic() < deadline:
            for o in outs:
                o.push_sample([70.0])
            time.sleep(0.1)
        runner = Runner(LiveSource(session))
        got = []
        runner.model.marker_sinks.append(got.append)
        deadline = time.monotonic() + 10
        while not session.marker_streams() or not session._marker_inlets:
            assert time.monotonic() < deadline, "the marker stream was not followed"
            runner.step()
            time.sleep(0.1)
        sent = []
        for k in range(3):
            ts = pylsl.local_clock()
            task.push_sample([f"trial {k}"], ts)
            sent.append(ts)
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while len(runner.model.snapshot().markers) < 3 and time.monotonic() < deadline:
            for o in outs:
                o.push_sample([70.0])
            runner.step()
            time.sleep(0.05)
        marks = runner.model.snapshot().markers
        assert [(m["kind"], m["text"]) for m in marks] == [("note", f"{tag} task: trial {k}") for k in range(3)]
        np.testing.assert_allclose([m["t"] for m in marks], np.array(sent) - runner.source.origin, atol=0.05)
        assert got == []
    finally:
        if runner is not None:
            runner.source.close()
        else:
            session.close()
        del outs, task


def test_a_duplicate_appearing_mid_session_is_told_in_the_view():
    """A second publisher of a stream in use appears after monitoring started: the live session refuses it, and
    the runner shows the session's notice in the view (not only on the terminal at start)."""
    import time
    import uuid

    from attune_monitor.acquisition.live import LiveSession
    from attune_monitor.acquisition.sources import LiveSource
    from tests.helpers.lsl_outlets import hr_outlet

    tag = f"attune-dup-{uuid.uuid4().hex[:8]}"
    outs = [hr_outlet(tag, "P1"), hr_outlet(tag, "P2")]
    session = LiveSession(match=f"{tag}*", rescan_interval=0.3, discover_timeout=1.0).start()
    twin = None
    try:
        deadline = time.monotonic() + 20
        while len(session.participants) < 2 and time.monotonic() < deadline:
            for o in outs:
                o.push_sample([70.0])
            time.sleep(0.1)
        runner = Runner(LiveSource(session))
        runner._next_stream_check = 0.0
        runner.step()
        assert not any("same stream" in m for m in runner.model.snapshot().messages)
        twin = hr_outlet(tag, "P1")  # same name, type, source_id, host: a true duplicate, another uid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for o in outs + [twin]:
                o.push_sample([70.0])
            runner._next_stream_check = 0.0
            runner.step()
            if any("same stream 'P1 HR'" in m for m in runner.model.snapshot().messages):
                break
            time.sleep(0.1)
        msgs = [m for m in runner.model.snapshot().messages if "same stream 'P1 HR'" in m]
        assert len(msgs) == 1 and "refuses" in msgs[0]
    finally:
        session.close()
        del outs, twin


def test_preroll_runs_until_the_pairs_are_measured_within_its_bounds():
    """sample-couple is measurably in tune from 2:29 (`attune analyze`'s first state change, 148.75 s): a pre-roll
    of at least 60 s goes on until then (in 10-s steps), one of at least 200 s stops at 200, a bound stops it;
    the model and the replay clock stand where it stopped."""
    import pytest

    from attune_monitor.analysis import analyze_recording

    rec = load_recording(os.path.join(ROOT, "recordings", "sample-couple.xdf"))
    first = analyze_recording(rec).state_changes[0]
    assert first[2] == "attuned"

    def preroll(lo, hi):
        runner = Runner(RecordingSource(rec, speed=1.0))
        return runner, runner.preroll(lo, hi)

    runner, pos = preroll(60.0, 300.0)
    assert first[0] < pos <= first[0] + 20.0 and pos % 10 == 0
    assert [ps["state"] for ps in runner.pipeline.detector.pair_states()] == ["attuned"]
    assert runner.model.replay["position_s"] == pos and pos - 12 <= runner.model.t_now <= pos
    runner, pos = preroll(60.0, 100.0)          # bounded: still learning there
    assert pos == 100.0 and runner.pipeline.detector.pair_states()[0]["state"] == "calibrating"
    runner, pos = preroll(200.0, 300.0)         # at least min_s, even when armed earlier
    assert pos == 200.0
    runner, pos = preroll(0.0, 0.0)
    assert pos == 0.0 and runner.model.t_now == 0.0
    runner, pos = preroll(9999.0, 9999.0)       # clipped to the recording
    assert pos == pytest.approx(runner.source.duration_s)
    runner.start()
    try:
        with pytest.raises(RuntimeError, match="before start"):
            runner.preroll(10.0)
    finally:
        runner.stop()


def test_headless_session_keeps_its_heap_frozen_while_it_runs_and_hands_it_back():
    """run_headless freezes the objects that exist when the session starts (the pipeline's machines among
    them) out of the cyclic collector's scans, and unfreezes them when it ends, Ctrl-C or not."""
    import gc
    import io

    from attune_monitor.ui.headless import run_headless

    rec = load_recording(os.path.join(ROOT, "recordings", "sample-couple.xdf"))
    runner = Runner(RecordingSource(rec, speed=math.inf))
    seen = []
    real_step = runner.step

    def step():
        seen.append(gc.get_freeze_count())
        return real_step()

    runner.step = step
    assert gc.get_freeze_count() == 0
    assert run_headless(runner, duration=30.0, out=io.StringIO()) == 0
    assert seen and min(seen) > 0
    assert gc.get_freeze_count() == 0
