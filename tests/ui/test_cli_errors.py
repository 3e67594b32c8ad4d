"""The real ``attune`` CLI (subprocesses) on the inputs and situations that gave tracebacks or unclear errors.

Each case asserts the exit code, that stderr is one clear line (or none), and that no traceback is shown:
a recording shorter than a synchrony window (analyze, export), results that cannot be written (checked
before the work), a reader that closes the pipe, unusable ``--record`` paths, and Ctrl-C / SIGTERM, which end
a session like Ctrl-C always did (summary printed) with exit code 130 / 143.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "attune_monitor.ui.cli"]
SAMPLE = ROOT / "recordings" / "sample-couple.xdf"


def attune(*args, cwd, timeout=90) -> subprocess.CompletedProcess:
    """``attune ARGS`` in a subprocess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


@pytest.fixture
def attune_here(capsys, monkeypatch, tmp_path):
    """``attune ARGS`` in this process (``ui.cli.main``, the console script's entry point), in ``tmp_path``."""
    from attune_monitor.ui.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def assert_one_line_error(p: subprocess.CompletedProcess, *, code: int = 2, words: str = "") -> str:
    """Exit ``code``, exactly one non-empty stderr line starting with ``attune``, no traceback; returns it."""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == code, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr and "[Errno" not in p.stderr, p.stderr
    assert len(lines) == 1 and lines[0].startswith("attune "), p.stderr
    assert words in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def short_xdf(tmp_path_factory) -> Path:
    """``attune simulate --duration 25 --out s.xdf``: shorter than one synchrony window plus warm-up."""
    folder = tmp_path_factory.mktemp("short")
    p = attune("simulate", "--duration", "25", "--out", "s.xdf", cwd=folder)
    assert p.returncode == 0, p.stderr
    return folder / "s.xdf"


def test_analyze_of_a_recording_shorter_than_a_window(short_xdf, tmp_path):
    """Was ``KeyError: 't'``: now the summary, with one line saying why nothing could be flagged."""
    from attune_monitor.ui.analysis_io import validate

    p = attune("analyze", short_xdf, "--json", tmp_path / "s.json", "--report", tmp_path / "rep", cwd=tmp_path)
    line = assert_one_line_error(p, code=0, words="too short: 25 s of data gave no synchrony window")
    assert line.startswith(f"attune analyze: warning: {short_xdf}")
    assert "possible ruptures: 0" in p.stdout and "not measurably in tune" in p.stdout
    doc = json.loads((tmp_path / "s.json").read_text())
    assert validate(doc) == [] and {r["coverage"] for r in doc["pairs"]} == {0.0}
    assert (tmp_path / "rep" / "index.html").is_file()


@pytest.mark.parametrize("fmt", ["csv", "edf", "fif"])
def test_export_of_a_recording_shorter_than_a_window(short_xdf, tmp_path, fmt, attune_here):
    out = tmp_path / {"csv": "s-csv", "edf": "s.edf", "fif": "s_raw.fif"}[fmt]
    p = attune_here("export", short_xdf, "--format", fmt, "--out", out)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stdout.startswith(f"wrote {out}") and "4 channels at 4 Hz over 25 s" in p.stdout  # no pair channels
    if fmt == "csv":
        with open(out / "grid.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["session_s", "P1 HR [bpm]", "P2 HR [bpm]", "P1 EDA [uS]", "P2 EDA [uS]"]
        assert 90 <= len(rows) - 1 <= 101


def test_export_csv_with_an_empty_stream(tmp_path, attune_here):
    """Was ``ValueError: cannot reshape array of size 0``: a stream that never sent a sample."""
    from attune_monitor.acquisition.xdf_writer import XdfWriter

    path = tmp_path / "e.xdf"
    with XdfWriter(path, fsync=False) as w:
        for who in ("P1", "P2"):
            sid = w.add_stream(dict(name=f"{who} RR", type="RR", channel_count=1, nominal_srate=0,
                                    channel_format="double64", desc={"participant": who}))
            w.write_samples(sid, 1000.0 + np.arange(80) * 0.8, np.full((80, 1), 800.0))
        w.add_stream(dict(name="P1 EDA", type="EDA", channel_count=1, nominal_srate=4, channel_format="float32",
                          desc={"participant": "P1"}))  # connected, never sent anything
    p = attune_here("export", path, "--format", "csv")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    with open(tmp_path / "e-csv" / "stream-P1_EDA.csv", newline="") as fh:
        assert list(csv.reader(fh)) == [["timestamp", "session_s", "ch0"]]


def test_unwritable_json_is_refused_before_the_work(short_xdf, tmp_path, attune_here):
    """Was ``FileExistsError`` / ``FileNotFoundError`` after the analysis."""
    (tmp_path / "afile").write_text("x")
    for target, words in ((tmp_path / "afile" / "x.json", "is a file, not a folder"),
                          ("/proc/attune-test/x.json", "cannot create folder '/proc/attune-test'"),
                          ("/proc/x.json", "cannot write into folder '/proc'")):
        p = attune_here("analyze", short_xdf, "--json", target)
        assert_one_line_error(p, words=words)
        assert p.stdout == ""  # nothing was analysed
    p = attune_here("analyze", short_xdf, "--json", tmp_path / "new" / "dir" / "s.json")
    assert p.returncode == 0 and (tmp_path / "new" / "dir" / "s.json").is_file()


def test_evaluate_json_into_new_folders_and_unwritable(tmp_path, attune_here):
    """Was ``FileNotFoundError`` after all the work."""
    ev = tmp_path / "ev"
    ev.mkdir()
    assert attune_here("simulate", "--duration", "60", "--out", ev / "a.xdf", "--truth",
                       ev / "a.truth.json").returncode == 0
    p = attune_here("evaluate", ev, "--json", "/proc/e.json")
    assert_one_line_error(p, words="cannot write into folder '/proc'")
    assert p.stdout == ""  # refused before any file was analysed
    p = attune("evaluate", ev, "--json", "new/dir/e.json", cwd=tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert json.loads((tmp_path / "new" / "dir" / "e.json").read_text())["overall"]["files"] == 1


@pytest.mark.parametrize("command", [["analyze"], ["export", "--format", "csv", "--force"]])
def test_closed_pipe_is_quiet(short_xdf, tmp_path, command):
    """``attune analyze f.xdf | head -1``: was ``BrokenPipeError``; now exit 141 (as SIGPIPE) and silence."""
    args = [command[0], str(short_xdf), *command[1:]]
    if command[0] == "export":
        args += ["--out", str(tmp_path / "o-csv")]
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    proc.stdout.close()  # the reader went away before the first line
    _, err = proc.communicate(timeout=90)
    err = err.decode()
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err


def test_record_paths_are_checked_before_any_stream(tmp_path, attune_here):
    nothing = f"nothing-{uuid.uuid4().hex}*"
    base = ["monitor", "--headless", "--match", nothing, "--wait", "0.2"]
    p = attune_here(*base, "--record", "/proc/x.xdf")  # was a garbled '[Errno 2] ...: '/proc/x.xdf'' after streams
    assert_one_line_error(p, words="Invalid value for '--record': cannot write into folder '/proc'")
    p = attune_here(*base, "--record", "x.txt")  # was: a folder x.txt/ created silently
    assert_one_line_error(p, words="ends in '.txt', but a recording is an .xdf file; give FILE.xdf (e.g. x.xdf)")
    assert not (tmp_path / "x.txt").exists()
    (tmp_path / "afile").write_text("")
    p = attune_here(*base, "--record", "afile/x.xdf")
    assert_one_line_error(p, words="'afile' is a file, not a folder")
    # a name without a suffix is a folder: created (0700); then no streams: one line, exit 2
    p = attune(*base, "--record", "sessions", cwd=tmp_path)  # (LSL discovery in a subprocess)
    assert_one_line_error(p, words="no session to monitor")
    assert (tmp_path / "sessions").is_dir() and (tmp_path / "sessions").stat().st_mode & 0o777 == 0o700


def _wait_for(path: Path, text: str, proc, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, path.read_text(errors="replace")
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen in {path.name} within {timeout} s: {path.read_text()[-2000:]}")


@pytest.mark.parametrize("sig, code, words", [(signal.SIGINT, 130, "stopped (Ctrl-C)"),
                                              (signal.SIGTERM, 143, "stopped (SIGTERM)")])
def test_replay_stopped_by_a_signal(tmp_path, sig, code, words):
    """The README promises 130 after Ctrl-C (replay, demo and monitor returned 0); SIGTERM closes the same way."""
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([*CLI, "replay", str(SAMPLE), "--headless", "--speed", "8"], stdout=fo, stderr=fe,
                                cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            _wait_for(out, "] status:", proc)
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == code, err.read_text()
        finally:
            proc.kill() if proc.poll() is None else None
    text = out.read_text()
    assert words in text and "session ended at" in text.split(words)[1]  # the summary after the stop
    assert "Traceback" not in err.read_text()


def test_demo_ctrl_c_exits_130(tmp_path):
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([*CLI, "demo", "--headless", "--speed", "8"], stdout=fo, stderr=fe, cwd=tmp_path,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            _wait_for(out, "] status:", proc)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 130, err.read_text()
        finally:
            proc.kill() if proc.poll() is None else None
    assert "stopped (Ctrl-C)" in out.read_text() and "session ended at" in out.read_text()
    assert "Traceback" not in err.read_text()
