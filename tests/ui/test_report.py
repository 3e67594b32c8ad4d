"""HTML report: files written, PNGs readable, every file-derived text escaped, episodes.csv == document."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from attune_monitor.dsp.detector import Episode, get_preset
from attune_monitor.ui.analysis_io import clock, validate
from attune_monitor.ui.report import baseline_trace, write_report
from attune_monitor.ui.runner import Analysis

EVIL = "<script>alert(1)</script>"


def make_analysis(people=("P1", EVIL), duration=300.0, fs=4.0) -> Analysis:
    """A hand-made analysis: two people, HR + EDA, one repaired episode, one EDA signal loss."""
    n = int(duration * fs)
    tg = np.arange(n) / fs
    hr = np.vstack([70 + 5 * np.sin(2 * np.pi * tg / 60), 75 + 5 * np.sin(2 * np.pi * tg / 60 + 0.3)])
    eda = np.vstack([3 + 0.3 * np.sin(2 * np.pi * tg / 90), 5 + 0.3 * np.sin(2 * np.pi * tg / 90)])
    eda[1, int(200 * fs):int(220 * fs)] = np.nan
    t = np.arange(20.0, duration + 1e-9, 1.0)
    r = np.where((t > 100) & (t < 140), 0.0, 0.7)[None, :]
    r_eda = r.copy()
    r_eda[:, (t >= 200) & (t < 240)] = np.nan
    sync = {m: {"t": t, "sync": x, "chance": np.full_like(x, 0.1)} for m, x in (("hr", r), ("eda", r_eda))}
    ep = Episode(id=1, pair=tuple(people), people=[people[1]], onset_s=100.0, flagged_s=110.0, nadir_s=120.0,
                 offset_s=145.0, repaired=True, depth=1.1, modalities=["hr", "eda"], confidence=0.8,
                 context={people[0]: "steady", people[1]: "rising"})
    loss = [{"participant": people[1], "modality": "eda", "onset_s": 200.0, "offset_s": 220.0,
             "reason": "electrode off"}]
    return Analysis(
        recording=f"/data/{EVIL}.xdf", duration_s=duration, participants=list(people),
        streams={people[0]: ["P1 H10 RR", "P1 E4 EDA"], people[1]: [EVIL, "P2 EDA"]}, pairs=[tuple(people)],
        modalities=("hr", "eda"), fs=fs, step_s=1.0, grid={"hr": hr, "eda": eda},
        quality={"hr": np.zeros((2, n), np.uint8), "eda": np.zeros((2, n), np.uint8)}, sync=sync,
        episodes=[ep], signal_loss=loss, problems=[f"stream {EVIL!r}: 3 bad chunks"], notes=[], origin=0.0)


def test_report_files_and_escaping(tmp_path):
    a = make_analysis()
    index = write_report(a, tmp_path / "rep", time_offset=2.0, problems=a.problems)
    out = index.parent
    assert index.name == "index.html"
    for name in ("signals.png", "sync_01.png", "episodes.csv", "analysis.json"):
        assert (out / name).stat().st_size > 1000 or name == "episodes.csv", name
    page = index.read_text(encoding="utf-8")
    # the stream name, participant id, file name and problem text all come from the file: escaped everywhere
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script") == 0
    # every image referenced exists and is a PNG
    import re

    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(imgs) == ["signals.png", "sync_01.png"]
    for name in imgs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # times shown are file times (session + offset)
    assert clock(102.0) in page and clock(147.0) in page


def test_png_dimensions_and_content(tmp_path):
    from matplotlib.image import imread

    write_report(make_analysis(people=("A", "B")), tmp_path)
    img = imread(tmp_path / "sync_01.png")
    assert img.shape[1] == 1100 and img.shape[0] > 300  # 11 in at 100 dpi, two modality rows
    # not blank: the plot has many distinct colours (lines, shading, hatch)
    assert len(np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2), axis=0)) > 20


def test_episodes_csv_matches_document(tmp_path):
    import json

    a = make_analysis()
    write_report(a, tmp_path, time_offset=5.0)
    doc = json.loads((tmp_path / "analysis.json").read_text())
    assert validate(doc) == []
    rows = list(csv.DictReader((tmp_path / "episodes.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == len(doc["episodes"]) == 1
    row, ep = rows[0], doc["episodes"][0]
    assert float(row["onset_s"]) == ep["onset_s"] == 105.0
    assert float(row["offset_s"]) == 150.0 and row["onset"] == "01:45"
    assert row["pair"] == f"P1-{EVIL}"  # CSV holds the raw text (it is data, not markup)
    assert row["repaired"] == "True" and float(row["time_to_repair_s"]) == pytest.approx(45.0)


def test_baseline_trace_follows_detector():
    """The plotted baseline is the detector machine's own: ~the attuned level, below it the threshold."""
    t = np.arange(0.0, 200.0, 1.0)
    r = np.full(t.size, 0.6)
    base, thr = baseline_trace(r, np.full(t.size, 0.1), t, "balanced", 1.0)
    assert np.isnan(base[:118]).all()  # not armed before a full arming span (120 s) of windows above chance
    assert base[-1] == pytest.approx(0.6, abs=1e-6)
    z_b, z_c = math.atanh(0.6), math.atanh(0.1)
    k = get_preset("balanced").cusum_k  # evidence accumulates below baseline - k * (baseline - chance)
    assert thr[-1] == pytest.approx(math.tanh(z_b - k * (z_b - z_c)), abs=1e-6)
    # and it follows the pair's level as the detector does (half-life 300 s), also with the learned preset
    t = np.arange(0.0, 1000.0, 1.0)
    r = np.where(t < 300, 0.5, 0.6)
    base, _ = baseline_trace(r, np.full(t.size, 0.1), t, "balanced", 1.0)
    assert base[299] == pytest.approx(0.5, abs=1e-6) and base[-1] > 0.57


def test_report_without_episodes_or_losses(tmp_path):
    a = make_analysis(people=("A", "B"))
    a.episodes, a.signal_loss = [], []
    page = write_report(a, tmp_path).read_text()
    assert "None flagged." in page and "<h2>Signal loss (0)</h2>" in page


def test_report_words_depth_and_one_group_episode(tmp_path):
    """Depth on its 0-1 scale (1.99 shows as 1.00 (below chance)), the outcome in the live view's words, and one
    person drifting away from everyone listed once, with its pairs' episodes."""
    people = ("P1", "P2", "P3", "P4")
    a = make_analysis(people=("P1", "P2"))
    a.participants = list(people)
    a.streams = {p: [f"{p} RR"] for p in people}
    a.pairs = [("P1", "P2"), ("P1", "P3"), ("P1", "P4"), ("P2", "P3"), ("P2", "P4"), ("P3", "P4")]
    for m in a.sync:
        a.sync[m]["sync"] = np.repeat(a.sync[m]["sync"], 6, axis=0)
        a.sync[m]["chance"] = np.full_like(a.sync[m]["sync"], 0.1)
        a.sync[m]["chance_sd"] = np.full_like(a.sync[m]["sync"], 0.3)
    for m in a.grid:
        a.grid[m] = np.vstack([a.grid[m], a.grid[m]])
        a.quality[m] = np.zeros(a.grid[m].shape, np.uint8)
    a.episodes = [Episode(id=k + 1, pair=pair, people=["P3"], onset_s=100.0 + k, flagged_s=110.0 + k, nadir_s=120.0,
                          offset_s=145.0, repaired=True, depth=1.99 if k == 0 else 0.8, modalities=["hr"],
                          confidence=0.8, outcome="repaired", open=False)
                  for k, pair in enumerate([("P1", "P3"), ("P2", "P3"), ("P3", "P4")])]
    page = write_report(a, tmp_path).read_text()
    assert "P3 drifted away \u2014 3 of 3 ties dropped (episodes 1, 2, 3; \u2713 repaired)" in page
    assert "<td>1.00 (below chance)</td>" in page and "<td>0.80</td>" in page and "1.99" not in page
    assert page.count("<td>\u2713 repaired</td>") == 3


def test_attunement_of_each_pair_without_a_surrogate_spread():
    """Windows without ``chance_sd`` (an analysis made before the surrogate spread was kept): each pair's excess
    over chance comes from its own windows, for every pair of a group (the default was shaped for one pair)."""
    from attune_monitor.ui.analysis_io import attunement_summaries

    a = make_analysis(people=("P1", "P2"))
    a.participants = ["P1", "P2", "P3"]
    a.pairs = [("P1", "P2"), ("P1", "P3"), ("P2", "P3")]
    for m in a.sync:
        one = np.asarray(a.sync[m]["sync"], dtype=float)[:1]
        a.sync[m]["sync"] = np.vstack([np.full_like(one, 0.6), np.full_like(one, 0.2), np.full_like(one, -0.1)])
        a.sync[m]["chance"] = np.zeros_like(a.sync[m]["sync"])
        a.sync[m].pop("chance_sd", None)
    recs = attunement_summaries(a)
    assert len(recs) == 3
    for rec, r in zip(recs, (0.6, 0.2, -0.1)):
        for m, ex in rec["above_chance"].items():
            assert ex["excess"] == pytest.approx(np.arctanh(r), abs=1e-3), (rec["pair"], m)
