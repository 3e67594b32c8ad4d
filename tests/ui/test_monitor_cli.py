"""The headless terminal view and ``attune monitor`` against simulated LSL streams."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from attune_monitor.dsp.events import EpisodeOpened, EpisodeRepaired, SignalLost


def _model_with_data():
    from attune_monitor.dsp.detector import Episode
    from attune_monitor.dsp.pipeline import Update
    from attune_monitor.ui.model import SessionModel

    people = ["P1", "P2", "P3"]
    pairs = [("P1", "P2"), ("P1", "P3"), ("P2", "P3")]
    model = SessionModel(people, ("hr", "eda"), pairs, 4.0, 1.0, 60.0)
    t = np.arange(20.0, 31.0)
    sync = np.vstack([np.full(t.size, 0.61), np.full(t.size, -0.12), np.r_[np.full(t.size - 1, 0.3), np.nan]])
    ep = Episode(id=1, pair=("P1", "P3"), people=["P3"], onset_s=24.0, flagged_s=27.0, nadir_s=26.0, offset_s=None,
                 repaired=False, depth=0.9, modalities=["hr"], confidence=0.55)
    upd = Update(grid_start=0, grid={m: np.full((3, 124), 70.0) for m in ("hr", "eda")},
                 quality={m: np.zeros((3, 124), np.uint8) for m in ("hr", "eda")},
                 windows={m: {"t": t, "sync": sync, "chance": np.full((3, t.size), 0.1)} for m in ("hr", "eda")},
                 events=[EpisodeOpened(pair=("P1", "P3"), t=27.0, episode=ep)])
    states = [{"pair": p, "state": s, "words": w, "modalities": {}} for p, s, w in
              zip(pairs, ("attuned", "possible_rupture", "drifting"), ("in tune", "possible rupture", "drifting"))]
    model.apply(upd, states, {"P1": {"hr": "ok", "eda": "ok"}, "P2": {"hr": "lost", "eda": "ok"},
                              "P3": {"hr": "ok", "eda": "noisy"}})
    return model, ep


def test_render_shows_people_status_pairs_states_and_episodes():
    from attune_monitor.ui.headless import render

    model, _ = _model_with_data()
    text = "\n".join(render(model.snapshot()))
    assert "session 00:30" in text
    assert "P2" in text and "LOST" in text and "noisy" in text
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  P")}
    assert "+0.61" in lines["P1-P2"] and "in tune" in lines["P1-P2"]
    assert "-0.12" in lines["P1-P3"] and "possible rupture" in lines["P1-P3"]
    assert "+0.30" in lines["P2-P3"]  # the latest finite value, not the NaN after it
    assert "#1 00:24 possible rupture P1-P3 (hr, led by P3), confidence 0.55; open: check in" in text
    assert "not a diagnosis" in text


def test_plain_mode_appends_lines_and_reports_each_episode_change_once():
    from attune_monitor.ui.headless import HeadlessView

    model, ep = _model_with_data()
    out = io.StringIO()
    view = HeadlessView(model, out, tty=False, interval=1000.0)
    view.draw()
    view.draw()  # nothing new: nothing appended (the status block waits for the interval)
    first = out.getvalue()
    assert "\x1b" not in first
    assert first.count("episode #1") == 1 and first.count("status:") == 1
    assert "people: P1, P2, P3; pairs: P1-P2, P1-P3, P2-P3" in first
    assert "P2 hr=LOST eda=ok" in first and "pair P1-P2: hr +0.61 eda +0.61; in tune" in first
    from attune_monitor.dsp.pipeline import Update

    ep.offset_s, ep.repaired, ep.open = 40.0, True, False
    model.apply(Update(events=[EpisodeRepaired(pair=("P1", "P3"), t=41.0, episode=ep)]))
    model.message("Recording stopped: disk full.")
    view.draw()
    more = out.getvalue()[len(first):]
    assert "repaired at 00:40 (after 16 s)" in more and "! " in more and "disk full" in more


def test_tty_mode_redraws_in_place():
    from attune_monitor.ui.headless import HeadlessView

    model, _ = _model_with_data()
    out = io.StringIO()
    view = HeadlessView(model, out, tty=True)
    view.draw()
    n = view._drawn
    model.message("hello")
    view.draw()
    second = out.getvalue().split("\x1b[J", 1)[1]
    assert second.startswith(f"\x1b[{n}F")  # cursor back up over the previous frame
    assert "\x1b[K" in second and "hello" in second


def test_monitor_refuses_bad_arguments_clearly(tmp_path):
    from attune_monitor.ui.cli import main

    existing = tmp_path / "x.xdf"
    existing.write_bytes(b"")
    dangling = tmp_path / "link.xdf"
    dangling.symlink_to(tmp_path / "elsewhere.xdf")  # a link to nothing yet: never written through
    for argv, msg in [
        (["monitor", "--headless", "--record", str(existing)], "already exists"),
        (["monitor", "--headless", "--record", str(dangling)], "already exists"),
        (["monitor", "--headless", "--record", str(tmp_path / "no" / "x.xdf")], "does not exist"),
        (["monitor", "--headless", "--record", "--label", "John Smith"], "pseudonymous"),
        (["monitor", "--headless", "--label", "c07"], "add --record"),
        (["monitor", "--headless", "--preset", "wild"], "expected one of conservative"),
        (["monitor", "--headless", "--duration", "-3"], "'--duration'"),
    ]:
        err = io.StringIO()
        old, sys.stderr = sys.stderr, err
        try:
            assert main(argv) == 2, argv
        finally:
            sys.stderr = old
        assert msg in err.getvalue() and "Traceback" not in err.getvalue(), (argv, err.getvalue())


@pytest.mark.timeout(60)
def test_headless_monitor_on_simulated_streams_records_the_session(tmp_path):
    """`attune monitor --headless --record` against simulated LSL wearables (subprocess, bounded)."""
    import pyxdf

    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import Simulator

    prefix = f"mon-{uuid.uuid4().hex[:12]}"
    sim = Simulator(simulate_session(load_scenario("couple-calm"), 3, 60.0, source_prefix=prefix))
    sim.start()
    # another app's experiment markers on the same network (not anyone's physiology)
    from attune_monitor.acquisition.lsl import pylsl

    m_out = pylsl.StreamOutlet(pylsl.StreamInfo(f"{prefix} task markers", "Markers", 1, 0.0, "string",
                                                f"{prefix}-task"))
    sent: list = []
    stop = threading.Event()

    def push_markers(outlet):  # an argument, not a closure: the test deletes its name to close the outlet
        k = 0
        while not stop.wait(0.25):
            ts = pylsl.local_clock()
            outlet.push_sample([f"trial {k} start"], ts)
            sent.append((f"trial {k} start", ts))
            k += 1

    pusher = threading.Thread(target=push_markers, args=(m_out,), daemon=True)
    pusher.start()
    out_path = tmp_path / "rec" / "session.xdf"
    out_path.parent.mkdir()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "attune_monitor.ui.cli", "monitor", "--headless", "--duration", "7", "--wait", "10",
             "--match", f"{prefix}*", "--record", str(out_path), "--label", "t-01"],
            capture_output=True, text=True, timeout=45, env=os.environ.copy(), cwd=tmp_path)
    finally:
        stop.set()
        pusher.join(2)
        sim.stop()
        del m_out
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "people: P1, P2; pairs: P1-P2" in out, out
    assert "status: P1 hr=ok eda=ok; P2 hr=ok eda=ok" in out, out
    assert "arousal: P1 learning baseline; P2 learning baseline" in out, out  # 7 s in: no arousal baseline yet
    assert "pair P1-P2:" in out
    assert "session ended at" in out
    rec_file = tmp_path / "rec" / "session-t-01.xdf"
    assert f"recording written: {rec_file}" in proc.stderr
    assert stat.S_IMODE(os.stat(rec_file).st_mode) == 0o600
    streams, _ = pyxdf.load_xdf(str(rec_file))
    by_name = {s["info"]["name"][0]: s for s in streams}
    raw = [s for s in streams if s["info"]["source_id"][0].startswith(prefix) and s["info"]["type"][0] != "Markers"]
    assert len(raw) == len(sim.session.streams)  # every device stream, with its own header
    # the other app's markers were recorded as sent (exact text; timestamps up to pyxdf's loopback clock
    # correction of microseconds), in order, without gaps; they are no one's physiology (status line above)
    task = by_name[f"{prefix} task markers"]
    got = [v[0] for v in task["time_series"]]
    assert len(got) >= 8, got
    first = [x for x, _ in sent].index(got[0])
    assert got == [x for x, _ in sent[first:first + len(got)]]
    np.testing.assert_allclose(task["time_stamps"], [t for _, t in sent[first:first + len(got)]], rtol=0, atol=1e-3)
    for s in raw:
        assert s["info"]["desc"][0]["participant"][0] in ("P1", "P2")
        assert len(s["time_stamps"]) > 0 and len(s["clock_times"]) >= 1 and "footer" in s
    assert {"Attune synchrony hr", "Attune synchrony eda", "Attune events", "Attune markers"} <= set(by_name)


def _more_sync(model, t0, value):
    """A few more synchrony windows (new numbers, same words) for every pair of ``_model_with_data``."""
    from attune_monitor.dsp.pipeline import Update

    t = np.arange(t0, t0 + 5.0)
    sync = np.full((3, t.size), value)
    model.apply(Update(windows={m: {"t": t, "sync": sync, "chance": np.full((3, t.size), 0.1)}
                                for m in ("hr", "eda")}))


def test_plain_mode_prints_a_status_block_only_when_its_words_change():
    """Not a block per interval: new synchrony numbers alone print nothing; a changed state prints one block."""
    from attune_monitor.dsp.pipeline import Update
    from attune_monitor.ui.headless import HeadlessView

    model, _ = _model_with_data()
    out = io.StringIO()
    view = HeadlessView(model, out, tty=False, interval=0.0)
    view.draw()
    for i, v in enumerate((0.5, 0.4, 0.45)):
        _more_sync(model, 31.0 + 5 * i, v)
        view.draw()
    text = out.getvalue()
    assert text.count("] status:") == 1 and text.count("] pair P1-P2:") == 1, text
    pairs = ("P1", "P2"), ("P1", "P3"), ("P2", "P3")
    model.apply(Update(),
                [{"pair": p, "state": s, "words": w, "modalities": {}} for p, s, w in
                 zip(pairs, ("drifting", "possible_rupture", "drifting"),
                     ("drifting", "possible rupture", "drifting"))])
    view.draw()
    view.draw()
    text = out.getvalue()
    assert text.count("] status:") == 2
    assert text.splitlines()[-3].endswith("pair P1-P2: hr +0.45 eda +0.45; drifting")


def test_plain_mode_heartbeat_loss_and_immediate_episode_lines():
    from attune_monitor.dsp.pipeline import Update
    from attune_monitor.ui.headless import HeadlessView

    now = [1000.0]
    model, ep = _model_with_data()
    out = io.StringIO()
    view = HeadlessView(model, out, tty=False, interval=5.0, heartbeat=60.0, clock=lambda: now[0])
    view.draw()
    assert out.getvalue().count("] status:") == 1
    for step in range(11):   # 55 s of new numbers and no news: nothing printed
        now[0] += 5.0
        _more_sync(model, 31.0 + 5 * step, 0.2 + 0.01 * step)
        view.draw()
    assert out.getvalue().count("] status:") == 1
    now[0] += 5.0            # a minute after the last block: a heartbeat
    view.draw()
    assert out.getvalue().count("] status:") == 2
    now[0] += 1.0            # signal loss: a block, but not before `interval` s after the last one
    model.apply(Update(events=[SignalLost(t=84.0, participant="P2", modality="eda", onset_s=84.0, offset_s=None,
                                          reason="no_data")]))
    ep.offset_s, ep.repaired, ep.open = 80.0, True, False
    model.apply(Update(events=[EpisodeRepaired(pair=("P1", "P3"), t=85.0, episode=ep)]))
    n = len(out.getvalue())
    view.draw()
    new = out.getvalue()[n:]
    assert "episode #1" in new and "repaired at 01:20" in new  # immediate
    assert "status:" not in new
    now[0] += 4.0
    view.draw()
    new = out.getvalue()[n:]
    assert new.count("] status:") == 1 and "] signal loss: P2 eda since 01:24 (no data)\n" in new
    now[0] += 30.0
    view.draw()
    assert out.getvalue().count("] status:") == 3   # nothing changed since: no block


def test_signal_states_of_a_replay_come_from_the_grid():
    """A replayed recording's source reports no device status: 'ok' while the grid has values in the last 3 s,
    'no data' when it has none; a source's own status wins. The GUI badges and the terminal share this."""
    from attune_monitor.dsp.pipeline import Update
    from attune_monitor.ui.headless import signal_status
    from attune_monitor.ui.model import SessionModel

    model = SessionModel(["P1", "P2"], ("hr", "eda"), [("P1", "P2")], 4.0, 1.0, 60.0)
    hr = np.full((2, 80), 70.0)
    hr[1, -16:] = np.nan                # P2's heart rate: nothing in the last 4 s
    model.apply(Update(grid_start=0, grid={"hr": hr, "eda": np.full((2, 80), 3.0)},
                       quality={m: np.zeros((2, 80), np.uint8) for m in ("hr", "eda")}), None, {})
    snap = model.snapshot(30)
    assert snap.signal_states() == {"P1": {"hr": "ok", "eda": "ok"}, "P2": {"hr": "no data", "eda": "ok"}}
    assert signal_status(snap) == {"P1": {"hr": "ok", "eda": "ok"}, "P2": {"hr": "no data", "eda": "ok"}}
    model.set_status("P1", "eda", "lost")
    assert model.snapshot(30).signal_states()["P1"]["eda"] == "lost"


def test_markers_from_elsewhere_are_printed_once_when_their_time_comes():
    """Plain mode prints each external marker (a replay's, another app's) once, when the session reaches it;
    the full-screen view shows how many and the last one."""
    from attune_monitor.ui.headless import HeadlessView, render

    model, _ = _model_with_data()   # t_now = 30.75 s
    model.show_external_markers([(12.0, "PsychoPy task", "block 1"),
                                 (20.5, "Attune markers", '{"kind": "repair", "text": "", "t": 20.5}'),
                                 (95.0, "PsychoPy task", "block 2")])   # not reached yet
    out = io.StringIO()
    view = HeadlessView(model, out, tty=False, interval=0.0)
    view.draw()
    view.draw()
    lines = [ln for ln in out.getvalue().splitlines() if "] marker " in ln]
    assert lines == ["[00:30] marker 00:12 PsychoPy task: block 1", "[00:30] marker 00:20 repair"]
    assert "Markers (2), last: 00:20 repair" in render(model.snapshot(30))


@pytest.mark.timeout(60)
def test_monitor_says_when_two_streams_claim_one_identity_and_uses_neither(tmp_path):
    """A true duplicate (two live streams with the same name, type, source_id and host): the monitor says so, once,
    and goes on with the others; the duplicated person's data is never mixed in."""
    from tests.helpers.lsl_outlets import hr_outlet

    tag = f"mon-dup-{uuid.uuid4().hex[:10]}"
    twins = [hr_outlet(tag, "P1") for _ in range(2)]
    others = [hr_outlet(tag, who) for who in ("P2", "P3")]
    stop = threading.Event()

    def pump(outlets):  # an argument, not a closure: the test deletes the names to close the outlets
        while not stop.wait(0.25):
            for o, v in zip(outlets, (60.0, 120.0, 70.0, 75.0), strict=True):
                o.push_sample([v])

    th = threading.Thread(target=pump, args=(twins + others,), daemon=True)
    th.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "attune_monitor.ui.cli", "monitor", "--headless", "--duration", "3", "--wait", "10",
             "--match", f"{tag}*"], capture_output=True, text=True, timeout=45, env=os.environ.copy(), cwd=tmp_path)
    finally:
        stop.set()
        th.join(2)
        del twins, others
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "people: P2, P3; pairs: P2-P3" in proc.stdout, proc.stdout
    said = [ln for ln in proc.stdout.splitlines() if "2 streams claim to be the same stream 'P1 HR'" in ln]
    assert len(said) == 1 and "] ! " in said[0], proc.stdout
    assert f"source_id '{tag}-P1'" in said[0] and "uses none of them" in said[0]


@pytest.mark.timeout(90)
def test_sigterm_closes_the_recording_like_ctrl_c_and_each_warning_shows_once(tmp_path):
    """`kill` of `attune monitor --headless --record`: exit 143, summary printed, footers written; a roster that
    contradicts the streams' headers gives its warnings once each (the live session re-assigns every second:
    62 identical lines in a 60-s run before)."""
    import signal

    import pyxdf

    prefix = f"sig-{uuid.uuid4().hex[:12]}"
    roster = tmp_path / "roster.toml"
    roster.write_text('version = 1\n[[participant]]\nid = "A"\n  [[participant.streams]]\n'
                      f'  source_id = "{prefix}*p1*"\n'
                      f'[[participant]]\nid = "B"\n  [[participant.streams]]\n  source_id = "{prefix}*p2*"\n')
    env = os.environ.copy()
    sim = subprocess.Popen([sys.executable, "-m", "attune_monitor.ui.cli", "simulate", "--scenario", "couple-calm",
                            "--speed", "4",
                            "--source-prefix", prefix], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    try:
        with open(out, "w") as fo, open(err, "w") as fe:
            mon = subprocess.Popen([sys.executable, "-m", "attune_monitor.ui.cli", "monitor", "--headless", "--match",
                                    f"{prefix}*",
                                    "--roster", str(roster), "--record", str(tmp_path / "recs"), "--wait", "20"],
                                   stdout=fo, stderr=fe, cwd=tmp_path, env=env)
            try:
                deadline = time.monotonic() + 40
                while "monitoring A, B" not in err.read_text() and time.monotonic() < deadline:
                    assert mon.poll() is None, err.read_text()
                    time.sleep(0.1)
                time.sleep(4.0)  # several re-assignments of the streams
                mon.send_signal(signal.SIGTERM)
                code = mon.wait(timeout=30)
            finally:
                if mon.poll() is None:
                    mon.kill()
    finally:
        sim.terminate()
        sim.wait(10)
    text = err.read_text()
    assert code == 143, text
    assert "Traceback" not in text
    warnings = [ln for ln in text.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == len(set(warnings)), warnings
    assert "stopped (SIGTERM)" in out.read_text() and "session ended at" in out.read_text()
    files = list((tmp_path / "recs").glob("*.xdf"))
    assert len(files) == 1 and f"recording written: {files[0]}" in text
    streams, _ = pyxdf.load_xdf(str(files[0]))
    raw = [s for s in streams if s["info"]["source_id"][0].startswith(prefix)]
    assert len(raw) >= 4 and all("footer" in s and len(s["time_stamps"]) for s in raw)
    said = sorted(ln for ln in warnings if "the roster says" in ln)
    assert [ln.split("'")[1] for ln in said] == sorted(s["info"]["name"][0] for s in raw), warnings  # once each


def test_terminal_view_says_it_is_learning_and_when_it_will_be_ready():
    """While the pairs learn their baseline the terminal view is not silent: it says so with a countdown
    (plain mode: a line each 30-s step of the countdown, not each second), and stops once the pairs are armed."""
    from attune_monitor.dsp.pipeline import Update
    from attune_monitor.ui.headless import HeadlessView, render
    from attune_monitor.ui.model import SessionModel

    people, pairs = ["P1", "P2"], [("P1", "P2")]
    model = SessionModel(people, ("hr",), pairs, 4.0, 1.0, 60.0)
    clock_s = [0.0]
    out = io.StringIO()
    view = HeadlessView(model, out, tty=False, interval=1.0, heartbeat=1e9, clock=lambda: clock_s[0])
    ok = {"P1": {"hr": "ok"}, "P2": {"hr": "ok"}}
    learning = [{"pair": pairs[0], "state": "calibrating", "words": "learning baseline", "modalities": {}}]
    lines_at = []
    for t_end in range(40, 101, 5):  # windows every second from 30 s on, all valid
        t = np.arange(30.0, t_end + 1.0)
        upd = Update(grid_start=0, grid={"hr": np.full((2, 4 * t_end), 70.0)},
                     quality={"hr": np.zeros((2, 4 * t_end), np.uint8)},
                     windows={"hr": {"t": t, "sync": np.full((1, t.size), 0.5), "chance": np.zeros((1, t.size))}})
        model.apply(upd, learning, ok)
        clock_s[0] += 5.0
        view.draw()
        lines_at.append(out.getvalue().count("] learning baseline \u00b7 ready in ~"))
    text = out.getvalue()
    assert "learning baseline \u00b7 ready in ~" in text
    assert "learning baseline \u00b7 ready in ~" in "\n".join(render(model.snapshot()))
    # ready in (arming span 120 s - seen) falls 5 s a draw: a new line each 30-s step, not at every draw
    assert 2 <= lines_at[-1] - lines_at[0] <= 4, lines_at
    armed = [{"pair": pairs[0], "state": "attuned", "words": "in tune", "modalities": {}}]
    model.apply(Update(), armed, ok)
    assert "ready in" not in "\n".join(render(model.snapshot()))
