"""The runner's tick probe (``Runner.measure_ticks``, ``ui.runner.TickLog``, ``attune monitor --tick-log``):
off by default, durations as planted, bounded, and the hidden CLI option writes it during a live session."""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from attune_monitor.acquisition.files import load_recording
from attune_monitor.acquisition.sources import RecordingSource
from attune_monitor.ui.runner import Runner, TickLog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "recordings", "sample-couple.xdf")


def _runner() -> Runner:
    return Runner(RecordingSource(load_recording(SAMPLE), speed=math.inf), tick_s=0.005)


def _planted_steps(runner: Runner, planted_s) -> None:
    """Replace the runner's tick with sleeps of the planted durations; after the last one the worker stops."""
    todo = list(planted_s)

    def step():
        if not todo:
            runner._stop.set()
            return None
        time.sleep(todo.pop(0))
        return None

    runner.step = step


def _run_worker(runner: Runner) -> None:
    runner.start()
    runner._thread.join(20)
    assert not runner._thread.is_alive()


def test_ticks_are_not_measured_by_default():
    runner = _runner()
    _planted_steps(runner, [0.002] * 5)
    _run_worker(runner)
    assert runner.tick_durations is None
    assert runner.take_tick_durations().size == 0


def test_measured_ticks_are_the_planted_durations_and_the_log_line_summarises_them(tmp_path):
    planted = [0.002, 0.002, 0.030, 0.002, 0.002, 0.002, 0.045, 0.002] * 3  # 24 ticks, 6 long ones
    runner = _runner()
    _planted_steps(runner, planted)
    log = TickLog(runner, tmp_path / "ticks.jsonl", interval_s=60.0)  # no line until close: one interval
    assert runner.tick_durations is not None
    _run_worker(runner)
    log.close()
    log.close()  # idempotent
    lines = [json.loads(ln) for ln in (tmp_path / "ticks.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    ticks_ms = np.array(line["ticks_ms"])
    assert line["ticks"] == ticks_ms.size == len(planted) + 1  # + the tick that stopped the worker (no sleep)
    assert line["dropped"] == 0
    excess = ticks_ms[:-1] - np.array(planted) * 1e3
    assert excess.min() >= -0.01, excess  # a tick lasts at least its sleep
    assert np.median(excess) < 5.0, excess  # and not much longer (a loaded 2-core machine: generous)
    assert ticks_ms[-1] < 5.0
    p50, p99 = np.percentile(ticks_ms, [50, 99])
    assert line["p50_ms"] == pytest.approx(p50, abs=0.002) and line["p50_ms"] < 10.0  # most ticks are 2-ms ones
    assert line["p99_ms"] == pytest.approx(p99, abs=0.002) and line["p99_ms"] >= 44.0  # the 45-ms ones
    assert line["max_ms"] == pytest.approx(ticks_ms.max(), abs=0.002)
    assert abs(line["monotonic"] - time.monotonic()) < 30.0  # the system-wide clock other processes read
    assert oct(os.stat(tmp_path / "ticks.jsonl").st_mode & 0o777) == "0o600"


def test_the_tick_buffer_is_bounded_and_counts_what_it_dropped(tmp_path):
    runner = _runner()
    runner.measure_ticks(maxlen=3)
    _planted_steps(runner, [0.001, 0.001, 0.001, 0.020, 0.020])
    _run_worker(runner)
    assert runner.ticks_dropped == 3  # 6 ticks (5 planted + the stopping one) into 3 places
    kept = runner.take_tick_durations()
    assert kept.shape == (3,) and kept[0] >= 0.0199 and kept[1] >= 0.0199 and kept[2] < 0.005
    assert runner.take_tick_durations().size == 0  # drained
    with pytest.raises(ValueError, match="maxlen"):
        runner.measure_ticks(maxlen=0)


def test_the_log_reports_drops_and_session_time_of_a_real_replay(tmp_path):
    """Real ticks of a replay at full speed: the line's session time is the model's, drops are counted."""
    runner = _runner()
    log = TickLog(runner, tmp_path / "t.jsonl", interval_s=60.0)
    runner.measure_ticks(maxlen=2)  # a tiny buffer: most ticks are dropped, and said to be
    runner.start()
    assert runner.finished.wait(60)
    time.sleep(0.1)
    runner.stop()
    log.close()
    line = json.loads((tmp_path / "t.jsonl").read_text())
    assert line["session_s"] == pytest.approx(runner.model.t_now, abs=1e-3) and line["session_s"] > 60.0
    assert line["ticks"] == 2 and line["dropped"] >= 1
    assert line["dropped"] == runner.ticks_dropped


def test_the_log_never_writes_through_an_existing_file_or_link(tmp_path):
    runner = _runner()
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    for path in (target, link):
        with pytest.raises(FileExistsError):
            TickLog(runner, path)
    assert target.read_text() == "keep me"
    with pytest.raises(ValueError, match="interval_s"):
        TickLog(runner, tmp_path / "new.jsonl", interval_s=0.0)


def test_tick_log_option_is_hidden_and_refuses_an_existing_file(tmp_path):
    env = dict(os.environ)
    help_text = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "monitor", "--help"],
                               capture_output=True, text=True, timeout=60, env=env, cwd=ROOT).stdout
    assert "--match" in help_text and "tick-log" not in help_text
    existing = tmp_path / "ticks.jsonl"
    existing.write_text("")
    proc = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "monitor", "--headless", "--tick-log",
                           str(existing)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 2
    assert "'--tick-log'" in proc.stderr and "already exists" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.timeout(60)
def test_headless_monitor_writes_the_tick_log_during_a_live_session(tmp_path):
    """`attune monitor --headless --tick-log` against simulated wearables: lines every 5 s, ticks at ~20/s."""
    prefix = f"tick-{uuid.uuid4().hex[:12]}"
    env = dict(os.environ)
    sim = subprocess.Popen([sys.executable, "-m", "attune_monitor.ui.cli", "simulate", "--scenario", "couple-calm",
                            "--duration", "120", "--speed", "4", "--source-prefix", prefix],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    path = tmp_path / "ticks.jsonl"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "attune_monitor.ui.cli", "monitor", "--headless", "--duration", "11", "--wait", "20",
             "--match", f"{prefix}*", "--tick-log", str(path)],
            capture_output=True, text=True, timeout=50, env=env, cwd=tmp_path)
    finally:
        sim.terminate()
        sim.wait(10)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(ln) for ln in path.read_text().splitlines()]
    assert len(lines) >= 3  # two 5-s intervals and the last one at close
    ticks = sum(ln["ticks"] for ln in lines)
    assert 100 <= ticks <= 11 * 20 + 5  # a 50-ms tick over 11 s (a busy machine runs fewer)
    assert sum(ln["dropped"] for ln in lines) == 0
    assert sum(len(ln["ticks_ms"]) for ln in lines) == ticks
    session = [ln["session_s"] for ln in lines]
    assert session == sorted(session) and session[-1] > 20.0  # 11 s at 4x of session time has passed
    assert all(0 < ln["p50_ms"] <= ln["p99_ms"] <= ln["max_ms"] for ln in lines if ln["ticks"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc's malloc")
def test_each_line_holds_the_process_memory_then(tmp_path):
    """Issue 21: a line holds the process's memory when it was written: the resident set as psutil reads it, and
    what malloc has handed out (``heap_in_use_mb``): a 32-MB array made between two lines shows in both, and its
    release in the heap's."""
    import psutil

    from attune_monitor.ui import runner as runner_module

    if runner_module._MALLINFO2 is None:
        pytest.skip("glibc without mallinfo2")
    # A long-lived test worker may hold a resident free chunk the 32-MB array is carved from (glibc raises its
    # mmap threshold to the size of the largest mmapped block freed, up to 32 MB): then RSS does not move. Made
    # here on purpose, then handed back to the kernel (malloc_trim), so the array's pages are new ones.
    stale = np.ones(33_000_000 // 8)
    del stale
    stale, _pin = np.ones(32_900_000 // 8), np.ones(1000)  # _pin keeps the freed chunk off the heap top
    del stale
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    log = TickLog(_runner(), tmp_path / "m.jsonl", interval_s=60.0)
    try:
        before = log.write()
        rss = psutil.Process().memory_info().rss / 1e6
        assert before["rss_mb"] == pytest.approx(rss, abs=3.0)
        block = np.ones(4_000_000)  # 32 MB, written to: resident
        during = log.write()
        del block
        after = log.write()
    finally:
        log.close()
    assert 31.9 <= during["heap_in_use_mb"] - before["heap_in_use_mb"] <= 33.5
    assert during["rss_mb"] - before["rss_mb"] >= 30.0
    assert -33.5 <= after["heap_in_use_mb"] - during["heap_in_use_mb"] <= -31.9
    assert during["py_blocks"] > 0 and before["heap_free_mb"] >= 0.0
    lines = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [ln["heap_in_use_mb"] for ln in lines[:3]] == [before["heap_in_use_mb"], during["heap_in_use_mb"],
                                                          after["heap_in_use_mb"]]
