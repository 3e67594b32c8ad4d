"""``attune analyze``: the attune.analysis/1 document, its validator, output naming, and the CLI end to end."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attune_monitor.dsp.detector import Episode
from attune_monitor.ui.analysis_io import (
    ANALYSIS_SCHEMA,
    analysis_to_json,
    clock,
    read_json,
    summary_text,
    validate,
    write_json,
)
from attune_monitor.ui.commands.analyze import output_paths
from attune_monitor.ui.errors import UsageError
from attune_monitor.ui.runner import Analysis

CLI = [sys.executable, "-m", "attune_monitor.ui.cli"]


def _analysis(r_hr, r_eda, t=None, episodes=(), losses=()):
    r_hr, r_eda = np.atleast_2d(r_hr), np.atleast_2d(r_eda)
    t = np.arange(r_hr.shape[1], dtype=float) if t is None else t
    sync = {"hr": {"t": t, "sync": r_hr, "chance": np.zeros_like(r_hr)},
            "eda": {"t": t, "sync": r_eda, "chance": np.zeros_like(r_eda)}}
    return Analysis(recording="x.xdf", duration_s=float(t[-1] + 1), participants=["A", "B"],
                    streams={"A": ["A RR"], "B": ["B RR", "B EDA"]}, pairs=[("A", "B")], modalities=("hr", "eda"),
                    fs=4.0, step_s=1.0, sync=sync, episodes=list(episodes), signal_loss=list(losses))


def test_pair_summaries_against_hand_computation():
    # hr: 30 windows of 0.5, 10 of -0.25, 10 missing; eda: 25 of 0.2, 25 missing
    r_hr = np.r_[np.full(30, 0.5), np.full(10, -0.25), np.full(10, np.nan)]
    r_eda = np.r_[np.full(25, 0.2), np.full(25, np.nan)]
    doc = analysis_to_json(_analysis(r_hr, r_eda))
    assert validate(doc) == []
    rows = {r["modality"]: r for r in doc["pairs"]}
    assert set(rows) == {"hr", "eda", "combined"}
    hr = rows["hr"]
    assert hr["pair"] == ["A", "B"]
    assert hr["coverage"] == pytest.approx(40 / 50)
    assert hr["mean_sync"] == pytest.approx(math.tanh((30 * math.atanh(0.5) + 10 * math.atanh(-0.25)) / 40), abs=1e-4)
    assert hr["ssi"] == pytest.approx(math.log(30 * 0.5 / (10 * 0.25)), abs=1e-4)
    assert rows["eda"]["ssi"] is None  # no negative windows: SSI undefined
    assert rows["eda"]["mean_sync"] == pytest.approx(0.2, abs=1e-4) and rows["eda"]["coverage"] == 0.5
    # combined: per window the Fisher-z mean of what is there
    z = np.r_[np.full(25, (math.atanh(0.5) + math.atanh(0.2)) / 2), np.full(5, math.atanh(0.5)),
              np.full(10, math.atanh(-0.25))]
    comb = rows["combined"]
    assert comb["coverage"] == pytest.approx(40 / 50)
    # mean_fisher averages the per-window combined r again through z: z of tanh(z) is z
    assert comb["mean_sync"] == pytest.approx(math.tanh(z.mean()), abs=1e-4)


def test_times_shifted_to_file_origin():
    ep = Episode(id=1, pair=("A", "B"), people=["B"], onset_s=10.0, flagged_s=18.0, nadir_s=14.0, offset_s=30.0,
                 repaired=True, depth=1.2, modalities=["hr"], confidence=0.55, context={"A": "steady", "B": "rising"})
    loss = {"participant": "A", "modality": "hr", "onset_s": 40.0, "offset_s": None, "reason": "no data"}
    doc = analysis_to_json(_analysis(np.full(50, 0.4), np.full(50, 0.3), episodes=[ep], losses=[loss]), time_offset=2.5)
    assert validate(doc) == []
    e = doc["episodes"][0]
    assert (e["onset_s"], e["nadir_s"], e["offset_s"], e["time_to_repair_s"]) == (12.5, 16.5, 32.5, 20.0)
    assert doc["signal_loss"][0]["onset_s"] == 42.5 and doc["signal_loss"][0]["offset_s"] is None
    assert doc["duration_s"] == 52.5
    assert doc["participants"] == [{"id": "A", "streams": ["A RR"]}, {"id": "B", "streams": ["B RR", "B EDA"]}]
    text = summary_text(doc)
    assert "00:12 -> 00:32 (repaired after 20 s)" in text and "B rising" in text
    assert "A hr 00:42 -> end: no data" in text


def test_validator_catches_every_kind_of_violation():
    ep = Episode(id=1, pair=("A", "B"), people=["B"], onset_s=10.0, flagged_s=18.0, nadir_s=14.0, offset_s=None,
                 repaired=False, depth=1.0, modalities=["eda"], confidence=0.5, context={"B": "falling"})
    good = analysis_to_json(_analysis(np.full(50, 0.4), np.full(50, 0.3), episodes=[ep]))
    assert validate(good) == []
    cases = [
        (lambda d: d.update(schema="attune.analysis/2"), "$.schema"),
        (lambda d: d.pop("signal_loss"), "missing key 'signal_loss'"),
        (lambda d: d.update(extra=1), "unexpected key 'extra'"),
        (lambda d: d["pairs"][0].update(modality="ecg"), "$.pairs[0].modality"),
        (lambda d: d["pairs"][0].update(mean_sync=float("nan")), "$.pairs[0].mean_sync"),
        (lambda d: d["pairs"][0].update(coverage=1.5), "above the maximum"),
        (lambda d: d["pairs"][0].update(pair=["A"]), "at least 2 items"),
        (lambda d: d["episodes"][0].update(repaired="no"), "$.episodes[0].repaired"),
        (lambda d: d["episodes"][0]["context"].update(B="up"), "$.episodes[0].context.B"),
        (lambda d: d["episodes"][0].update(offset_s="later"), "$.episodes[0].offset_s"),
        (lambda d: d["participants"][0].update(streams="A RR"), "$.participants[0].streams"),
        (lambda d: d.update(duration_s=True), "$.duration_s"),
    ]
    for mutate, expect in cases:
        d = copy.deepcopy(good)
        mutate(d)
        errors = validate(d)
        assert any(expect in e for e in errors), (expect, errors)


def test_schema_documents_every_key():
    assert ANALYSIS_SCHEMA["required"] == ["schema", "recording", "duration_s", "participants", "pairs", "episodes",
                                           "attunement", "signal_loss"]
    ep_keys = ANALYSIS_SCHEMA["properties"]["episodes"]["items"]["required"]
    assert ep_keys == ["kind", "pair", "people", "onset_s", "nadir_s", "offset_s", "repaired", "time_to_repair_s",
                       "depth", "modalities", "confidence", "context", "outcome"]
    att_keys = ANALYSIS_SCHEMA["properties"]["attunement"]["items"]["required"]
    assert att_keys == ["pair", "armed_s", "armed_fraction", "armed_spans", "out_of_tune_spans", "above_chance",
                        "verdict"]
    from attune_monitor.ui import analysis_io

    for key in ["attunement", "outcome", *att_keys]:  # the module docstring (the schema in words) names each
        assert key in analysis_io.__doc__, key


def test_write_refuses_invalid_and_read_roundtrip(tmp_path):
    doc = analysis_to_json(_analysis(np.full(50, 0.4), np.full(50, 0.3)))
    p = write_json(doc, tmp_path / "a.json")
    assert read_json(p) == doc
    bad = dict(doc, duration_s=-1)
    with pytest.raises(ValueError, match="duration_s"):
        write_json(bad, tmp_path / "b.json")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON"):
        read_json(tmp_path / "c.json")


@pytest.mark.parametrize("s,text", [(0, "00:00"), (59.4, "00:59"), (61, "01:01"), (3599.6, "1:00:00"),
                                    (3725, "1:02:05"), (None, "-"), (float("nan"), "-")])
def test_clock(s, text):
    assert clock(s) == text


def test_output_paths(tmp_path):
    files = [str(tmp_path / "a.xdf"), str(tmp_path / "sub" / "a.xdf"), str(tmp_path / "b.xdf")]
    jsons, reps = output_paths(files, str(tmp_path / "out") + "/", str(tmp_path / "rep"))
    assert [Path(j).name for j in jsons] == ["a.analysis.json", "a-2.analysis.json", "b.analysis.json"]
    assert [Path(r).name for r in reps] == ["a", "a-2", "b"]
    jsons, _ = output_paths(files, str(tmp_path / "x-{stem}.json"), None)
    assert [Path(j).name for j in jsons] == ["x-a.json", "x-a-2.json", "x-b.json"]
    with pytest.raises(UsageError, match="give a folder"):
        output_paths(files, str(tmp_path / "one.json"), None)
    with pytest.raises(UsageError, match="one FILE only"):
        output_paths(files, "-", None)
    jsons, reps = output_paths(files[:1], str(tmp_path / "one.json"), str(tmp_path / "r"))
    assert jsons == [str(tmp_path / "one.json")] and reps == [str(tmp_path / "r")]


# -- end to end ------------------------------------------------------------------------------------------------
def _simulate(folder: Path, name: str, scenario: str, seed: int = 3, duration: float | None = None) -> Path:
    out = folder / f"{name}.xdf"
    cmd = [*CLI, "simulate", "--scenario", scenario, "--seed", str(seed), "--out", str(out),
           "--truth", str(folder / f"{name}.truth.json")]
    if duration:
        cmd += ["--duration", str(duration)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    d = tmp_path_factory.mktemp("sims")
    return {"crr": _simulate(d, "crr", "couple-rupture-repair"), "grp": _simulate(d, "grp", "group-rupture"), "dir": d}


@pytest.mark.timeout(120)
def test_cli_json_and_summary(sims, tmp_path):
    out = tmp_path / "crr.json"
    p = subprocess.run([*CLI, "analyze", str(sims["crr"]), "--json", str(out)], capture_output=True, text=True,
                       timeout=110)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert validate(doc) == []
    assert [x["id"] for x in doc["participants"]] == ["P1", "P2"]
    truth = json.loads((sims["dir"] / "crr.truth.json").read_text())
    # both scripted ruptures are flagged near their onsets (times counted from the file's first sample)
    for r in truth["ruptures"]:
        assert any(r["onset_s"] - 10 <= e["onset_s"] <= r["offset_s"] + 20 for e in doc["episodes"]), doc["episodes"]
    assert truth["duration_s"] - 10 <= doc["duration_s"] <= truth["duration_s"] + 1
    # the summary shows pairs with their numbers and each episode in mm:ss
    assert "P1-P2" in p.stdout and "possible ruptures" in p.stdout
    for e in doc["episodes"]:
        assert clock(e["onset_s"]) in p.stdout
    assert "Traceback" not in p.stderr


@pytest.mark.timeout(150)
def test_cli_jobs_order_and_worst_exit(sims, tmp_path):
    bad = tmp_path / "broken.xdf"
    bad.write_bytes(b"XDF:" + b"\x00garbage" * 10)
    files = [str(sims["grp"]), str(bad), str(sims["crr"])]
    p = subprocess.run([*CLI, "analyze", *files, "--jobs", "2", "--json", str(tmp_path / "out") + "/", "--report",
                        str(tmp_path / "rep")], capture_output=True, text=True, timeout=140)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    errs = [x for x in p.stderr.splitlines() if "error" in x]
    assert len(errs) == 1 and "broken.xdf" in errs[0]
    # results in input order: grp summary before crr summary
    assert p.stdout.index("grp.xdf") < p.stdout.index("crr.xdf")
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == ["crr.analysis.json", "grp.analysis.json"]
    grp = json.loads((tmp_path / "out" / "grp.analysis.json").read_text())
    assert validate(grp) == [] and len({tuple(x["pair"]) for x in grp["pairs"]}) == 3
    for stem, n_pairs in (("grp", 3), ("crr", 1)):
        rep = tmp_path / "rep" / stem
        assert (rep / "index.html").is_file() and (rep / "episodes.csv").is_file()
        assert len(list(rep.glob("sync_*.png"))) == n_pairs


@pytest.mark.timeout(60)
@pytest.mark.parametrize("content,expect", [
    (None, "no such file"),
    (b"", "unreadable XDF"),
    (b"hello, this is not xdf", "unreadable XDF"),
])
def test_cli_unusable_input_one_line(tmp_path, content, expect):
    f = tmp_path / "bad.xdf"
    if content is not None:
        f.write_bytes(content)
    p = subprocess.run([*CLI, "analyze", str(f)], capture_output=True, text=True, timeout=50)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and expect in lines[0], p.stderr


@pytest.mark.timeout(60)
def test_cli_single_person_and_truncated(sims, tmp_path):
    # one person: a clear message
    one = tmp_path / "one.csv"
    rows = ["participant,kind,timestamp,value"] + [f"P1,hr,{t},{70 + (t % 7)}" for t in range(300)]
    one.write_text("\n".join(rows))
    p = subprocess.run([*CLI, "analyze", str(one)], capture_output=True, text=True, timeout=50)
    assert p.returncode == 2 and "needs at least 2 participants" in p.stderr and "Traceback" not in p.stderr
    # a truncated file: what is readable is analysed and what was not is said
    data = sims["crr"].read_bytes()
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    p = subprocess.run([*CLI, "analyze", str(cut), "--json", str(tmp_path / "cut.json")], capture_output=True,
                       text=True, timeout=50)
    assert "Traceback" not in p.stderr
    assert p.returncode == 0, p.stderr
    assert "warning" in p.stderr and "in the file: the file ends inside a chunk" in p.stderr
    doc = json.loads((tmp_path / "cut.json").read_text())
    assert validate(doc) == [] and 60 < doc["duration_s"] < 0.75 * 540  # 60 % of the bytes of a 9-minute session


@pytest.mark.timeout(60)
def test_cli_roster_renames_participants(sims, tmp_path):
    roster = tmp_path / "r.toml"
    roster.write_text('version = 1\n[[participant]]\nid = "Client"\n  [[participant.streams]]\n  name = "P1 *"\n'
                      '[[participant]]\nid = "Therapist"\n  [[participant.streams]]\n  name = "P2 *"\n')
    p = subprocess.run([*CLI, "analyze", str(sims["crr"]), "--roster", str(roster), "--json", "-"],
                       capture_output=True, text=True, timeout=50)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [x["id"] for x in doc["participants"]] == ["Client", "Therapist"]
    assert doc["pairs"][0]["pair"] == ["Client", "Therapist"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[[participant]\n")
    p = subprocess.run([*CLI, "analyze", str(sims["crr"]), "--roster", str(bad)], capture_output=True, text=True,
                       timeout=50)
    assert p.returncode == 2 and "not valid TOML" in p.stderr and "Traceback" not in p.stderr


def test_progress_bar_only_when_asked(sims, tmp_path):
    p = subprocess.run([*CLI, "analyze", str(sims["crr"]), "--progress"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "analysing crr [" in p.stderr and "100%" in p.stderr
    p = subprocess.run([*CLI, "analyze", str(sims["crr"])], capture_output=True, text=True, timeout=60)
    assert "analysing" not in p.stderr  # stderr is not a TTY here


@pytest.mark.timeout(120)
def test_recorded_markers_in_summary_report_and_csv(tmp_path):
    """A recorded session with the facilitator's markers, another app's markers and the live detector's events:
    the first two are listed (file times, escaped, in time order) and drawn; the detector's events are not."""
    import csv

    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import write_session_xdf
    from attune_monitor.acquisition.xdf_writer import XdfWriter
    from attune_monitor.ui.commands.analyze import analyze_file

    sim_path = tmp_path / "sim.xdf"
    session = simulate_session(load_scenario("couple-calm"), 3, 120.0)
    write_session_xdf(session, sim_path, time_origin=5000.0)
    # the same streams again, with three string streams added (a recording of a live session)
    path = tmp_path / "session.xdf"
    evil = "<img src=x onerror=alert(1)>"
    with XdfWriter(path, fsync=False) as w:
        ids = [w.add_stream(s.header_xml) for s in session.streams]
        for sid, s in zip(ids, session.streams):
            w.write_samples(sid, s.timestamps + 5000.0, s.values)
        fac = w.add_stream(dict(name="Attune markers", type="Markers", channel_count=1, nominal_srate=0,
                                channel_format="string"))
        task = w.add_stream(dict(name="PsychoPy task", type="Markers", channel_count=1, nominal_srate=0,
                                 channel_format="string"))
        ev = w.add_stream(dict(name="Attune events", type="AttuneEvents", channel_count=1, nominal_srate=0,
                               channel_format="string"))
        w.write_samples(task, [5030.0, 5090.5], [["block 1"], [evil]])
        w.write_samples(fac, [5061.25], [[json.dumps({"kind": "dismissive", "text": "he looked away", "t": 61.25})]])
        w.write_samples(ev, [5040.0], [[json.dumps({"type": "state", "t": 40.0})]])
    res = analyze_file(str(path), report_dir=str(tmp_path / "rep"))
    assert res.code == 0, res.message
    first = min(float(s.timestamps[0]) for s in session.streams) + 5000.0  # the file's earliest timestamp
    assert "recorded markers: 3 (Attune markers, PsychoPy task;" in res.summary
    with open(tmp_path / "rep" / "markers.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["stream"], r["marker"]) for r in rows] == [
        ("PsychoPy task", "block 1"), ("Attune markers", "dismissive: he looked away"), ("PsychoPy task", evil)]
    np.testing.assert_allclose([float(r["time_s"]) for r in rows], np.array([5030.0, 5061.25, 5090.5]) - first,
                               atol=1e-3)
    assert [r["time"] for r in rows] == [clock(float(r["time_s"])) for r in rows]
    page = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "Recorded markers (3)" in page and "dismissive: he looked away" in page
    assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert '"type": "state"' not in page  # the live detector's own events are not markers
    # the analysis is the same as without the string streams
    plain = analyze_file(str(sim_path))
    assert plain.doc["episodes"] == res.doc["episodes"] and plain.doc["pairs"] == res.doc["pairs"]
    assert "recorded markers" not in plain.summary


def test_episode_line_names_who_is_disconnecting_in_a_group():
    from attune_monitor.ui.analysis_io import episode_line

    ep = {"pair": ["P1", "P3"], "people": ["P1"], "onset_s": 94.0, "nadir_s": 115.0, "offset_s": 127.0,
          "repaired": True, "time_to_repair_s": 33.0, "depth": 1.85, "modalities": ["hr", "eda"], "confidence": 1.0,
          "context": {"P1": "rising", "P3": "rising"}}
    line = episode_line(ep, {"P1": "climbing"})
    assert line.startswith("P1-P3  01:34 -> 02:07 (repaired after 33 s)")
    assert "disconnecting: P1;" in line and "moving away before the flag: P1 climbing" in line
    assert "disconnecting" not in episode_line({**ep, "people": ["P1", "P3"]})   # a couple: both
