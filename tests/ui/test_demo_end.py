"""The demo ends with its simulated session: the session is closed as a replay's end is, not left with every stream
reported lost (it printed ``hr=LOST eda=LOST`` every few seconds until Ctrl-C once the scenario was over)."""

from __future__ import annotations

import io
import time

from attune_monitor.ui.words import clock


def test_the_headless_demo_ends_when_its_simulated_session_ends():
    from attune_monitor.ui.commands.demo import start_demo
    from attune_monitor.ui.headless import run_headless

    runner = start_demo("couple-calm", speed=64.0)  # 300 s of session: ~5 s of wall clock
    out = io.StringIO()
    try:
        t0 = time.monotonic()
        code = run_headless(runner, duration=90.0, out=out, tty=False)
        wall = time.monotonic() - t0
    finally:
        runner.simulator.stop()
    text = out.getvalue()
    assert code == 0, text
    assert wall < 60, text  # it ended on its own, not at the 90-s duration
    assert "The simulated session ended at 5:00" in text
    assert "session ended at 05:00" in text.split("The simulated session ended")[-1]  # the summary
    assert "LOST" not in text and "lost" not in text, text
    assert runner.finished.is_set() and runner.pipeline.last_time >= 299.0
    before = runner.model.snapshot().t_now
    assert runner.step() is None and runner.model.snapshot().t_now == before  # nothing more is polled


def test_a_recording_started_in_the_demo_is_closed_when_its_session_ends(tmp_path):
    """The live view's Record button during a demo: at the simulated session's end the file is closed (footers
    written, readable by pyxdf with every stream) and the view says where it was saved, instead of recording
    nothing on until the window closes."""
    import pyxdf

    from attune_monitor.ui.commands.demo import start_demo

    runner = start_demo("couple-calm", speed=64.0)
    path = tmp_path / "demo.xdf"
    try:
        runner.start()
        rec = runner.start_recording(path)
        assert runner.finished.wait(60.0), "the demo's session did not end"
        deadline = time.monotonic() + 10.0
        while (runner.recorder is not None or runner.model.recording is not None) and time.monotonic() < deadline:
            time.sleep(0.05)
        # before the runner is stopped (which closes a recording too)
        closed_at_end = (runner.recorder is None, runner.model.recording is None, rec.writer.closed)
        msgs = runner.model.snapshot().messages
    finally:
        runner.stop()
        runner.simulator.stop()
    assert closed_at_end == (True, True, True)
    assert any(f"Recording saved: {path}" in m for m in msgs), msgs
    streams, _ = pyxdf.load_xdf(str(path))
    names = {s["info"]["name"][0] for s in streams}
    assert sum(1 for s in streams if len(s["time_stamps"]) > 10) >= 4, names  # 2 people x heart + skin at least
    last = max(float(s["time_stamps"][-1]) for s in streams if len(s["time_stamps"]))
    first = min(float(s["time_stamps"][0]) for s in streams if len(s["time_stamps"]))
    assert 250.0 < last - first < 320.0  # the session's 300 s (stamped in session time, whatever the speed-up)


def test_the_demo_says_at_its_end_what_was_scripted_and_whether_it_was_flagged():
    """The detector never sees the scenario's script; at the end the demo compares: each scripted rupture, and the
    time it was flagged or "not flagged" (then why that happens), so a newcomer can tell a hit from a miss."""
    from attune_monitor.ui.commands.demo import start_demo
    from attune_monitor.ui.headless import run_headless

    runner = start_demo("couple-rupture-repair", speed=64.0, seed=3)  # 540 s of session: ~9 s of wall clock
    out = io.StringIO()
    try:
        code = run_headless(runner, duration=90.0, out=out, tty=False)
    finally:
        runner.simulator.stop()
    text = out.getvalue()
    assert code == 0, text
    (line,) = [x for x in text.splitlines() if "Scripted in this simulation" in x]
    eps = sorted(runner.model.episode_list(), key=lambda e: e["onset_s"])
    assert len(eps) == 2, eps
    first, second = (clock(e["flagged_s"]) for e in eps)
    assert (f"P2 climbs alone (arousal up, coupling lost) 4:30-5:30: flagged at {first}; "
            f"P1 withdraws (flattens, coupling lost) 6:50-7:50: flagged at {second}.") in line, line
    assert "not flagged" not in line and "misses some" not in line
    # a miss says so: the same words from the source, given no episodes
    (missed,) = runner.source.scripted_words([])
    assert missed.count("not flagged") == 2 and "Attune misses some ruptures" in missed, missed
