"""Offline analysis shows the person-level arousal evidence: Analysis series, report plot, episodes.csv, summary."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attune_monitor.dsp.detector import Episode, get_preset
from attune_monitor.ui.analysis_io import EPISODE_CSV_COLUMNS, validate
from attune_monitor.ui.report import _MARGIN_IN, AROUSAL_SHADES, _new_figure, write_report
from attune_monitor.ui.runner import Analysis

SAMPLE = Path(__file__).resolve().parents[2] / "recordings" / "sample-couple.xdf"
EVIL = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def couple():
    """The sample couple (seed 3: P2 aversive 90-150 s, P1 withdrawn 230-290 s) analysed offline, and the
    pipeline's raw arousal ratios from an independent run fed 10 s at a time."""
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.dsp.pipeline import PipelineConfig
    from attune_monitor.ui.runner import analyze_recording, feed, make_pipeline

    a = analyze_recording(load_recording(SAMPLE))
    cfg = PipelineConfig()
    src = RecordingSource(load_recording(SAMPLE), speed=math.inf)
    pipe = make_pipeline(src, cfg)
    ts, ls, t = [], [], 0.0
    while t < src.duration_s:
        t = min(t + 10.0, src.duration_s)
        chunks, until, _ = src.poll(horizon_s=t)
        feed(pipe, chunks)
        u = pipe.advance(until)
        ts.append(u.arousal_t)
        ls.append(u.arousal)
    u = pipe.flush(src.end)
    ts.append(u.arousal_t)
    ls.append(u.arousal)
    return a, np.concatenate(ts), np.concatenate(ls, axis=1)


def test_analysis_holds_the_smoothed_arousal_and_states(couple):
    a, t_raw, l_raw = couple
    truth = json.loads(SAMPLE.with_suffix("").with_suffix(".truth.json").read_text())
    n_sec = a.arousal_t.size
    assert a.arousal.shape == a.arousal_state.shape == (2, n_sec) and a.arousal_state.dtype == np.uint8
    # one value a second over the whole recording, none past its end (offline: bounded by the recording)
    assert n_sec >= int(a.duration_s) - 1 and a.arousal_t[-1] <= a.duration_s
    assert np.allclose(np.diff(a.arousal_t), 1.0)
    assert a.arousal_threshold == get_preset("balanced").arousal_k
    # the smoothed L is the 5 s mean of the pipeline's raw L (independent run, other chunking)
    keep = t_raw <= a.duration_s
    np.testing.assert_array_equal(a.arousal_t, t_raw[keep])
    smooth = pd.DataFrame(l_raw.T).rolling(5, min_periods=1).mean().to_numpy().T[:, keep]
    np.testing.assert_allclose(a.arousal, smooth, equal_nan=True)
    # moving away exactly where the smoothed L reaches the threshold, only the likelier of the couple's two
    with np.errstate(invalid="ignore"):
        likelier = ~(np.isfinite(smooth[::-1]) & (smooth[::-1] > smooth))
        np.testing.assert_array_equal(a.arousal_state >= 2,
                                      np.isfinite(smooth) & (smooth >= a.arousal_threshold) & likelier)
    # the known truth: P2 aversive (climbing) in the first rupture, P1 withdrawn (flattening) in the second
    (r1, r2) = truth["ruptures"]
    assert (r1["who"], r1["style"], r2["who"], r2["style"]) == ("P2", "aversive", "P1", "withdrawn")
    first = (a.arousal_t >= r1["onset_s"]) & (a.arousal_t <= r1["offset_s"] + 10)
    second = (a.arousal_t >= r2["onset_s"]) & (a.arousal_t <= r2["offset_s"] + 10)
    assert (a.arousal_state[1, first] == 2).sum() >= 20 and not (a.arousal_state[:, first] == 3).any()
    assert (a.arousal_state[0, second] == 3).sum() >= 15 and not (a.arousal_state[0, second] == 2).any()
    # learning the baseline first (unknown), known later
    assert (a.arousal_state[:, a.arousal_t < 60] == 0).all() and (a.arousal_state[:, a.arousal_t > 100] > 0).all()
    # who was moving away at each flag, in the document's order
    assert a.episode_arousal() == [{"P2": "climbing"}, {"P1": "flattening"}]


def _scripted(people=("P1", EVIL), duration=300.0):
    """Two people; person 0 climbing 100-129 s, person 1 flattening 200-229 s; one episode flagged in each span
    (the second re-flagged at 215 s after being flagged at 190 s, outside the span)."""
    t = np.arange(duration) + 0.75
    L = np.full((2, t.size), np.nan)
    L[:, t > 60] = -1.0
    code = np.where(np.isfinite(L), 1, 0).astype(np.uint8)
    up = (t >= 100) & (t < 130)
    down = (t >= 200) & (t < 230)
    L[0, up], code[0, up] = 8.0, 2
    L[1, down], code[1, down] = 6.0, 3
    eps = [Episode(id=1, pair=tuple(people), people=list(people), onset_s=95.0, flagged_s=110.75, nadir_s=115.0,
                   offset_s=140.0, repaired=True, depth=1.2, modalities=["hr"], confidence=0.7),
           Episode(id=2, pair=tuple(people), people=[people[1]], onset_s=185.0, flagged_s=190.75, nadir_s=220.0,
                   offset_s=None, repaired=False, depth=1.0, modalities=["hr"], confidence=0.6)]
    tg = np.arange(int(duration * 4)) / 4
    hr = np.vstack([70 + 5 * np.sin(tg / 9), 72 + 5 * np.sin(tg / 9 + 0.2)])
    ts = np.arange(30.0, duration, 1.0)
    r = np.full((1, ts.size), 0.6)
    return Analysis(
        recording="/data/s.xdf", duration_s=duration, participants=list(people),
        streams={p: [f"{p} RR"] for p in people},
        pairs=[tuple(people)], modalities=("hr",), fs=4.0, step_s=1.0, grid={"hr": hr},
        quality={"hr": np.zeros((2, tg.size), np.uint8)},
        sync={"hr": {"t": ts, "sync": r, "chance": np.full_like(r, 0.1)}}, episodes=eps,
        arousal_t=t, arousal=L, arousal_state=code, arousal_threshold=4.0,
        flag_times={1: [110.75], 2: [190.75, 215.75]})


def test_moving_away_reads_the_scripted_states():
    a = _scripted(("A", "B"))
    assert a.moving_away(("A", "B"), [110.75]) == {"A": "climbing"}
    assert a.moving_away(("A", "B"), [110.4]) == {"A": "climbing"}        # within half a step
    assert a.moving_away(("A", "B"), [99.75, 130.75]) == {}                 # just outside the span
    assert a.moving_away(("A", "B"), [1000.0]) == {}                        # no arousal second there
    assert a.moving_away(("B", "A"), [205.75, 110.75]) == {"B": "flattening", "A": "climbing"}
    # episode 2 was flagged before B's span and re-flagged inside it: the re-flag counts
    assert a.episode_arousal() == [{"A": "climbing"}, {"B": "flattening"}]
    a.flag_times = {}  # without the events: the episode's own flag time
    assert a.episode_arousal() == [{"A": "climbing"}, {}]
    # a flag just after A's span (100-130 s): A was climbing while the evidence built up (onset 95 s)
    a.episodes[0].flagged_s = 133.75
    assert a.moving_away(("A", "B"), [133.75]) == {}
    assert a.episode_arousal()[0] == {"A": "climbing"}
    a.episodes[0].onset_s = 131.0  # an onset after the span: nothing before the flag
    assert a.episode_arousal()[0] == {}


def _colour_pixels(img, hex_colour):
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.all(np.abs(img[:, :, :3] - rgb) < 0.01, axis=2)


def test_report_plots_each_persons_arousal_and_escapes_names(tmp_path):
    from matplotlib.image import imread

    a = _scripted()
    offset = 5.0
    index = write_report(a, tmp_path, time_offset=offset)
    page = index.read_text(encoding="utf-8")
    assert EVIL not in page and html_escaped(EVIL) in page and page.count("<img") == 3  # signals, sync, arousal
    assert '<img src="arousal.png"' in page and "moving away before the flag" in page
    assert "P1 (climbing)" in page and f"{html_escaped(EVIL)} (flattening)" in page
    img = imread(tmp_path / "arousal.png")
    h, w = img.shape[:2]
    assert w == 1100
    # the solid strip of each moving-away span sits where the scripted span is (fixed margins: known x scale),
    # the climbing one in the first person's row (upper half), the flattening one in the second's (lower half)
    x0, x1 = _MARGIN_IN["left"] * 100, w - _MARGIN_IN["right"] * 100
    col = lambda s: x0 + (s + offset) / (a.duration_s + offset) * (x1 - x0)  # noqa: E731 (file time axis)
    for state, (start, stop), rows in (("climbing", (100, 130), slice(0, h // 2)),
                                       ("flattening", (200, 230), slice(h // 2, h))):
        hit = _colour_pixels(img, AROUSAL_SHADES[state][0])
        ys, xs = np.nonzero(hit)
        assert xs.size > 50, state
        assert col(start - 0.5) - 2 <= xs.min() and xs.max() <= col(stop - 0.5) + 2, (state, xs.min(), xs.max())
        assert xs.max() - xs.min() >= 0.9 * (col(stop) - col(start))
        assert hit[rows].sum() == xs.size, state
    # the time axes of all plots line up: the same left/right edge in pixels
    for name in ("arousal.png", "sync_01.png", "signals.png"):
        plot = imread(tmp_path / name)
        assert plot.shape[1] == 1100


def html_escaped(s):
    import html

    return html.escape(s, quote=True)


def test_episodes_csv_and_summary_say_who_moved_away(tmp_path):
    from attune_monitor.ui.analysis_io import summary_text

    a = _scripted()
    write_report(a, tmp_path)
    rows = list(csv.DictReader((tmp_path / "episodes.csv").read_text(encoding="utf-8").splitlines()))
    assert list(rows[0]) == list(EPISODE_CSV_COLUMNS)
    assert [r["moving_away"] for r in rows] == ["P1 climbing", f"{EVIL} flattening"]  # raw text: CSV is data
    doc = json.loads((tmp_path / "analysis.json").read_text())
    assert validate(doc) == [] and all("moving_away" not in e and "arousal" not in e for e in doc["episodes"])
    text = summary_text(doc, away=a.episode_arousal())
    lines = [x for x in text.splitlines() if x.strip().startswith("#")]
    assert lines[0].endswith("moving away before the flag: P1 climbing")
    assert lines[1].endswith(f"moving away before the flag: {EVIL} flattening")
    # nobody moving away: nothing said
    assert "moving away" not in summary_text(doc, away=[{}, {}]) and "moving away" not in summary_text(doc)


def test_analyze_file_end_to_end_on_the_sample(tmp_path):
    from attune_monitor.ui.analysis_io import SCHEMA_ID
    from attune_monitor.ui.commands.analyze import analyze_file

    res = analyze_file(str(SAMPLE), json_path=str(tmp_path / "a.json"), report_dir=str(tmp_path / "rep"))
    assert res.code == 0, res.message
    rows = list(csv.DictReader((tmp_path / "rep" / "episodes.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["moving_away"] for r in rows] == ["P2 climbing", "P1 flattening"]
    eps = [x for x in res.summary.splitlines() if re.match(r"\s+#\d", x)]
    assert "moving away before the flag: P2 climbing" in eps[0]
    assert "moving away before the flag: P1 flattening" in eps[1]
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["schema"] == SCHEMA_ID and validate(doc) == []
    assert (tmp_path / "rep" / "arousal.png").read_bytes()[:4] == b"\x89PNG"


def test_plots_share_the_time_axis_pixels():
    """Every report figure puts its time axis on the same pixel columns (fixed margins, not label-sized)."""
    spans = set()
    for rows, per_row, extra in ((1, 2.3, 0.0), (2, 2.1, 0.0), (5, 1.6, 0.15)):
        fig, axes = _new_figure(rows, per_row, extra)
        axes[0].set_ylabel("a long\ntwo-line label")
        fig.canvas.draw()
        bb = axes[-1].get_window_extent()
        spans.add((round(bb.x0), round(bb.x1)))
    assert len(spans) == 1


def test_report_colours_are_the_live_views():
    pytest.importorskip("PySide6")
    from attune_monitor.ui.gui.style import AROUSAL_STYLE

    for state, (fill, _alpha, text) in AROUSAL_SHADES.items():
        _, _, rgba = AROUSAL_STYLE[state]
        assert fill == "#{:02X}{:02X}{:02X}".format(*rgba[:3]) and text == AROUSAL_STYLE[state][0]


def test_names_that_look_like_mathtext_do_not_break_the_plots(tmp_path):
    index = write_report(_scripted(people=("P1", r"$\foo{$ and a very long name")), tmp_path)
    assert (tmp_path / "arousal.png").stat().st_size > 1000 and "\\foo{" in index.read_text(encoding="utf-8")
