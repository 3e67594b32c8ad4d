"""``attune analyze DIR --dataset OUT``: the four long-format tables, read back with pandas, against the analysis
JSON and the Analysis of the same files (and planted markers); Parquet and CSV hold the same values; without
pyarrow the tables fall back to CSV; docs/dataset.md documents every column."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from attune_monitor.dataset import COLUMNS, TABLES  # noqa: E402
from attune_monitor.ui.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = 5000.0
#: Planted markers (stream time, text): phases start at these file times (the file's first sample is at ORIGIN).
MARKERS = ((ORIGIN + 60.0, "task"), (ORIGIN + 400.0, "recovery"))


def _write_marked(path: Path) -> dict:
    """A simulated couple (420 s, scripted ruptures) with another app's two markers, as a live recording holds."""
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.xdf_writer import XdfWriter

    session = simulate_session(load_scenario("couple-rupture-repair"), 3, 420.0)
    first = min(float(s.timestamps[0]) for s in session.streams)
    with XdfWriter(path, fsync=False) as w:
        ids = [w.add_stream(s.header_xml) for s in session.streams]
        for sid, s in zip(ids, session.streams):
            w.write_samples(sid, s.timestamps - first + ORIGIN, s.values)
        task = w.add_stream(dict(name="PsychoPy task", type="Markers", channel_count=1, nominal_srate=0,
                                 channel_format="string"))
        w.write_samples(task, [t for t, _ in MARKERS], [[text] for _, text in MARKERS])
    # each person's simulated beats: (file time (s), RR (s)), the truth the phases' heart rate is checked against
    return {s.participant: (s.timestamps - first, np.asarray(s.values, dtype=float).ravel() / 1000.0)
            for s in session.streams if s.kind == "rr" and s.unit == "ms"}


def _write_group(path: Path) -> None:
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import write_session_xdf

    write_session_xdf(simulate_session(load_scenario("group-rupture"), 5, 400.0), path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``attune analyze`` of two recordings and a corrupt file with ``--dataset`` (Parquet), then again as CSV from
    the kept results."""
    d = tmp_path_factory.mktemp("dataset")
    beats = _write_marked(d / "marked.xdf")
    _write_group(d / "grp.xdf")
    (d / "broken.xdf").write_bytes(b"XDF:" + b"\x00garbage" * 10)
    files = [str(d / "marked.xdf"), str(d / "grp.xdf"), str(d / "broken.xdf")]
    code = main(["analyze", *files, "--dataset", str(d / "pq"), "--json", str(d / "json") + "/",
                 "--cache", str(d / "cache")])
    assert code == 2  # the corrupt file; the others are analysed
    code_csv = main(["analyze", *files, "--dataset", str(d / "csv"), "--dataset-format", "csv",
                     "--cache", str(d / "cache")])
    assert code_csv == 2
    docs = {f: json.loads((d / "json" / f"{Path(f).stem}.analysis.json").read_text()) for f in files[:2]}
    pq = {t: pd.read_parquet(d / "pq" / f"{t}.parquet") for t in TABLES}
    csv = {t: pd.read_csv(d / "csv" / f"{t}.csv") for t in TABLES}
    return {"dir": d, "files": files, "docs": docs, "pq": pq, "csv": csv, "beats": beats}


def _reference(path):
    """The Analysis of a file, computed here as ``attune analyze`` does (balanced preset), and its file-time offset."""
    import dataclasses

    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.analysis import analyze_recording
    from attune_monitor.dsp.pipeline import PipelineConfig

    rec = load_recording(path)
    analysis = analyze_recording(rec, config=dataclasses.replace(PipelineConfig(), preset="balanced"))
    return analysis, float(analysis.origin) - float(rec.origin)


def test_tables_have_the_documented_columns_and_files(run):
    for t in TABLES:
        assert list(run["pq"][t].columns) == [c[0] for c in COLUMNS[t]]
        assert list(run["csv"][t].columns) == [c[0] for c in COLUMNS[t]]
        assert oct((run["dir"] / "pq" / f"{t}.parquet").stat().st_mode & 0o777) == "0o600"
    # nothing else beside the tables but the hidden cache (pd.read_parquet(OUT) style readers skip dot-files)
    assert sorted(p.name for p in (run["dir"] / "pq").iterdir()) == sorted(f"{t}.parquet" for t in TABLES)


def test_windows_equal_the_analysis_sync_series_and_the_json(run):
    w = run["pq"]["windows"]
    for f in run["files"][:2]:
        analysis, offset = _reference(f)
        doc = run["docs"][f]
        rows = w[w.recording == f]
        for m in analysis.modalities:
            s = analysis.sync[m]
            for p, (a, b) in enumerate(analysis.pairs):
                sel = rows[(rows.pair == f"{a}-{b}") & (rows.modality == m)]
                np.testing.assert_array_equal(sel.t_s.to_numpy(), np.asarray(s["t"]) + offset)
                np.testing.assert_array_equal(sel.synchrony.to_numpy(), np.asarray(s["sync"])[p])  # NaN == NaN
                np.testing.assert_array_equal(sel.chance.to_numpy(), np.asarray(s["chance"])[p])
                # the JSON's per-pair numbers from the table: Fisher-z mean and coverage
                rec = next(x for x in doc["pairs"] if x["pair"] == [a, b] and x["modality"] == m)
                r = sel.synchrony.to_numpy()
                ok = np.isfinite(r)
                assert rec["coverage"] == round(float(ok.mean()), 4)
                assert rec["mean_sync"] == pytest.approx(math.tanh(np.arctanh(np.clip(r[ok], -0.999999, 0.999999))
                                                                   .mean()), abs=6e-5)
                # armed exactly inside the JSON's armed spans
                spans = next(x for x in doc["attunement"] if x["pair"] == [a, b])["armed_spans"]
                expect = [any(lo - 1e-3 <= t < hi - 1e-3 for lo, hi in spans) for t in sel.t_s]
                assert sel.armed.tolist() == expect
                assert any(expect) and not all(expect)


def test_episodes_equal_the_json_episodes(run):
    from attune_monitor.ui.commands.analyze import analyze_file

    e = run["pq"]["episodes"]
    for f in run["files"][:2]:
        eps = run["docs"][f]["episodes"]
        rows = e[e.recording == f].reset_index(drop=True)
        assert len(rows) == len(eps) > 0
        flagged = analyze_file(f).flagged_s
        for k, (ep, row) in enumerate(zip(eps, rows.itertuples())):
            assert row.episode == k + 1 and row.pair == "-".join(ep["pair"])
            assert [row.person_a, row.person_b] == ep["pair"] and row.people.split("; ") == ep["people"]
            for key in ("onset_s", "nadir_s", "depth", "confidence"):
                assert getattr(row, key) == ep[key]
            assert (math.isnan(row.offset_s) if ep["offset_s"] is None else row.offset_s == ep["offset_s"])
            assert (math.isnan(row.time_to_repair_s) if ep["time_to_repair_s"] is None
                    else row.time_to_repair_s == ep["time_to_repair_s"])
            assert row.repaired == ep["repaired"] and row.outcome == ep["outcome"]
            assert row.modalities.split("; ") == ep["modalities"]
            assert dict(x.split(": ") for x in row.context.split("; ")) == ep["context"]
            assert row.flagged_s == flagged[k]


def test_person_phases_split_at_the_planted_markers(run):
    pp = run["pq"]["person_phases"]
    marked, group = run["files"][:2]
    assert (pp.recording == group).sum() == 0  # no markers, no phases
    rows = pp[pp.recording == marked]
    doc = run["docs"][marked]
    people = [p["id"] for p in doc["participants"]]
    assert len(rows) == 3 * len(people)
    bounds = [0.0, 60.0, 400.0, doc["duration_s"]]
    for k, label in enumerate(["(start)", "task", "recovery"]):
        ph = rows[rows.phase == k]
        assert ph.participant.tolist() == people and (ph.label == label).all()
        assert ph.start_s.to_numpy() == pytest.approx(bounds[k], abs=1e-6)
        assert ph.end_s.to_numpy() == pytest.approx(bounds[k + 1], abs=0.01)
        shares = ph[["arousal_unknown", "arousal_with_group", "arousal_climbing", "arousal_flattening"]].sum(axis=1)
        assert shares.to_numpy() == pytest.approx(1.0)
    assert (rows[rows.phase > 0].marker_stream == "PsychoPy task").all()
    # mean heart rate and skin conductance per phase: the analysis grid averaged here with pandas
    analysis, offset = _reference(marked)
    for m, col in (("hr", "hr_mean_bpm"), ("eda", "eda_mean_us")):
        g = np.asarray(analysis.grid[m], dtype=float)
        t = np.arange(g.shape[1]) / analysis.fs + offset
        for i, person in enumerate(people):
            ref = pd.Series(g[i]).groupby(pd.cut(t, bounds[:3] + [np.inf], right=False), observed=False).mean()
            got = rows[rows.participant == person].sort_values("phase")[col].to_numpy()
            np.testing.assert_allclose(got, ref.to_numpy(), rtol=1e-12)
    # and the heart rate is the people's: 60 / RR of the simulated beats in the phase, within 3 bpm
    assert sorted(run["beats"]) == people
    for person, (ts, rr_s) in run["beats"].items():
        inside = (ts >= 60.0) & (ts < 400.0)
        got = rows[(rows.participant == person) & (rows.phase == 1)].hr_mean_bpm.item()
        assert got == pytest.approx(float(np.mean(60.0 / rr_s[inside])), abs=3.0)


def test_sessions_one_row_per_recording_with_failures(run):
    s = run["pq"]["sessions"].set_index("recording")
    marked, group, broken = run["files"]
    assert list(s.index) == run["files"]
    assert s.loc[broken, "status"] == "error" and "broken.xdf" in s.loc[broken, "problem"]
    assert math.isnan(s.loc[broken, "duration_s"])
    for f in (marked, group):
        doc = run["docs"][f]
        row = s.loc[f]
        assert row.status == "ok" and row.problem == ""
        assert row.duration_s == doc["duration_s"] and row.n_episodes == len(doc["episodes"])
        assert row.people.split("; ") == [p["id"] for p in doc["participants"]]
        assert row.n_streams == sum(len(p["streams"]) for p in doc["participants"])
        assert row.hr_coverage == pytest.approx(np.mean([x["coverage"] for x in doc["pairs"] if x["modality"] == "hr"]))
    assert s.loc[marked, "n_markers"] == 2 and s.loc[group, "n_markers"] == 0
    assert s.loc[group, "n_pairs"] == 3 and s.loc[marked, "n_pairs"] == 1


def test_csv_holds_the_same_values_as_parquet(run):
    for t in TABLES:
        a = run["pq"][t].copy()
        b = run["csv"][t]
        for c in a.columns:  # CSV has no empty string apart from missing
            if a[c].dtype != bool and not pd.api.types.is_numeric_dtype(a[c]):
                a[c] = a[c].replace("", np.nan).astype(object)
                b = b.assign(**{c: b[c].astype(object)})
        pd.testing.assert_frame_equal(a, b, check_dtype=False)


@pytest.mark.timeout(60)
def test_without_pyarrow_csv_and_a_clear_line_for_parquet(run, tmp_path):
    files = run["files"][:2]
    block = "import sys; sys.modules['pyarrow'] = None; from attune_monitor.ui.cli import main; "
    args = ["analyze", *files, "--cache", str(run["dir"] / "cache"), "--dataset"]
    p = subprocess.run([sys.executable, "-c", block + f"sys.exit(main({args + [str(tmp_path / 'a')]!r}))"],
                       capture_output=True, text=True, timeout=50)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in (tmp_path / "a").iterdir() if not x.name.startswith(".")) == sorted(
        f"{t}.csv" for t in TABLES)
    assert "skipped 2 up to date" in p.stderr  # the kept results (their rows included) were used
    a = pd.read_csv(tmp_path / "a" / "windows.csv")
    pd.testing.assert_frame_equal(a, run["csv"]["windows"][run["csv"]["windows"].recording.isin(files)]
                                  .reset_index(drop=True))
    parquet = [*args, str(tmp_path / "b"), "--dataset-format", "parquet"]
    p = subprocess.run([sys.executable, "-c", block + f"sys.exit(main({parquet!r}))"], capture_output=True, text=True,
                       timeout=50)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "pip install 'attune-monitor[dataset]'" in lines[0], p.stderr


def test_docs_list_every_column_with_its_unit():
    text = (ROOT / "docs" / "dataset.md").read_text(encoding="utf-8")
    for t in TABLES:
        part = text.split(f"## `{t}`", 1)[1].split("\n## ", 1)[0]
        rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]*) \|", part, re.M))
        assert list(rows) == [c[0] for c in COLUMNS[t]], t
        for name, _kind, unit, _ in COLUMNS[t]:
            assert rows[name].strip() == (unit or "–"), (t, name)
