"""Runner: recording on demand (the GUI's record button) from a replayed session."""

from __future__ import annotations

import math
import os
import stat

import pyxdf

from acquisition.files import load_recording
from acquisition.sources import RecordingSource
from ui.runner import Runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
