"""Hostile recordings against the offline tools (issue 18, item 7): bounded time and memory, one clear line.

Each file is built here (Attune's XDF writer, or raw XDF bytes) and given to the real CLI (``attune analyze``,
``export``, ``replay``) as a child process with a time limit and a 3-GB address-space limit (so that a regression
fails here instead of swapping the machine); the child's peak memory is read with ``os.wait4``.

* one sample stamped in Unix time among LSL stamps (hardware.md: some E4 bridges send these) — was 0.23 % of
  ``analyze`` after 600 s, memory growing 2.5 MB/s: now a stray timestamp, left out with a line, in seconds;
* a 6-kB file whose stream header claims 10^9 channels (was 7.9 GB before exit 2), and a samples chunk claiming
  10^8 strings in a few bytes: the claims are checked against the bytes, nothing allocated for them;
* a nominal rate of 1e9 Hz (was "Singular matrix" in analyze, tracebacks in replay and export): read at the rate
  the timestamps show, the analysis equal to the honest file's;
* a recording cut short anywhere (was a traceback or "unreadable XDF" for some cuts): what is whole is read, the
  same samples pyxdf reads of the whole chunks, with one line;
* and the same hostile cases as property-based fuzz of :func:`attune_monitor.acquisition.files.load_recording`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attune_monitor.acquisition.files import MAX_PLAUSIBLE_SRATE, Recording, RecordingError, load_recording
from attune_monitor.acquisition.xdf_writer import (
    TAG_SAMPLES,
    TAG_STREAM_HEADER,
    XdfWriter,
    _chunk,
    stream_header_xml,
    varlen_int,
)

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = 5000.0          # LSL time of session second 0 in the files built here
UNIX_STAMP = 1.7e9       # a Unix timestamp (November 2023)
AS_LIMIT = 3 * 2**30     # the children's address space


def run_attune(*args, cwd, timeout=30.0) -> dict:
    """``attune ARGS`` as a child process: ``{code, out, err, seconds, cpu_s, maxrss_mb}``; killed at ``timeout`` s."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-m", "attune_monitor.ui.cli", *map(str, args)], stdout=out, stderr=err,
                             cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=limit)
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                p.kill()
                os.wait4(p.pid, 0)
                out.seek(0)
                err.seek(0)
                pytest.fail(f"attune {' '.join(map(str, args))} still running after {timeout:g} s: "
                            f"{err.read()[-1500:]}")
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"code": p.returncode, "out": out.read(), "err": err.read(), "seconds": seconds,
                "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024}


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def session():
    """Two simulated people for 120 s (RR and E4 EDA of P1; RR, HR and EDA of P2), seeded."""
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario

    return simulate_session(load_scenario("couple-calm"), 3, 120.0)


def write_session(path, session, *, stamps=None, header=None):
    """The session as one XDF (all of each stream in one chunk); ``stamps(i, stream, ts)`` and ``header(i, stream,
    xml)`` may change stream ``i``'s timestamps or header XML."""
    with XdfWriter(path, fsync=False) as w:
        for i, s in enumerate(session.streams):
            xml = header(i, s, s.header_xml) if header else s.header_xml
            sid = w.add_stream(xml)
            ts = s.timestamps + ORIGIN
            w.write_samples(sid, stamps(i, s, ts.copy()) if stamps else ts, s.values)
    return Path(path)


def stream_index(session, name: str) -> int:
    return [s.name for s in session.streams].index(name)


@pytest.fixture(scope="module")
def clean_analysis(tmp_path_factory, session) -> dict:
    """``attune analyze --json`` of the honest file: the reference the hostile variants are held to."""
    folder = tmp_path_factory.mktemp("clean")
    clean = write_session(folder / "clean.xdf", session)
    ref = run_attune("analyze", clean, "--json", folder / "clean.json", cwd=folder)
    assert ref["code"] == 0, ref["err"][-2000:]
    return json.loads((folder / "clean.json").read_text())


# -- a stray Unix timestamp --------------------------------------------------------------------------------------------
@pytest.mark.timeout(150)
def test_one_unix_timestamp_among_lsl_stamps_is_a_stray_outlier_for_analyze_and_export(tmp_path, session,
                                                                                       clean_analysis):
    eda = stream_index(session, "P1 E4 EDA")

    def stray(i, s, ts):
        if i == eda:
            ts[ts.size // 2] = UNIX_STAMP
        return ts

    path = write_session(tmp_path / "stray.xdf", session, stamps=stray)
    raw = {s["info"]["name"][0]: s for s in pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                                           dejitter_timestamps=False)[0]}
    assert UNIX_STAMP in raw["P1 E4 EDA"]["time_stamps"]  # the file really holds it

    res = run_attune("analyze", path, "--json", tmp_path / "stray.json", cwd=tmp_path)
    assert res["code"] == 0, res["err"][-2000:]
    # issue 18's "done when": under 10 s (was 0.23 % after 600 s); CPU time, which a loaded machine (parallel test
    # workers) does not stretch as it does the wall time (13-17 s at a load of 8-11 on 2 cores)
    assert res["cpu_s"] < 10, (res["cpu_s"], res["seconds"])
    assert res["maxrss_mb"] < 1000, res["maxrss_mb"]
    said = [ln for ln in lines(res["err"]) if "stray timestamps" in ln]
    assert len(said) == 1 and "'P1 E4 EDA': 1 sample(s) stamped 54 years away" in said[0], res["err"]
    assert "1700000000" in said[0] and "Traceback" not in res["err"]
    a, b = clean_analysis, json.loads((tmp_path / "stray.json").read_text())
    assert b["duration_s"] == a["duration_s"] and 119 < b["duration_s"] < 121
    for pa, pb in zip(a["pairs"], b["pairs"]):  # one EDA sample of 480 missing: the same synchrony, near enough
        assert pa["pair"] == pb["pair"] and pa["modality"] == pb["modality"]
        assert abs(pa["mean_sync"] - pb["mean_sync"]) < 0.02, (pa, pb)

    res = run_attune("export", path, "--format", "csv", "--out", tmp_path / "csv", cwd=tmp_path)
    assert res["code"] == 0 and "Traceback" not in res["err"], res["err"][-2000:]
    assert res["seconds"] < 15 and "over 120 s" in res["out"], res["out"]
    with open(tmp_path / "csv" / "grid.csv", newline="") as fh:
        assert 470 <= len(list(csv.reader(fh))) - 1 <= 490  # 120 s at 4 Hz, not 54 years
    with open(tmp_path / "csv" / "stream-P1_E4_EDA.csv", newline="") as fh:
        stamps = [float(r["timestamp"]) for r in csv.DictReader(fh)]
    assert len(stamps) == 479 and max(stamps) < ORIGIN + 121


def test_stray_timestamps_in_csv_are_left_out_and_real_pauses_kept(tmp_path):
    from attune_monitor.acquisition.files import drop_stray_timestamps

    t = 1_000.0 + np.arange(480) * 0.25
    rows = [f"{who},eda,{float(x)!r},4.0" for who in ("P1", "P2") for x in t] + ["P2,eda,1700000000.0,4.0"]
    path = tmp_path / "s.csv"
    path.write_text("participant,kind,timestamp,value\n" + "\n".join(rows) + "\n")
    rec = load_recording(path)
    assert [len(s.timestamps) for s in rec.streams] == [480, 480]
    assert rec.end - rec.origin < 120 and any("P2 EDA" in p and "stray" in p for p in rec.problems)
    # an hour's break with data on both sides, and a few samples after a long pause (more than 1 %): kept
    pause = Recording(tmp_path / "p.xdf", streams=[
        _stream("P1 EDA", np.r_[t, t + 7200.0]), _stream("P2 EDA", np.r_[t, t[:20] + 90_000.0])])
    assert drop_stray_timestamps(pause) == [] and [len(s.timestamps) for s in pause.streams] == [960, 500]
    # a whole stream on another clock (Unix time among LSL stamps) is left out however long it is
    other = Recording(tmp_path / "o.xdf", streams=[
        _stream("P1 EDA", t), _stream("P2 EDA", t), _stream("P3 EDA", t + UNIX_STAMP)])
    said = drop_stray_timestamps(other)
    assert len(said) == 1 and "P3 EDA" in said[0] and len(other.streams[2].timestamps) == 0


def _stream(name, ts):
    from attune_monitor.acquisition.convention import describe
    from attune_monitor.acquisition.files import RecordedStream

    xml = stream_header_xml(name=name, type="EDA", channel_count=1, nominal_srate=4.0, channel_format="float32")
    return RecordedStream(describe(xml), np.asarray(ts, float), np.full((len(ts), 1), 4.0), xml)


# -- claims beyond the bytes -----------------------------------------------------------------------------------------
def _claims_file(path, *, channels: int, fmt: str, n_claimed: int, body: int) -> Path:
    """P1 and P2 RR (80 beats each, valid) and a third stream whose header / samples chunk claims the impossible."""
    b = b"XDF:" + _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    for sid, who in ((1, "P1"), (2, "P2")):
        xml = stream_header_xml(name=f"{who} RR", type="RR", channel_count=1, nominal_srate=0,
                                channel_format="float32", desc={"participant": who})
        b += _chunk(TAG_STREAM_HEADER, struct.pack("<I", sid) + xml.encode())
        rec = np.empty(80, dtype=[("tag", "u1"), ("t", "<f8"), ("v", "<f4")])
        rec["tag"], rec["t"], rec["v"] = 8, ORIGIN + np.arange(80) * 0.8, 0.8
        b += _chunk(TAG_SAMPLES, struct.pack("<I", sid) + varlen_int(80) + rec.tobytes())
    xml = stream_header_xml(name="P3 EDA", type="EDA", channel_count=channels, nominal_srate=4,
                            channel_format=fmt, desc={"participant": "P3"})
    b += _chunk(TAG_STREAM_HEADER, struct.pack("<I", 3) + xml.encode())
    b += _chunk(TAG_SAMPLES, struct.pack("<I", 3) + varlen_int(n_claimed) + b"\x08" + struct.pack("<d", ORIGIN)
                + bytes(body))
    Path(path).write_bytes(b)
    return Path(path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("channels, fmt, n_claimed, words", [
    (10**9, "float32", 1, "claims 1000000000 channels"),                        # was 7.9 GB before exit 2
    (1, "string", 10**8, "claiming more than their bytes can hold (100000000 sample(s)"),  # a list of 10^8 lists
])
def test_claims_beyond_the_file_size_are_refused_before_anything_is_allocated(tmp_path, channels, fmt, n_claimed,
                                                                             words):
    path = _claims_file(tmp_path / "claims.xdf", channels=channels, fmt=fmt, n_claimed=n_claimed, body=3000)
    assert path.stat().st_size < 6500
    res = run_attune("analyze", path, cwd=tmp_path)
    assert res["maxrss_mb"] < 1000, res  # the whole analysis, not 8 GB
    assert res["seconds"] < 30 and "Traceback" not in res["err"], res["err"][-2000:]
    assert res["code"] == 0, res["err"][-2000:]  # P1 and P2 are still analysed
    said = [ln for ln in lines(res["err"]) if "P3 EDA" in ln or "stream 3" in ln]
    assert len(said) == 1 and words in said[0], res["err"]
    assert "P1-P2" in res["out"]


# -- an implausible nominal rate -------------------------------------------------------------------------------------
@pytest.mark.timeout(150)
def test_a_1e9_hz_header_is_read_at_the_rate_its_timestamps_show(tmp_path, session, clean_analysis):
    eda = stream_index(session, "P1 E4 EDA")

    def claim(i, s, xml):
        return re.sub(r"<nominal_srate>[^<]*</nominal_srate>", "<nominal_srate>1e9</nominal_srate>", xml) \
            if i == eda else xml

    path = write_session(tmp_path / "rate.xdf", session, header=claim)
    res = run_attune("analyze", path, "--json", tmp_path / "rate.json", cwd=tmp_path)
    assert res["code"] == 0, res["err"][-2000:]  # was "Singular matrix", exit 2
    said = [ln for ln in lines(res["err"]) if "1e+09 Hz" in ln]
    assert len(said) == 1 and "'P1 E4 EDA': its header claims 1e+09 Hz, which no device sends; read at the rate " \
        "its timestamps show, 4 Hz" in said[0], res["err"]
    assert "Traceback" not in res["err"] and "RuntimeWarning" not in res["err"]
    a, b = clean_analysis, json.loads((tmp_path / "rate.json").read_text())
    assert a["pairs"] == b["pairs"] and a["episodes"] == b["episodes"]  # the very same analysis

    res = run_attune("export", path, "--format", "csv", "--out", tmp_path / "csv", cwd=tmp_path)
    assert res["code"] == 0 and "Traceback" not in res["err"], res["err"][-2000:]
    res = run_attune("replay", path, "--headless", "--speed", "64", "--quit-after", "2", cwd=tmp_path)
    assert res["code"] == 0, res["err"][-2000:]
    assert "Traceback" not in res["err"] and "Error" not in res["err"], res["err"][-3000:]  # was 389 tracebacks
    assert len([ln for ln in lines(res["err"]) if "1e+09 Hz" in ln]) <= 1


# -- cut short -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chunked(tmp_path_factory, session):
    """The session as a recorder writes it (a chunk per stream per second, clock offsets every 5 s), with the byte
    offset and kind of every chunk, known from the writer as it wrote them."""
    path = tmp_path_factory.mktemp("cut") / "session.xdf"
    marks = []
    with XdfWriter(path, fsync=False) as w:
        ids = [w.add_stream(s.header_xml) for s in session.streams]
        for sec in range(120):
            if sec % 5 == 0:
                for sid in ids:
                    marks.append((w._offset, "offset"))
                    w.write_clock_offset(sid, ORIGIN + sec, 0.0)
            for sid, s in zip(ids, session.streams):
                k = (s.timestamps >= sec) & (s.timestamps < sec + 1)
                if k.any():
                    marks.append((w._offset, "samples"))
                    w.write_samples(sid, s.timestamps[k] + ORIGIN, s.values[k])
    return path, marks


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["length byte", "tag", "samples", "clock offset"])
def test_a_recording_cut_short_exports_what_is_whole(tmp_path, chunked, where, capsys, monkeypatch):
    """Was a traceback from ``export --format csv`` (or "unreadable XDF" for a cut inside a chunk's tag)."""
    from attune_monitor.ui.cli import main

    path, marks = chunked
    data = path.read_bytes()
    kind = "offset" if where == "clock offset" else "samples"
    i = [j for j, (_, k) in enumerate(marks) if k == kind and j > len(marks) // 2][0]
    start, stop = marks[i][0], marks[i + 1][0]
    cut = {"length byte": start + 1, "tag": start + 3, "samples": (start + stop) // 2,
           "clock offset": start + 10}[where]
    cut_path = tmp_path / "cut.xdf"
    cut_path.write_bytes(data[:cut])
    whole = tmp_path / "whole.xdf"
    whole.write_bytes(data[:start])  # the reference: pyxdf on the whole chunks only
    ref = {s["info"]["name"][0]: len(s["time_stamps"]) for s in pyxdf.load_xdf(str(whole))[0]}
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(["export", str(cut_path), "--format", "csv", "--out", str(tmp_path / "csv")])
    out, err = capsys.readouterr()
    assert code == 0, err
    said = [ln for ln in lines(err) if "cut short" in ln]
    assert len(said) == 1 and f"its last {cut - start} bytes are an incomplete chunk" in said[0], err
    for name, n in ref.items():
        with open(tmp_path / "csv" / f"stream-{name.replace(' ', '_')}.csv", newline="") as fh:
            assert len(list(csv.reader(fh))) - 1 == n, name
    rec = load_recording(cut_path)
    assert {s.descriptor.name: len(s.timestamps) for s in rec.streams} == ref


# -- fuzz ------------------------------------------------------------------------------------------------------------
FUZZ = settings(max_examples=30, deadline=timedelta(seconds=10), database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

hostile = st.fixed_dictionaries({
    "stray": st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1), st.sampled_from(
        [UNIX_STAMP, 0.0, -1e9, 1e15, ORIGIN + 1e6, float("nan")])), max_size=3),
    "rate": st.one_of(st.none(), st.tuples(st.integers(0, 4), st.sampled_from(
        ["1e9", "1e30", "-4", "nan", "inf", "0", "1e5"]))),
    "claim": st.one_of(st.none(), st.tuples(st.sampled_from([1, 8, 10**6, 10**9, 2**31]),
                                            st.sampled_from(["float32", "double64", "string", "int8"]),
                                            st.sampled_from([1, 10**5, 10**8, 2**32 - 1, 2**40]))),
    "cut": st.one_of(st.none(), st.floats(0.05, 0.999)),
})


@FUZZ
@given(h=hostile)
def test_fuzz_hostile_recordings_load_bounded(session, h):
    """Whatever the claims and stamps: a Recording whose session is where the data are, with believable rates, in
    bounded memory — or one RecordingError line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.xdf"

        def stamps(i, s, ts):
            for j, at, value in h["stray"]:
                if j == i and ts.size:
                    ts[min(int(at * ts.size), ts.size - 1)] = value
            return ts

        def header(i, s, xml):
            if h["rate"] and h["rate"][0] == i:
                return re.sub(r"<nominal_srate>[^<]*</nominal_srate>", f"<nominal_srate>{h['rate'][1]}"
                              "</nominal_srate>", xml)
            return xml

        write_session(path, session, stamps=stamps, header=header)
        if h["claim"]:
            n_ch, fmt, n = h["claim"]
            xml = stream_header_xml(name="P3 EDA", type="EDA", channel_count=n_ch, nominal_srate=4, channel_format=fmt)
            with open(path, "ab") as fh:
                fh.write(_chunk(TAG_STREAM_HEADER, struct.pack("<I", 99) + xml.encode()))
                fh.write(_chunk(TAG_SAMPLES, struct.pack("<I", 99) + varlen_int(n) + b"\x08"
                                + struct.pack("<d", ORIGIN) + bytes(300)))
        if h["cut"]:
            data = path.read_bytes()
            path.write_bytes(data[:max(5, int(len(data) * h["cut"]))])
        tracemalloc.start()
        try:
            rec = load_recording(path)
        except RecordingError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            return
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 200 * 2**20, peak
        assert all(p and "\n" not in p for p in rec.problems + rec.notes)
        for s in rec.streams:
            assert math.isfinite(s.descriptor.srate) and 0 <= s.descriptor.srate <= MAX_PLAUSIBLE_SRATE
        physio = rec.physio_streams()
        if physio:
            first = min(float(np.nanmin(s.timestamps)) for s in physio)
            last = max(float(np.nanmax(s.timestamps)) for s in physio)
            assert last - first <= 121 + 3600, (first, last, rec.problems)  # the session, not the stray stamps

