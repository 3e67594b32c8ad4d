"""End to end: the real simulator -> LSL -> LiveSession -> Runner -> SessionModel -> window (and recordings replayed).

Kept fast with the simulator's speed-up and high replay speeds.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("tmp_qsettings")]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "recordings" / "sample-couple.xdf"


def _window(qtbot, runner):
    from attune_monitor.ui.gui.main_window import MainWindow
    from attune_monitor.ui.gui.settings import Settings

    win = MainWindow(runner.model, runner, settings=Settings())
    qtbot.addWidget(win)
    win.show()
    return win


class _SessionTrace:
    """What a live session showed every 10 s of session time (pair states, drops, signals, losses, messages), so
    that a test waiting for a flag that never comes says why."""

    def __init__(self, runner, every_s: float = 10.0):
        self.runner, self.every_s, self.rows, self._next = runner, every_s, [], -math.inf

    def sample(self) -> bool:
        """Record a row when session time has moved on by ``every_s``; always False (for ``waitUntil``)."""
        model = self.runner.model
        if model.t_now >= self._next:
            self._next = model.t_now + self.every_s
            snap = model.snapshot(1)
            states = "; ".join(f"{'-'.join(p['pair'])} {p['words']} drop="
                               f"{p['drop'] if p['drop'] is None else round(p['drop'], 2)}" for p in snap.pair_states)
            status = " ".join(f"{who}:{','.join(f'{m}={v}' for m, v in st.items())}"
                              for who, st in snap.status.items())
            sim_t = self.runner.simulator.session_time()
            self.rows.append(f"t={model.t_now:6.1f} sim={sim_t:6.1f} | {states} | {status} | "
                             f"losses={len(snap.signal_loss)} markers={len(snap.markers)}")
        return False

    def text(self) -> str:
        messages = self.runner.model.snapshot(1).messages
        return "\n".join(self.rows + ["messages:"] + list(messages)[-20:])


def test_demo_live_record_button_rupture_flag_and_label_into_recording(qtbot, tmp_path):
    """Simulated couple at 16x: traces update; press Record: elapsed time and file name show; a marker goes in;
    the scripted rupture (90 s) shows in the panel; a label chosen there goes in; Stop -> the XDF holds every
    raw simulator stream, the synchrony/event streams and the markers."""
    import pyxdf

    from attune_monitor.ui.commands.demo import start_demo
    from attune_monitor.ui.gui.main_window import MainWindow
    from attune_monitor.ui.gui.settings import Settings

    runner = start_demo("couple-rupture-repair", speed=24.0)
    folder = tmp_path / "recs"
    try:
        raw_ids = {r.descriptor.source_id for r in runner.source.session.receivers.values()}
        win = MainWindow(runner.model, runner, settings=Settings(recordings_dir=str(folder)))
        qtbot.addWidget(win)
        win.show()
        runner.start()
        qtbot.waitUntil(lambda: runner.model.t_now > 5, timeout=15000)
        assert win.record_btn.isEnabled()
        qtbot.mouseClick(win.record_btn, QtCore.Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: runner.model.recording is not None, timeout=3000)
        path = Path(runner.model.recording["path"])
        assert path.parent == folder
        qtbot.waitUntil(lambda: path.name in win.record_label.text() and "0:01" in win.record_label.text(),
                        timeout=5000)
        assert win.record_btn.text().endswith("Stop")
        x, y = win.traces.curves[("P1", "hr")].getData()
        assert x.size > 10 and np.isfinite(y).sum() > 5 and 40 < np.nanmedian(y) < 120
        win.add_marker("rupture_noticed")
        # the pair is measurably in tune after ~3-4 min of session time; the scripted rupture starts at 4:30
        trace = _SessionTrace(runner)
        try:
            qtbot.waitUntil(lambda: trace.sample() or win.episodes.count() >= 1, timeout=60000)
        except qtbot.TimeoutError:
            pytest.fail("no episode flagged; what the session went through:\n" + trace.text())
        ep = win.snapshot.episodes[0]
        # the scripted rupture starts at 270 s (P2's arousal climbs alone for 60 s)
        assert 260 <= ep["onset_s"] <= 330 and tuple(ep["pair"]) == ("P1", "P2")
        assert win.timelines.episode_spans(("P1", "P2"))
        win.episodes.select_episode(ep["id"])
        win.episodes.label_box.activated.emit(win.episodes.label_box.findText("dismissive"))
        qtbot.mouseClick(win.record_btn, QtCore.Qt.MouseButton.LeftButton)   # stop
        qtbot.waitUntil(lambda: runner.model.recording is None and win.record_label.text() == "", timeout=3000)
        assert any("Recording saved" in m for m in runner.model.snapshot(1).messages)
    finally:
        runner.stop()
        runner.simulator.stop()
    streams, _ = pyxdf.load_xdf(str(path))
    by_type = {}
    for s in streams:
        by_type.setdefault(s["info"]["type"][0], []).append(s)
    got_raw = {s["info"]["source_id"][0] for s in streams} & raw_ids
    assert got_raw == raw_ids, (raw_ids, [s["info"]["name"][0] for s in streams])
    assert all(len(s["time_stamps"]) > 10 for s in streams if s["info"]["source_id"][0] in raw_ids)
    assert {"Synchrony", "AttuneEvents", "Markers"} <= set(by_type)
    payloads = [json.loads(x[0]) for x in by_type["Markers"][0]["time_series"]]
    assert [p["kind"] for p in payloads][:2] == ["rupture_noticed", "label"]
    assert payloads[1]["episode"] == ep["id"] and payloads[1]["text"] == "dismissive"


def test_record_to_unwritable_folder_says_so_and_session_goes_on(qtbot, tmp_path):
    from PySide6 import QtWidgets

    from attune_monitor.ui.commands.demo import start_demo
    from attune_monitor.ui.gui.main_window import MainWindow
    from attune_monitor.ui.gui.settings import Settings

    runner = start_demo("couple-rupture-repair", speed=16.0)   # live (a replay offers no Record button)
    win = MainWindow(runner.model, runner, settings=Settings(recordings_dir="/proc/self"))  # no file can be made there
    qtbot.addWidget(win)
    win.show()
    runner.start()
    try:
        qtbot.waitUntil(lambda: runner.model.t_now > 2, timeout=8000)
        qtbot.mouseClick(win.record_btn, QtCore.Qt.MouseButton.LeftButton)
        box = win.findChild(QtWidgets.QMessageBox, "notice")
        assert box is not None and box.isVisible()
        assert "Cannot create XDF file" in box.text() and "Settings" in box.text()
        assert runner.model.recording is None and not win.record_btn.isChecked()
        assert "Recording not started" in win.message_label.text() or any(
            "Recording not started" in m for m in runner.model.snapshot(1).messages)
        t = runner.model.t_now
        frames = win.frames
        qtbot.waitUntil(lambda: runner.model.t_now > t + 5 and win.frames > frames + 3, timeout=5000)  # UI alive
        box.done(0)
    finally:
        runner.stop()
        runner.simulator.stop()


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample recording missing (make recordings)")
def test_replay_scrub_play_pause_speed(qtbot):
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.ui.runner import Runner

    runner = Runner(RecordingSource(load_recording(SAMPLE), speed=8.0))
    win = _window(qtbot, runner)
    runner.start()
    try:
        qtbot.waitUntil(lambda: win.replay_action.isVisible(), timeout=5000)
        assert win.scrubber.maximum() == int(runner.model.replay["duration_s"])
        # scrub to 360 s: the runner reprocesses up to there, the view follows
        win.scrubber.setValue(360)
        win._scrub_released()
        qtbot.waitUntil(lambda: runner.model.t_now >= 359, timeout=15000)
        qtbot.waitUntil(lambda: win.scrubber.value() >= 359, timeout=3000)
        # the recording's signals show as there (its source reports no device status: from the grid)
        qtbot.waitUntil(lambda: win.traces.badge("P1", "hr") == "ok" and win.traces.badge("P2", "eda") == "ok",
                        timeout=3000)
        x0, x1 = win.x_range(runner.model.t_now)
        assert x1 >= 359
        # the episode of 270-330 s (flagged by ~5:30) was found while reprocessing
        qtbot.waitUntil(lambda: win.episodes.count() >= 1, timeout=5000)
        # pause holds the position; speed goes to the source
        win.toggle_pause()
        qtbot.waitUntil(lambda: runner.model.replay["paused"], timeout=3000)
        qtbot.waitUntil(lambda: win.play_btn.text() == "Play", timeout=3000)
        assert not win.play_btn.icon().isNull() and not win.next_btn.icon().isNull()  # drawn icons, not font glyphs
        t_paused = runner.model.t_now
        qtbot.wait(600)
        assert runner.model.t_now - t_paused < 1.0
        win.set_speed(64)
        win.toggle_pause()
        qtbot.waitUntil(lambda: runner.model.replay["speed"] == 64 and not runner.model.replay["paused"], timeout=3000)
        qtbot.waitUntil(lambda: runner.model.t_now > t_paused + 20, timeout=5000)
    finally:
        runner.stop()


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample recording missing (make recordings)")
def test_replay_window_opens_filled_at_1x(qtbot, monkeypatch):
    """`attune replay sample-couple.xdf` (GUI, 1x): the window's first frames show the pre-rolled first 3:00 --
    the pair's card "in tune" (no "learning baseline", no countdown), its synchrony plot drawn from 0:30, the
    scrubber and the clock at 3:00 -- and the replay plays on from there."""
    import attune_monitor.ui.commands.replay as replay
    from attune_monitor.ui.cli import main
    from attune_monitor.ui.words import STATE_WORDS

    seen = {}

    def gui_view(runner, args, **kw):
        win = _window(qtbot, runner)
        runner.start()
        try:
            qtbot.waitUntil(lambda: win.replay_action.isVisible(), timeout=5000)
            win.redraw()
            seen["card"] = win.meters.meters[("P1", "P2")].words
            seen["clock"] = win.pos_label.text()
            seen["scrubber"] = win.scrubber.value()
            seen["arming"] = win.arming_label.text()
            seen["drawn"] = {m: c.getData()[0] for m, c in win.timelines.plots[0]["curves"].items()}
            qtbot.wait(1500)
            seen["later"] = runner.model.replay["position_s"]
        finally:
            runner.stop()
        return 0

    monkeypatch.setattr(replay, "open_view", gui_view)
    assert main(["replay", str(SAMPLE)]) == 0
    assert seen["card"] == STATE_WORDS["attuned"] and seen["arming"] == ""
    assert seen["clock"].startswith("3:0") and seen["clock"].endswith("/ 9:00") and 180 <= seen["scrubber"] <= 183
    for m, x in seen["drawn"].items():   # the synchrony plot drawn from the first window on
        assert x is not None and x.size >= 130 and x[0] <= 35 and x[-1] >= 165, m
    assert 181.0 <= seen["later"] <= 186.0


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample recording missing (make recordings)")
def test_replay_jump_to_next_episode(qtbot):
    """"Next episode" seeks to just after the next flag (scripted ruptures at 90 s and 230 s) and shows it;
    the episodes it jumps to are the ones the replay itself then flags (and those of `attune analyze`)."""
    import json

    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.ui.runner import Runner, analyze_recording

    truth = json.loads(SAMPLE.with_suffix(".truth.json").read_text())
    onsets = [r["onset_s"] for r in truth["ruptures"]]
    rec = load_recording(SAMPLE)
    expected = sorted(e.onset_s for e in analyze_recording(rec).episodes)
    runner = Runner(RecordingSource(rec, speed=1.0))
    win = _window(qtbot, runner)
    runner.start()
    try:
        qtbot.waitUntil(lambda: win.replay_action.isVisible(), timeout=5000)
        seen = []
        for k, onset in enumerate(onsets):
            win.next_episode()   # the first press may come before the look-ahead is ready: it waits for it
            qtbot.waitUntil(lambda k=k: (win._show_after_seek is None and not win._next_pending
                                         and len(win.snapshot.episodes) > k), timeout=10000)
            ep = max(win.snapshot.episodes, key=lambda e: e["onset_s"])
            assert onset - 10 <= ep["onset_s"] <= onset + 50, (k, ep)
            assert runner.model.t_now < ep["flagged_s"] + 10, "jumped, not played through"
            assert not win.follow
            x0, x1 = win.x_range(runner.model.t_now)
            assert x0 <= ep["onset_s"] <= x1   # the view shows it
            seen.append(ep["onset_s"])
        assert seen == pytest.approx(expected[:len(onsets)])
        assert runner.model.replay["speed"] == 1.0 and not runner.model.replay["paused"]
        # past the last one: says so, stays put
        win.next_episode()
        assert "No further episode" in win.statusBar().currentMessage() or len(expected) > len(onsets)
        # scrub back to the start: the model is rebuilt from the recording
        win.scrubber.setValue(5)
        win._scrub_released()
        qtbot.waitUntil(lambda: runner.model.t_now < 30 and not win.snapshot.episodes, timeout=5000)
    finally:
        runner.stop()


def test_lost_stream_shows_lost_within_2s_and_recovers(qtbot):
    """Two people's HR streams from our own outlets; one outlet goes away -> its badge says "lost"."""
    import time

    from attune_monitor.acquisition.live import LiveSession
    from attune_monitor.acquisition.sources import LiveSource
    from attune_monitor.ui.runner import Runner

    tag = f"attune-guitest-{uuid.uuid4().hex[:8]}"

    from tests.helpers.lsl_outlets import hr_outlet

    outs = {"P1": hr_outlet(tag, "P1"), "P2": hr_outlet(tag, "P2")}
    alive = {"P1": True, "P2": True}
    k = [0]

    def push():
        k[0] += 1
        for who, o in outs.items():
            if alive[who] and o is not None:
                o.push_sample([70.0 + 5 * math.sin(k[0] / 7) + (who == "P2")])

    pusher = QtCore.QTimer()
    pusher.timeout.connect(push)
    pusher.start(250)
    session = LiveSession(match=f"{tag}*", rescan_interval=1.0).start()
    runner = None
    try:
        qtbot.waitUntil(lambda: len(session.participants) >= 2, timeout=15000)
        qtbot.wait(600)
        runner = Runner(LiveSource(session))
        win = _window(qtbot, runner)
        runner.start()
        # both streams flowing into the pipeline first: a receiver holds its samples until its sender's clock offset
        # is measured (~0.6 s, longer on a loaded machine), and until then nothing advances
        qtbot.waitUntil(lambda: win.traces.badge("P2", "hr") == "ok" and win.traces.badge("P1", "hr") == "ok"
                        and runner.model.snapshot().t_now > 1.0, timeout=15000)
        alive["P2"] = False
        outs["P2"] = None   # the device vanishes: outlet destroyed
        t0 = time.monotonic()
        qtbot.waitUntil(lambda: win.traces.badge("P2", "hr") == "lost", timeout=8000)
        lost_after = time.monotonic() - t0
        snap = runner.model.snapshot(5)
        assert win.traces.badge("P1", "hr") == "ok", (snap.status, snap.signal_loss, snap.t_now)
        assert lost_after <= 2.5, f"took {lost_after:.1f} s to show 'lost'"
    finally:
        pusher.stop()
        if runner is not None:
            runner.stop()
        else:
            session.close()


@pytest.mark.qt_no_exception_capture
@pytest.mark.skipif(not SAMPLE.exists(), reason="sample recording missing (make recordings)")
def test_unhandled_error_flushes_the_recording_and_session_goes_on(qtbot, tmp_path):
    """run_gui's error hook (recording_guard) flushes the running recording before the dialog; the file reads."""
    import pyxdf

    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.ui.gui.app import ErrorReporter, recording_guard
    from attune_monitor.ui.runner import Runner

    runner = Runner(RecordingSource(load_recording(SAMPLE), speed=32.0))
    flushed = []
    real_flush = runner.flush_recording
    runner.flush_recording = lambda: (flushed.append(runner.model.t_now), real_flush())
    rep = ErrorReporter(on_error=recording_guard(runner), show_dialog=False).install()
    win = _window(qtbot, runner)
    path = tmp_path / "guarded.xdf"
    runner.start()
    try:
        qtbot.waitUntil(lambda: runner.model.t_now > 40, timeout=8000)
        runner.start_recording(path)
        qtbot.waitUntil(lambda: runner.model.t_now > 80, timeout=8000)

        def bad_slot():
            raise RuntimeError("boom while recording")

        QtCore.QTimer.singleShot(0, bad_slot)
        qtbot.waitUntil(lambda: rep.errors == ["RuntimeError: boom while recording"], timeout=3000)
        assert len(flushed) == 1
        streams, _ = pyxdf.load_xdf(str(path))   # readable while still recording
        assert any(s["info"]["type"][0] == "Synchrony" and len(s["time_stamps"]) > 10 for s in streams)
        t = runner.model.t_now
        qtbot.waitUntil(lambda: runner.model.t_now > t + 10 and runner.model.recording is not None, timeout=5000)
        assert win.record_label.text()
    finally:
        rep.uninstall()
        runner.stop()
