"""``attune streams`` on real loopback LSL streams: in-process (capsys) and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from attune_monitor.acquisition.convention import desc_fields
from attune_monitor.acquisition.lsl import pylsl
from attune_monitor.acquisition.roster import Roster
from attune_monitor.ui.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _info(name, kind, participant, source_id, unit, srate):
    f = desc_fields(kind, participant, device="H10", manufacturer="Polar", unit=unit)
    info = pylsl.StreamInfo(name, f["type"], 1, srate, "float32", source_id)
    d = info.desc()
    d.append_child_value("participant", participant)
    d.append_child_value("manufacturer", f["manufacturer"])
    d.append_child_value("device", f["device"])
    ch = d.append_child("channels").append_child("channel")
    for k, v in f["channels"][0].items():
        ch.append_child_value(k, v)
    return info


@pytest.fixture(scope="module")
def two_people():
    """P1 and P2, each with an RR (ms) and an EDA (uS) stream, plus one unlabelled EDA stream in nS."""
    tok = uuid.uuid4().hex[:8]
    prefix = f"attune-test-cli-{tok}"
    # participant ids unique to this run: other tests on this machine publish their own "P1"
    p1, p2 = f"P1-{tok}", f"P2-{tok}"
    specs = [("P1 H10 RR", "rr", p1, "ms", 0.0, 820.0), ("P1 EDA", "eda", p1, "uS", 4.0, 4.2),
             ("P2 H10 RR", "rr", p2, "ms", 0.0, 760.0), ("P2 EDA", "eda", p2, "uS", 4.0, 6.1)]
    outlets = [(pylsl.StreamOutlet(_info(n, k, p, f"{prefix}-{p[:2]}-{k}", u, r)), v)
               for n, k, p, u, r, v in specs]
    # a stream with no participant and no unit: device fallback, unit guessed from its values
    raw = pylsl.StreamInfo("Shimmer 4F2A GSR", "GSR", 1, 4.0, "float32", f"{prefix}-shimmer")
    outlets.append((pylsl.StreamOutlet(raw), 5300.0))
    stop = threading.Event()

    def pump(outlets):  # an argument, not a closure: the fixture deletes its name to close the outlets
        while not stop.wait(0.05):
            for o, v in outlets:
                o.push_sample([v])

    th = threading.Thread(target=pump, args=(outlets,), daemon=True)
    th.start()
    yield prefix, tok
    stop.set()
    th.join(2)
    del outlets


def _mine(rows, prefix):
    return {r["source_id"]: r for r in rows if r["source_id"].startswith(prefix)}


def test_streams_table_shows_two_participants_heart_and_eda(two_people, capsys):
    two_people, tok = two_people
    assert main(["streams", "--timeout", "2"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0] + " " + ln.split()[1]: ln for ln in out.splitlines() if two_people in ln}
    for p in ("P1", "P2"):
        rr = next(ln for ln in out.splitlines() if f"{two_people}-{p}-rr" in ln)
        eda = next(ln for ln in out.splitlines() if f"{two_people}-{p}-eda" in ln)
        pid = f"{p}-{tok}"
        assert " RR " in rr and "irregular" in rr and f" {pid} " in rr and "hr:rr" in rr and " ms" in rr
        assert " EDA " in eda and "4 Hz" in eda and f" {pid} " in eda and "eda:eda" in eda and " uS" in eda
        assert f"  {pid}: eda <- '{p} EDA', hr <- '{p} H10 RR'" in out
    shimmer = next(ln for ln in out.splitlines() if f"{two_people}-shimmer" in ln)
    assert "Shimmer 4F2A@" in shimmer and "(device)" in shimmer and "nS (guessed)" in shimmer
    assert "names no participant" in out
    assert len(lines) == 5


def test_streams_as_subprocess_json(two_people, tmp_path):
    two_people, tok = two_people
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    assert env["LSLAPICFG"].endswith("lsl_api.cfg")
    saved = tmp_path / "roster.toml"
    proc = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "streams", "--timeout", "1.5", "--json",
                           "--match", f"{two_people}*", "--save-roster", str(saved)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["scope"] == "machine" and data["config"] == env["LSLAPICFG"]
    mine = _mine(data["streams"], two_people)
    assert len(mine) == 5 == len(data["streams"])  # --match kept only ours
    for p in ("P1", "P2"):
        rr, eda = mine[f"{two_people}-{p}-rr"], mine[f"{two_people}-{p}-eda"]
        pid = f"{p}-{tok}"
        assert (rr["participant"], rr["modality"], rr["kind"], rr["unit"], rr["srate"]) == (pid, "hr", "rr", "ms", 0)
        assert (eda["participant"], eda["modality"], eda["unit"], eda["srate"]) == (pid, "eda", "uS", 4)
        assert rr["full_header"] and rr["assigned_by"] == "desc" and rr["hostname"]
        assert data["participants"][pid] == {"hr": f"{p} H10 RR", "eda": f"{p} EDA"}
    sh = mine[f"{two_people}-shimmer"]
    assert sh["assigned_by"] == "device" and sh["unit"] == "nS" and sh["unit_guessed"]
    # the saved roster reproduces the assignment, and can be fed back
    roster = Roster.load(saved)
    assert sorted(p.id for p in roster.participants)[:2] == [f"P1-{tok}", f"P2-{tok}"]
    proc2 = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "streams", "--timeout", "1.5", "--json",
                            "--match", f"{two_people}*", "--roster", str(saved)],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    again = _mine(json.loads(proc2.stdout)["streams"], two_people)
    assert {k: (v["participant"], v["assigned_by"]) for k, v in again.items()} == \
        {k: (v["participant"], "roster") for k, v in mine.items()}


@pytest.mark.parametrize("argv, match", [
    (["streams", "--timeout", "0"],
     "Invalid value for '--timeout': expected a positive number of seconds, but got 0; use e.g. --timeout 5."),
    (["streams", "--roster", "/nonexistent/roster.toml"], "does not exist; check the path"),
    (["streams", "--lsl-scope", "link"], "call acquisition.lslconfig.configure() before importing pylsl"),
])
def test_bad_input_is_one_clear_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err


def test_no_streams_is_said_plainly(capsys):
    assert main(["streams", "--timeout", "0.3", "--match", f"nothing-{uuid.uuid4()}"]) == 0
    assert "No LSL streams visible within 0.3 s (scope machine)" in capsys.readouterr().out


def test_a_resistance_stream_says_it_is_read_as_conductance(capsys):
    prefix = f"attune-test-kohm-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo("Shimmer 77C1 GSR", "GSR", 1, 4.0, "float32", f"{prefix}-gsr")
    d = info.desc()
    d.append_child_value("participant", "P1")
    ch = d.append_child("channels").append_child("channel")
    ch.append_child_value("label", "GSR_Skin_Resistance_CAL")
    ch.append_child_value("unit", "kOhms")
    outlet = pylsl.StreamOutlet(info)
    try:
        assert main(["streams", "--timeout", "1.5", "--match", f"{prefix}*"]) == 0
        line = next(ln for ln in capsys.readouterr().out.splitlines() if f"{prefix}-gsr" in ln)
        assert "eda:eda" in line and "kOhms (resistance, read as µS)" in line
    finally:
        del outlet


def test_duplicates_are_marked_and_left_out(capsys):
    """Two live streams that claim one identity (name, type, source_id, host) are marked DUPLICATE, left out of
    the assignment, and a warning says how to fix it; a stream that only shares the source_id is not one."""
    prefix = f"attune-test-dup-{uuid.uuid4().hex[:8]}"
    twins = [pylsl.StreamOutlet(_info("P1 H10 RR", "rr", "P1", prefix, "ms", 0.0)) for _ in range(2)]
    other = pylsl.StreamOutlet(_info("P2 H10 RR", "rr", "P2", prefix, "ms", 0.0))  # same source_id, own name
    try:
        assert main(["streams", "--timeout", "1.5", "--match", f"{prefix}*"]) == 0
        out = capsys.readouterr().out
        rows = [ln for ln in out.splitlines() if ln.startswith(("P1 H10 RR ", "P2 H10 RR "))]
        assert len(rows) == 3
        assert sum(" DUPLICATE " in ln for ln in rows) == 2 and all("P1 H10 RR" in ln for ln in rows if "DUPL" in ln)
        assert "  P2: hr <- 'P2 H10 RR'" in out and "  P1:" not in out
        assert "'P1 H10 RR' (2 streams, uids " in out and "duplicate identity" in out
        assert ("warning: 2 streams claim to be the same stream 'P1 H10 RR' (type 'RR', source_id "
                f"'{prefix}'") in out and "Give each its own name or source_id" in out
        assert main(["streams", "--timeout", "1.5", "--match", f"{prefix}*", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        flags = sorted((s["name"], s["duplicate"]) for s in data["streams"])
        assert flags == [("P1 H10 RR", True), ("P1 H10 RR", True), ("P2 H10 RR", False)]
        assert list(data["participants"]) == ["P2"] and any("2 streams claim" in w for w in data["warnings"])
    finally:
        del twins, other


def test_refused_streams_are_marked_with_the_reason(capsys):
    """An RR stream of text and an EDA header claiming 1e8 Hz: REFUSED with the reason, never assigned (the text
    RR was taken for a marker stream before, the 1e8-Hz header's inlet alone took gigabytes)."""
    prefix = f"attune-test-refused-{uuid.uuid4().hex[:8]}"
    text = pylsl.StreamInfo("P1 H10 RR", "RR", 1, 0.0, "string", f"{prefix}-rr")
    huge = _info("P1 E4 EDA", "eda", "P1", f"{prefix}-eda", "uS", 1e8)
    fine = pylsl.StreamOutlet(_info("P2 H10 RR", "rr", "P2", f"{prefix}-p2", "ms", 0.0))
    outlets = [pylsl.StreamOutlet(text), pylsl.StreamOutlet(huge)]
    try:
        assert main(["streams", "--timeout", "1.5", "--match", f"{prefix}*"]) == 0
        out = capsys.readouterr().out
        rows = {ln.split("  ")[0]: ln for ln in out.splitlines() if ln.startswith(("P1 ", "P2 "))}
        assert " REFUSED " in rows["P1 H10 RR"] and " REFUSED " in rows["P1 E4 EDA"], out
        assert " REFUSED " not in rows["P2 H10 RR"] and "  P2: hr <- 'P2 H10 RR'" in out and "  P1:" not in out
        assert "says it is RR but carries text (channel format string)" in out
        assert "implausible rate: stream 'P1 E4 EDA'" in out and "claims 1e+08 Hz" in out
        assert main(["streams", "--timeout", "1.5", "--match", f"{prefix}*", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        refused = {s["name"]: s["refused"] for s in data["streams"]}
        assert refused["P2 H10 RR"] is None and "carries text" in refused["P1 H10 RR"]
        assert "implausible rate" in refused["P1 E4 EDA"]
    finally:
        del outlets, fine


@pytest.mark.parametrize("fmt", [[], ["--json"]])
def test_output_cut_short_by_its_reader_ends_quietly(two_people, fmt):
    """``attune streams | head``: the reader is gone before the table is written (``head`` that has its lines);
    no BrokenPipe traceback nor "Exception ignored", exit 141 (ui/cli.py: as a program killed by SIGPIPE)."""
    prefix, _ = two_people
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "attune_monitor.ui.cli", "streams", "--timeout", "1.5", "--match",
                             f"{prefix}*", *fmt], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader has gone: every write of the table fails with EPIPE
    with proc.stderr:  # closed after reading (an open pipe is a ResourceWarning, an error under filterwarnings)
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
