"""The demo ends with its simulated session: the session is closed as a replay's end is, not left with every stream
reported lost (it printed ``hr=LOST eda=LOST`` every few seconds until Ctrl-C once the scenario was over)."""

from __future__ import annotations

import io
import time


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
