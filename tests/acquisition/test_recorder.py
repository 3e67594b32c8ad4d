"""The session recorder: LabRecorder-style XDF of raw LSL streams + Attune's derived streams."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import pyxdf

from attune_monitor.acquisition.lsl import pylsl
from attune_monitor.acquisition.recorder import SessionRecorder, check_label, default_recording_path, event_payload
from attune_monitor.acquisition.xdf_writer import XdfWriteError
from attune_monitor.dsp.detector import PairState
from attune_monitor.dsp.events import EpisodeOpened, SignalBack, SignalLost, StateChanged
from tests.helpers.lsl_outlets import wait_until


def _load(path, **kw):
    streams, header = pyxdf.load_xdf(str(path), dejitter_timestamps=False, synchronize_clocks=False, **kw)
    return {s["info"]["name"][0]: s for s in streams}, header


def _wait(cond, timeout=8.0):
    return bool(wait_until(cond, timeout))


def _outlet(name, type_, n_ch, srate, fmt, sid):
    info = pylsl.StreamInfo(name, type_, n_ch, srate, fmt, sid)
    desc = info.desc()
    desc.append_child_value("participant", "P1")
    desc.append_child_value("manufacturer", "TestCo")
    chans = desc.append_child("channels")
    for k in range(n_ch):
        c = chans.append_child("channel")
        c.append_child_value("label", f"ch{k}")
        c.append_child_value("unit", "microvolts")
    return info, pylsl.StreamOutlet(info)


def test_lsl_streams_round_trip_with_header_clock_offsets_and_footer(tmp_path):
    """Every sample pushed after the recorder connected comes back with its exact timestamp; header kept."""
    tag = uuid.uuid4().hex
    info_a, out_a = _outlet("rec-test ECG", "ECG", 2, 50.0, "float32", f"rec-a-{tag}")
    info_m, out_m = _outlet("rec-test Markers", "Markers", 1, 0.0, "string", f"rec-m-{tag}")
    path = tmp_path / "lsl.xdf"
    rec = SessionRecorder(path, clock_interval=0.3, poll_interval=0.05)
    try:
        for sid in (f"rec-a-{tag}", f"rec-m-{tag}"):
            found = pylsl.resolve_byprop("source_id", sid, 1, 5.0)
            assert found, f"test outlet {sid} not found on loopback"
            rec.add_lsl_stream(found[0])
        rec.start()
        assert _wait(lambda: len(rec._inlets) == 2), "the recorder did not open its inlets"
        time.sleep(0.2)
        t0 = pylsl.local_clock()
        n = 0
        sent_ts = []
        for k in range(10):  # 10 chunks of 10 samples, explicit timestamps (irregular spacing on purpose)
            idx = np.arange(n, n + 10)
            ts = t0 + idx * 0.02 + (idx % 3) * 1e-4
            out_a.push_chunk(np.c_[idx, -idx].astype(np.float32), ts.tolist())
            sent_ts.append(ts)
            out_m.push_sample([f"marker {k} ü"], float(ts[0]))
            n += 10
            time.sleep(0.05)
        assert _wait(lambda: rec.n_samples >= 110, 5.0), f"only {rec.n_samples} samples recorded"
        time.sleep(0.4)  # at least one more clock offset round
    finally:
        rec.close()
        del out_a, out_m
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    got, _ = _load(path)
    a = got["rec-test ECG"]
    np.testing.assert_array_equal(a["time_series"][:, 0], np.arange(100, dtype=np.float32))
    np.testing.assert_array_equal(a["time_series"][:, 1], -np.arange(100, dtype=np.float32))
    np.testing.assert_array_equal(a["time_stamps"], np.concatenate(sent_ts))
    # the device's metadata is kept: the full inlet header, desc included
    d = a["info"]["desc"][0]
    assert d["manufacturer"] == ["TestCo"] and d["participant"] == ["P1"]
    assert [c["label"][0] for c in d["channels"][0]["channel"]] == ["ch0", "ch1"]
    assert a["info"]["source_id"] == [f"rec-a-{tag}"] and a["info"]["channel_count"] == ["2"]
    # clock offsets were measured through the session (loopback: ~0) and the footer was written
    assert len(a["clock_times"]) >= 2 and np.all(np.abs(a["clock_values"]) < 0.01)
    assert a["footer"]["info"]["sample_count"] == ["100"]
    m = got["rec-test Markers"]
    assert [v[0] for v in m["time_series"]] == [f"marker {k} ü" for k in range(10)]
    np.testing.assert_array_equal(m["time_stamps"], [ts[0] for ts in sent_ts])


def _fake_runner(origin=5000.0):
    from attune_monitor.dsp.pipeline import PipelineConfig
    from attune_monitor.ui.model import SessionModel

    cfg = PipelineConfig()
    people = ["P1", "P2", "P3"]
    pairs = [("P1", "P2"), ("P1", "P3"), ("P2", "P3")]
    model = SessionModel(people, ("hr", "eda"), pairs, cfg.fs, cfg.step_s, 60.0)
    pipe = SimpleNamespace(origin=origin, pairs=pairs, modalities=("hr", "eda"), participants=people)
    return SimpleNamespace(pipeline=pipe, model=model, config=cfg, listeners=[])


def _update(t, rng, events=()):
    from attune_monitor.dsp.pipeline import Update

    wins = {m: {"t": t, "sync": rng.uniform(-1, 1, (3, t.size)), "chance": np.full((3, t.size), 0.1)}
            for m in ("hr", "eda")}
    return Update(grid_start=0, grid={}, quality={}, windows=wins, events=list(events))


def test_derived_streams_events_and_markers(tmp_path, rng):
    from attune_monitor.dsp.detector import Episode

    runner = _fake_runner(origin=5000.0)
    path = tmp_path / "derived.xdf"
    rec = SessionRecorder(path, label="couple-07")
    rec.attach(runner)
    assert rec.on_update in runner.listeners and rec.on_marker in runner.model.marker_sinks
    ep = Episode(id=1, pair=("P1", "P2"), people=["P1"], onset_s=21.0, flagged_s=24.0, nadir_s=23.0, offset_s=None,
                 repaired=False, depth=0.8, modalities=["hr"], confidence=0.5)
    ups = [
        _update(np.array([20.0, 21.0, 22.0]), rng, [StateChanged(state=PairState.DRIFTING, previous=PairState.ATTUNED,
                                                                 t=21.0, pair=("P1", "P2"))]),
        _update(np.array([23.0, 24.0]), rng, [EpisodeOpened(pair=("P1", "P2"), t=24.0, episode=ep),
                                              SignalLost(t=22.5, participant="P3", modality="eda", onset_s=22.5,
                                                         offset_s=None, reason="flat")]),
    ]
    for u in ups:
        for listener in runner.listeners:
            listener(u)
    runner.model.t_now = 24.0
    runner.model.add_marker("label", "hit-and-run", episode=1)
    runner.model.add_marker("repair", "they laughed")
    rec.close()
    assert rec.on_update not in runner.listeners
    got, _ = _load(path)
    for m in ("hr", "eda"):
        s = got[f"Attune synchrony {m}"]
        assert s["info"]["type"] == ["Synchrony"] and float(s["info"]["nominal_srate"][0]) == 1.0
        assert [c["label"][0] for c in s["info"]["desc"][0]["channels"][0]["channel"]] == ["P1-P2", "P1-P3", "P2-P3"]
        np.testing.assert_array_equal(s["time_stamps"], 5000.0 + np.array([20.0, 21, 22, 23, 24]))
        want = np.hstack([u.windows[m]["sync"] for u in ups]).T.astype(np.float32)
        np.testing.assert_array_equal(s["time_series"], want)
        assert s["info"]["desc"][0]["session_label"] == ["couple-07"]
    ev = got["Attune events"]
    payloads = [json.loads(v[0]) for v in ev["time_series"]]
    assert [p["type"] for p in payloads] == ["state", "episode_open", "signal_loss"]
    assert payloads[0] == {"type": "state", "state": "drifting", "previous": "attuned", "t": 21.0, "pair": ["P1", "P2"]}
    assert payloads[2] == {"type": "signal_loss", "participant": "P3", "modality": "eda", "onset_s": 22.5,
                           "offset_s": None, "reason": "flat"}
    assert payloads[1]["episode"]["pair"] == ["P1", "P2"] and payloads[1]["episode"]["depth"] == 0.8
    np.testing.assert_array_equal(ev["time_stamps"], 5000.0 + np.array([21.0, 24.0, 22.5]))
    mk = got["Attune markers"]
    marks = [json.loads(v[0]) for v in mk["time_series"]]
    assert marks[0] == {"kind": "label", "text": "hit-and-run", "t": 24.0, "episode": 1}
    assert marks[1]["kind"] == "repair" and marks[1]["text"] == "they laughed"
    np.testing.assert_array_equal(mk["time_stamps"], [5024.0, 5024.0])


def test_a_fresh_recording_loads_in_pyxdf_without_a_warning(tmp_path, rng, caplog):
    """Attune's derived streams carry (zero) clock offsets and the header a datetime: pyxdf, with its default clock
    synchronisation and dejittering, has nothing to warn about (it warned "Segments and clock-segments differ" for
    every derived stream before), and load_recording lists no problem."""
    import logging
    import warnings

    from attune_monitor.acquisition.files import load_recording

    runner = _fake_runner(origin=5000.0)
    path = tmp_path / "fresh.xdf"
    rec = SessionRecorder(path, clock_interval=5.0)
    rec.attach(runner)
    for k in range(4):
        rec.on_update(_update(np.arange(20.0 + 4 * k, 24.0 + 4 * k), rng, [
            StateChanged(state=PairState.DRIFTING, previous=PairState.ATTUNED, t=21.0 + 4 * k, pair=("P1", "P2"))]))
    runner.model.t_now = 30.0
    runner.model.add_marker("note", "a note")
    rec.close()
    with caplog.at_level(logging.DEBUG, logger="pyxdf"), warnings.catch_warnings():
        warnings.simplefilter("error")
        streams, header = pyxdf.load_xdf(str(path))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert header["info"]["datetime"][0][:2] == "20"
    for s in streams:
        assert len(s["clock_times"]) >= 2 and np.all(np.asarray(s["clock_values"]) == 0.0), s["info"]["name"]
        assert s["info"]["clock_segments"] == s["info"]["segments"]
    sync = next(s for s in streams if s["info"]["name"] == ["Attune synchrony hr"])
    np.testing.assert_allclose(sync["time_stamps"], 5000.0 + np.arange(20.0, 36.0), atol=1e-9)   # not moved
    loaded = load_recording(path)
    assert loaded.problems == [] and loaded.start_datetime is not None


class _FakeSession:
    """What the recorder reads of a LiveSession for the roster: its assignment and roster (no LSL)."""

    def __init__(self, assignment, roster):
        self.assignment, self.roster, self.receivers = assignment, roster, {}

    def marker_streams(self):
        return {}


def test_roster_is_recorded_when_it_changes_and_loads_back(tmp_path):
    from attune_monitor.acquisition.convention import describe
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.roster import Roster, assign

    def hdr(name, typ, sid):
        return describe(f"<info><name>{name}</name><type>{typ}</type><channel_count>1</channel_count>"
                        f"<nominal_srate>4</nominal_srate><channel_format>float32</channel_format>"
                        f"<source_id>{sid}</source_id><hostname>pc</hostname><desc/></info>")

    roster = Roster.from_toml('version = 1\n[[participant]]\nid = "P1"\nstreams = [{ name = "Strap A" }, '
                              '{ name = "GSR A", unit = "kOhm" }]\n', source="test")
    streams = [hdr("Strap A", "RR", "a-rr"), hdr("GSR A", "EDA", "a-eda")]
    session = _FakeSession(assign(streams, roster), roster)
    rec = SessionRecorder(tmp_path / "r.xdf", poll_interval=0.02)
    rec.follow(session)
    rec.start()
    assert _wait(lambda: rec._roster_text is not None, 5.0)
    first = rec._roster_text
    rec._followed_at = 0.0   # the next look at the session is due now
    time.sleep(0.1)
    session.assignment = assign([*streams, hdr("Strap B", "RR", "b-rr")], roster)   # a second person appears
    assert _wait(lambda: rec._roster_text != first, 5.0)
    rec.close()
    got, _ = _load(tmp_path / "r.xdf")
    st = got["Attune roster"]
    assert st["info"]["type"] == ["AttuneRoster"] and len(st["time_series"]) == 2   # once per change, not per look
    assert "unit = \"kOhm\"" in st["time_series"][0][0] and "Strap B" in st["time_series"][1][0]
    assert len(st["clock_times"]) >= 1
    loaded = load_recording(tmp_path / "r.xdf")
    assert loaded.roster_source == "recorded"
    assert [p.id for p in loaded.roster.participants] == ["P1", "Strap B@pc"]
    assert loaded.event_markers() == []   # the roster is not a marker


def test_disk_full_mid_session_stops_recording_keeps_file_and_session_goes_on(tmp_path, rng, monkeypatch):
    import attune_monitor.acquisition.xdf_writer as xw

    runner = _fake_runner()
    path = tmp_path / "full.xdf"
    rec = SessionRecorder(path)
    rec.attach(runner)
    rec.on_update(_update(np.array([20.0, 21.0]), rng))
    real_write = os.write

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xw.os, "write", full_disk)
    rec.on_update(_update(np.array([22.0]), rng))  # fails inside: must not raise into the runner
    monkeypatch.setattr(xw.os, "write", real_write)
    assert not rec.active and "free some disk space" in rec.error
    msgs = runner.model.snapshot().messages
    assert any("Recording stopped" in m and "free some disk space" in m for m in msgs)
    assert runner.model.recording["active"] is False and runner.model.recording["error"]
    rec.on_update(_update(np.array([23.0]), rng))  # the session goes on: later updates are ignored quietly
    runner.model.add_marker("note", "still here")
    rec.close()
    got, _ = _load(path)
    np.testing.assert_array_equal(got["Attune synchrony hr"]["time_stamps"], [5020.0, 5021.0])


def test_unwritable_path_is_a_clear_error(tmp_path):
    with pytest.raises(XdfWriteError, match="create the folder first"):
        SessionRecorder(tmp_path / "missing" / "x.xdf")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root ignores permission bits
        with pytest.raises(XdfWriteError, match="folder you can write to"):
            SessionRecorder(ro / "x.xdf")


def test_default_path_label_and_mode(tmp_path):
    when = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    p = default_recording_path(tmp_path / "recs", "couple-07", when=when)
    assert p == tmp_path / "recs" / "session-20260304-050607-couple-07.xdf"
    assert stat.S_IMODE(os.stat(tmp_path / "recs").st_mode) == 0o700
    rec = SessionRecorder(p)
    rec.close()
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert default_recording_path(tmp_path / "recs", "couple-07", when=when).name.endswith("-couple-07-2.xdf")
    assert default_recording_path(tmp_path / "recs", when=when).name == "session-20260304-050607.xdf"
    for bad in ("John Smith", "a/b", "-x", "x" * 41):
        with pytest.raises(ValueError, match="pseudonymous"):
            check_label(bad)


def test_event_payload_is_json_with_session_time():
    t, text = event_payload(SignalBack(t=np.float64(7.5), participant="P1", modality="hr", onset_s=3.0,
                                       offset_s=np.float64(7.5), reason="flat"))
    assert t == 7.5 and json.loads(text) == {"type": "signal_back", "participant": "P1", "modality": "hr",
                                             "onset_s": 3.0, "offset_s": 7.5, "reason": "flat"}


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from attune_monitor.acquisition.lsl import pylsl
    from attune_monitor.acquisition.recorder import SessionRecorder
    sid = sys.argv[2]
    info = pylsl.StreamInfo("kill-test ECG", "ECG", 1, 100.0, "float32", sid)
    out = pylsl.StreamOutlet(info)
    rec = SessionRecorder(sys.argv[1], poll_interval=0.05)
    rec.add_lsl_stream(pylsl.resolve_byprop("source_id", sid, 1, 5.0)[0])
    rec.start()
    while not rec._inlets:
        time.sleep(0.02)
    time.sleep(0.2)
    n = 0
    t0 = pylsl.local_clock()
    while True:
        k = np.arange(n, n + 5)
        out.push_chunk(k[:, None].astype(np.float32), (t0 + k / 100.0).tolist())
        n += 5
        print(n, flush=True)
        time.sleep(0.05)
""")


def test_kill_9_mid_recording_file_loads_up_to_about_a_second_before(tmp_path):
    path = tmp_path / "killed.xdf"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), f"kill-{uuid.uuid4().hex}"],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    pushed = 0
    try:
        deadline = time.monotonic() + 30
        while pushed < 250 and time.monotonic() < deadline:  # ~2.5 s of recording
            line = proc.stdout.readline()
            if not line:
                break
            pushed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert pushed >= 250, "the recording subprocess did not get going"
    got, _ = _load(path)
    s = got["kill-test ECG"]
    x = s["time_series"][:, 0]
    assert "footer" not in s  # killed: no footer, yet readable
    np.testing.assert_array_equal(x, np.arange(x.size))  # nothing lost or damaged in between
    assert x.size >= pushed - 100, f"{x.size} samples in the file, {pushed} pushed (100 Hz): more than 1 s lost"
