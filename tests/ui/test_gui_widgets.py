"""GUI widgets against a model filled with scripted updates (known input -> asserted drawing state).

End-to-end tests with the real runner, simulator and recordings are in test_gui_e2e.py.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore, QtWidgets  # noqa: E402

from attune_monitor.ui.gui.style import fmt_time  # noqa: E402
from attune_monitor.ui.model import RUPTURE_TYPES  # noqa: E402
from tests.helpers.gui_fake import FakeSession  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("tmp_qsettings")]


@pytest.fixture
def couple():
    fs = FakeSession(n_people=2, rupture=(60.0, 110.0), loss=("P2", 140.0, 150.0))
    return fs


def make_window(qtbot, model, **kw):
    from attune_monitor.ui.gui.main_window import MainWindow
    from attune_monitor.ui.gui.settings import Settings

    win = MainWindow(model, settings=Settings(recordings_dir="/nonexistent"), **kw)
    qtbot.addWidget(win)
    win.show()
    return win


def test_traces_update_and_skip_when_unchanged(qtbot, couple):
    couple.advance(30)
    win = make_window(qtbot, couple.model)
    win.redraw()
    curve = win.traces.curves[("P1", "hr")]
    x, y = curve.getData()
    t_grid, v_grid = couple.model.snapshot(seconds=180).grid["hr"]
    np.testing.assert_allclose(x, t_grid)
    np.testing.assert_allclose(y, v_grid[0])
    frames = win.frames
    win.tick()
    win.tick()
    assert win.frames == frames, "redrew although the model did not change"
    couple.advance(2)
    win.tick()
    assert win.frames == frames + 1
    assert curve.getData()[0][-1] == pytest.approx(couple.model.t_now)


def test_rupture_shaded_then_repaired_colour_and_meter_words(qtbot, couple):
    couple.advance(90)   # inside the scripted drop: flagged, not repaired
    win = make_window(qtbot, couple.model)
    win.redraw()
    pair = ("P1", "P2")
    eps = couple.model.snapshot().episodes
    assert len(eps) == 1 and not eps[0]["repaired"]
    spans = win.timelines.episode_spans(pair)
    (x0, x1, colour), = spans.values()
    assert colour == "open"
    assert x0 == pytest.approx(eps[0]["onset_s"]) and x1 == pytest.approx(couple.model.t_now)
    assert win.meters.meters[pair].words == "possible rupture"
    assert "possible rupture" in win.timelines.title_state(pair).replace("_", " ")
    couple.advance(50)   # synchrony back: repaired
    win.redraw()
    ep = couple.model.snapshot().episodes[0]
    assert ep["repaired"]
    (x0, x1, colour), = win.timelines.episode_spans(pair).values()
    assert colour == "repaired" and x1 == pytest.approx(ep["offset_s"])
    assert win.meters.meters[pair].words in ("repaired", "in tune")


def test_signal_loss_hatched_and_badge_lost(qtbot, couple):
    couple.advance(145)  # P2's HR missing since 140 s
    win = make_window(qtbot, couple.model)
    win.redraw()
    assert win.traces.badge("P2", "hr") == "lost"
    assert win.traces.badge("P1", "hr") == "ok"
    hatches = win.timelines.loss_spans(("P1", "P2"))
    assert len(hatches) == 1
    (x0, x1), = hatches.values()
    assert x0 == pytest.approx(140.0) and x1 == pytest.approx(couple.model.t_now)
    # the loss is not an episode
    assert all(ep["onset_s"] < 130 for ep in couple.model.snapshot().episodes)
    couple.advance(10)
    win.redraw()
    assert win.traces.badge("P2", "hr") == "ok"
    (x0, x1), = win.timelines.loss_spans(("P1", "P2")).values()
    assert x1 == pytest.approx(150.0)


def test_episode_panel_label_goes_to_marker_sink(qtbot, couple):
    couple.advance(120)
    got = []
    couple.model.marker_sinks.append(got.append)
    win = make_window(qtbot, couple.model)
    win.redraw()
    panel = win.episodes
    assert panel.count() == 1
    assert panel.row_texts(0)[2] == "P1 \u2013 P2"
    # the flag time is shown; when it began (estimated) and ended is in its tooltip
    ep = couple.model.snapshot(200).episodes[0]
    assert panel.tree.headerItem().text(1) == "flagged"
    item = panel.tree.topLevelItem(0)
    assert item.text(1) == fmt_time(ep["flagged_s"])
    tip = item.toolTip(1)
    assert f"began about {fmt_time(ep['onset_s'])} (estimated)" in tip
    assert f"flagged at {fmt_time(ep['flagged_s'])}" in tip
    # the status is the pair's state now, as its card says it
    meter = win.meters.meters[("P1", "P2")]
    assert meter.state == "repairing" and item.text(5) == "\u21bb repairing"   # not "open" next to "repairing"
    # click the row: the timelines scroll to the episode and stop following
    rect = panel.tree.visualItemRect(item)
    qtbot.mouseClick(panel.tree.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.selected_id() == 1
    assert not win.follow and win.live_action.isVisible()
    # choose a label from the taxonomy
    idx = panel.label_box.findText("limit-setting")
    panel.label_box.setCurrentIndex(idx)
    panel.label_box.activated.emit(idx)
    qtbot.mouseClick(panel.confirm_btn, QtCore.Qt.MouseButton.LeftButton)
    assert [(m["kind"], m["text"], m["episode"]) for m in got] == [("label", "limit-setting", 1),
                                                                   ("confirm", "episode 1", 1)]
    win.redraw()
    assert panel.row_texts(0)[7] == "limit-setting"
    assert panel.row_texts(0)[8] == "confirm"
    assert set(RUPTURE_TYPES) <= {panel.label_box.itemText(i) for i in range(panel.label_box.count())}


def test_marker_shortcuts_and_timeline_lines(qtbot, couple):
    couple.advance(40)
    got = []
    couple.model.marker_sinks.append(got.append)
    win = make_window(qtbot, couple.model)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    qtbot.keyClick(win, QtCore.Qt.Key.Key_R)
    qtbot.keyClick(win, QtCore.Qt.Key.Key_P)
    assert [m["kind"] for m in got] == ["rupture_noticed", "repair"]
    assert got[0]["t"] == pytest.approx(couple.model.t_now)
    win.redraw()
    lines = win.timelines.plots[0]["markers"].items
    assert sorted(k[1] for k in lines) == ["repair", "rupture_noticed"]
    assert all(line.value() == pytest.approx(couple.model.t_now) for line in lines.values())


def test_group_matrix_and_drifting_away(qtbot):
    fs = FakeSession(n_people=4, rupture=(60.0, 200.0), withdrawer="P3", loss=None)
    fs.advance(100)
    win = make_window(qtbot, fs.model)
    win.redraw()
    assert win.matrix is not None
    # P3's tie to the group: drifting away (said in P3's row); everyone else with the group
    assert [p for p in fs.model.participants if win.traces.tie_words(p) == "drifting away"] == ["P3"]
    assert {win.traces.tie_words(p) for p in ("P1", "P2", "P4")} == {"with the group"}
    m = win.matrix.matrix
    i3 = 2
    others = [0, 1, 3]
    assert np.nanmax(m[i3, others]) < np.nanmin([m[0, 1], m[0, 3], m[1, 3]])
    words = {pair: meter.words for pair, meter in win.meters.meters.items()}
    assert {p for p, w in words.items() if w == "possible rupture"} == {("P1", "P3"), ("P2", "P3"), ("P3", "P4")}


def test_settings_roundtrip_in_temporary_location(tmp_qsettings):
    from attune_monitor.ui.gui.settings import Settings, qsettings

    s = Settings(display_s=240, preset="sensitive", modalities="heart only", window_s=30)
    s.save()
    assert (tmp_qsettings).exists()
    back = Settings.load(qsettings())
    assert (back.display_s, back.preset, back.modalities, back.window_s) == (240, "sensitive", "heart only", 30)
    store = qsettings()
    store.setValue("preset", "wild")
    store.setValue("display_s", "5")
    bad = Settings.load(store)
    assert bad.preset == "balanced" and bad.display_s == 60.0
    cfg = back.pipeline_config()
    assert cfg.preset == "sensitive" and cfg.window_s == 30
    assert back.modality_tuple == ("hr",)


@pytest.mark.qt_no_exception_capture
def test_error_dialog_instead_of_crash(qtbot):
    """An exception in a Qt slot opens a critical dialog with the message; the recording hook runs first."""
    from PySide6 import QtWidgets

    from attune_monitor.ui.gui.app import ErrorReporter

    flushed, seen = [], []
    rep = ErrorReporter(on_error=flushed.append).install()

    def close_dialog():
        box = QtWidgets.QApplication.activeModalWidget()
        if isinstance(box, QtWidgets.QMessageBox):
            seen.append(box.text())
            box.done(0)
        else:
            QtCore.QTimer.singleShot(20, close_dialog)

    def bad_slot():
        raise RuntimeError("boom in a slot")

    try:
        QtCore.QTimer.singleShot(0, bad_slot)
        QtCore.QTimer.singleShot(20, close_dialog)
        qtbot.waitUntil(lambda: len(seen) == 1, timeout=3000)
    finally:
        rep.uninstall()
    assert rep.errors == ["RuntimeError: boom in a slot"]
    assert "boom in a slot" in seen[0] and "recording is kept safe" in seen[0]
    assert len(flushed) == 1


def test_fits_a_laptop_screen(qtbot, couple):
    couple.advance(60)
    win = make_window(qtbot, couple.model)
    win.resize(1366, 768)
    win.redraw()
    qtbot.wait(50)
    assert win.minimumSizeHint().width() <= 1366 and win.minimumSizeHint().height() <= 768
    assert win.meters.meters[("P1", "P2")].height() >= 200   # the meter stays large


def test_synchrony_legend_says_what_each_line_is(qtbot, couple):
    """Hovering the synchrony legend says what heart and skin synchrony are (skin: co-occurring responses)."""
    from PySide6 import QtWidgets

    from attune_monitor.ui.gui.main_window import sync_legend_tip

    win = make_window(qtbot, couple.model)
    tips = [w.toolTip() for w in win.findChildren(QtWidgets.QLabel) if "usual range" in w.text()]
    assert len(tips) == 1 and "skin-conductance responses" in tips[0] and "3 s" in tips[0]
    assert "heart rates" in tips[0] and "never a diagnosis" in tips[0]
    heart_only = sync_legend_tip(("hr",))
    assert "heart rates" in heart_only and "skin" not in heart_only


def _windows(t0, n, value, npairs=1, n_people=2, fs=4.0):
    """Seconds t0..t0+n of a constant synchrony ``value`` (and flat signals, so the session clock moves on)."""
    from attune_monitor.dsp.pipeline import Update

    t = np.arange(t0 + 1, t0 + n + 1, dtype=float)
    k = int(n * fs)
    return Update(grid_start=int(t0 * fs), grid={m: np.full((n_people, k), 70.0) for m in ("hr", "eda")},
                  quality={m: np.zeros((n_people, k), np.uint8) for m in ("hr", "eda")},
                  windows={m: {"t": t, "sync": np.full((npairs, n), value), "chance": np.full((npairs, n), 0.08)}
                           for m in ("hr", "eda")})


def test_strongly_negative_synchrony_is_visible_and_the_axis_does_not_jitter(qtbot):
    """r = -0.85 was clipped by the fixed -0.5..1 range: the plots showing it extend down to -1, stay so while
    values hover just above -0.5, and go back once the negative values have scrolled out of view."""
    fs = FakeSession(n_people=2, rupture=None, loss=None)
    fs.advance(60)
    win = make_window(qtbot, fs.model)
    win.redraw()

    def lows():
        return [d["plot"].vb.viewRange()[1][0] for d in win.timelines.plots_for(0)]

    assert len(win.timelines.plots_for(0)) == 3 and lows() == pytest.approx([-0.5] * 3)
    fs.model.apply(_windows(60, 10, -0.85))
    win.tick()
    for d in win.timelines.plots_for(0):
        lo, hi = d["plot"].vb.viewRange()[1]
        assert lo < -0.85 and hi == pytest.approx(1.0)
        x, y = d["curves"][d["kinds"][-1]].getData()
        assert np.nanmin(y) == pytest.approx(-0.85)  # drawn inside the range, not clipped
        assert d["plot"].getAxis("left")._tickLevels[0][0] == (-1.0, "\u22121")
    # P1's arousal moving away while the pair is flagged: the note on the combined plot must not cover r < -0.5
    from attune_monitor.dsp.divergence import FEATURES, LLR_MODEL
    from attune_monitor.dsp.pipeline import Update

    k = fs.model.arousal_threshold
    fs.model.apply(Update(arousal_t=np.arange(61.0, 71.0), arousal=np.vstack([np.full(10, k + 3), np.full(10, -1.0)]),
                          arousal_div=np.stack([np.repeat(np.asarray(LLR_MODEL["aversive"], float)[:, None], 10, 1),
                                                np.zeros((len(FEATURES), 10))])),
                   [{**fs.det.pair_states()[0], "state": "possible_rupture", "drop": 0.1}])
    win.tick()
    qtbot.wait(20)
    d = win.timelines.plots_for(0)[-1]
    assert d["note"].isVisible() and "P1 moving away" in d["note_text"]
    r = d["note"].mapRectToView(d["note"].boundingRect())
    assert min(r.top(), r.bottom()) > -0.5
    fs.model.apply(_windows(70, 10, -0.48))   # hovering just above the usual edge: no jump back
    win.tick()
    assert all(lo < -0.85 for lo in lows())
    display = win.settings.display_s
    fs.model.apply(_windows(80, int(display) + 5, 0.5))  # the negative values scroll out of the view
    assert fs.model.t_now == pytest.approx(85.0 + int(display), abs=0.3)
    win.tick()
    assert lows() == pytest.approx([-0.5] * 3)


def test_four_people_traces_label_time_once_per_column_without_overlap(qtbot, tmp_path):
    """Each trace column has one time axis (its bottom plot), the plots above follow it (x linked), and its
    labels leave room between them at a laptop window size (they ran into each other: "0:501:402:30")."""
    from PySide6 import QtGui

    fs = FakeSession(n_people=4, rupture=None, loss=None)
    fs.advance(150)
    win = make_window(qtbot, fs.model)
    win.resize(1366, 768)
    win.redraw()
    qtbot.wait(50)
    win.select_pair(("P1", "P2"))   # a click on its matrix cell: the pair's synchrony plot shows
    win.redraw()
    qtbot.wait(50)
    win.redraw()
    assert win.timelines.shown == [("P1", "P2")]
    traces = win.traces
    steps = set()
    for m in traces.columns:
        column = [traces.plots[(p, m)] for p in traces.participants]
        bottom = column[-1]
        assert bottom.getAxis("bottom").isVisible()
        for plot in column:
            if plot is not traces.master:
                assert plot.vb.linkedView(plot.vb.XAxis) is traces.master.vb   # one x range for the panel
            assert plot.vb.viewRange()[0] == pytest.approx(traces.master.vb.viewRange()[0])
        for plot in column[:-1]:
            assert not plot.getAxis("bottom").isVisible()
        steps.add(bottom.getAxis("bottom").tickSpacing(*bottom.getAxis("bottom").range, 100)[0][0])
        axis = bottom.getAxis("bottom")
        lo, hi = axis.range
        width = axis.geometry().width()
        assert 60 < width < 400  # a narrow column, as in a 4-person window
        levels = axis.tickValues(lo, hi, width)
        fm = QtGui.QFontMetricsF(axis.style["tickFont"] or axis.font())
        labelled = []
        for spacing, values in levels:
            strings = axis.tickStrings(values, axis.scale, spacing)
            labelled = sorted(set(labelled) | {v for v, s in zip(values, strings) if s})
            break  # the major level always gets its labels
        assert len(labelled) >= 2
        px = [(v - lo) / (hi - lo) * width for v in labelled]
        label_w = max(fm.horizontalAdvance(s) for s in axis.tickStrings(labelled, 1.0, 1.0))
        gaps = np.diff(px)
        assert gaps.min() >= label_w + 8, (m, labelled, gaps, label_w)
    # the same time ticks on every column and on the pair plots (a person's row lines up with a pair's)
    shown = [d["plot"].getAxis("bottom") for d in win.timelines.plots if d["plot"].getAxis("bottom").isVisible()]
    assert shown
    for axis in shown:
        steps.add(axis.tickSpacing(*axis.range, 100)[0][0])
    assert len(steps) == 1, steps
    path = tmp_path / "traces4.png"
    win.grab().save(str(path))
    assert path.stat().st_size > 10000


def test_recorded_markers_show_on_the_timelines_and_are_not_recorded_again(qtbot, couple):
    """Replay: the recording's markers (Attune's JSON ones and another app's) appear where they were set."""
    import json

    couple.advance(40)
    got = []
    couple.model.marker_sinks.append(got.append)
    n = couple.model.show_external_markers([
        (30.0, "PsychoPy task", "block 2"),
        (12.5, "Attune markers", json.dumps({"kind": "rupture_noticed", "text": "", "t": 12.5, "episode": None})),
        (35.0, "Attune markers", json.dumps({"kind": "label", "text": "dismissive", "t": 35.0, "episode": 1})),
    ])
    assert n == 3 and got == []          # shown, not handed to a recorder again
    marks = couple.model.snapshot(60).markers
    assert [(m["t"], m["kind"], m["text"]) for m in marks] == [
        (12.5, "rupture_noticed", ""), (30.0, "note", "PsychoPy task: block 2"), (35.0, "label", "dismissive")]
    win = make_window(qtbot, couple.model)
    win.redraw()
    lines = win.timelines.plots[0]["markers"].items
    drawn = sorted((line.value(), k[1]) for k, line in lines.items())
    assert drawn == [(12.5, "rupture_noticed"), (30.0, "note")]   # labels go to the episodes table, not a line


def test_a_marker_arriving_late_with_an_earlier_time_is_drawn_where_it_belongs(qtbot, couple):
    """Another app's marker stamped just before the facilitator's (network delay) must not move or hide it."""
    couple.advance(40)
    win = make_window(qtbot, couple.model)
    couple.model.add_marker("note", "mine", t=38.0)
    win.redraw()
    couple.model.show_external_markers([(37.5, "PsychoPy task", "trial 9")])
    win.redraw()
    lines = win.timelines.plots[0]["markers"].items
    assert sorted(line.value() for line in lines.values()) == [37.5, 38.0]


def test_first_minutes_fill_the_plots(qtbot, couple):
    """While less than the display span has been seen, the plots span the first whole minutes holding the data
    (a minute at a time), then the usual last ``display_s`` seconds."""
    couple.advance(20)
    win = make_window(qtbot, couple.model)
    d = win.settings.display_s
    assert d >= 120
    assert win.x_range(20.0) == (0.0, 60.0) and win.x_range(56.0) == (0.0, 120.0)
    x0, x1 = win.x_range(d + 30.0)   # the last display_s seconds, the newest at most a pixel from the edge
    assert x1 - x0 == pytest.approx(d) and 0 <= x1 - (d + 30.0) <= d / win.traces.master.vb.width() + 1e-9
    win.redraw()
    lo, hi = win.traces.master.vb.viewRange()[0]
    assert (lo, hi) == pytest.approx((0.0, 60.0))


def test_tile_says_in_tune_dipping_while_the_detector_lags_the_drop(qtbot):
    """4 people, P3 drifting away: at the moment the detector still calls P3's pairs in tune while their gauges
    are near chance and P3's row already says "drifting away", the tiles paint "● in tune · dipping", never plain
    "in tune" (the state, its colour and symbol stay the detector's)."""
    from attune_monitor.ui.gui.meter import attunement_level

    fs = FakeSession(n_people=4, rupture=(60.0, 200.0), withdrawer="P3", loss=None)
    pair = ("P1", "P3")
    while fs.model.t_now < 80:
        fs.advance(1)
        ps = next(p for p in fs.model.snapshot(60).pair_states if tuple(p["pair"]) == pair)
        if ps["state"] == "attuned" and "dipping" in ps["words"]:
            break
    else:
        raise AssertionError("the scripted drop never passed the repair threshold before the detector moved")
    win = make_window(qtbot, fs.model)
    win.resize(1366, 768)
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
        win.redraw()
        qtbot.wait(10)
    assert win.traces.tie_words("P3") == "drifting away"
    tile = win.meters.meters[pair]
    assert tile.state == "attuned" and tile.words == "in tune \u00b7 dipping"
    assert attunement_level(ps) <= 1 - fs.model._repair_frac + 1e-9   # the gauge is near chance
    tile.repaint()
    painted = [t for t, _room, _w in tile.painted]
    assert ("\u25cf in tune \u00b7 dipping" in painted or ["\u25cf in tune \u00b7", "dipping"] == painted[1:3]), painted
    assert tile.painted_clipped() == []


@pytest.mark.parametrize("width", [130, 138, 146])
def test_a_small_group_tile_wraps_not_measurably_in_tune_instead_of_cutting_it(qtbot, width):
    """A group's small tile (130-146 px wide, 84 high: 4 people on a laptop screen) showed "○ not measura…": the
    state word did not fit one line at the smallest type, nor two. It now wraps onto two lines in smaller type."""
    from attune_monitor.ui.gui.meter import AttunementMeter

    tile = AttunementMeter(("P1", "P2"))
    qtbot.addWidget(tile)
    tile.setMinimumSize(130, 84)
    tile.set_state("not_in_tune", None, "vs chance: heart +0.44\u00b10.18 \u00b7 skin +0.16\u00b10.16, needs 3.8 s.e.")
    tile.resize(width, 84)
    tile.grab()  # paints it
    painted = [t for t, _room, _w in tile.painted]
    assert painted[1:3] == ["\u25cb not measurably", "in tune"], painted
    assert not any(t.endswith("\u2026") for t in painted[:3]), painted
    assert tile.painted_clipped() == []
    # the gauge's line, cut to "synchrony not above …" before: the short words instead
    assert "not above chance" in painted and not any(t.endswith("\u2026") for t in painted), painted


def test_a_tall_card_wraps_its_evidence_instead_of_cutting_it(qtbot):
    """A couple's card (about 290 x 230 px) cut the evidence to "vs chance: heart +0.64±0.21 · ski…": skin and what
    arming needs were hidden though the card had room. A tall card now wraps it onto up to three lines; a short one
    keeps one line (elided, the tooltip holds it all)."""
    from attune_monitor.ui.gui.meter import AttunementMeter

    details = "vs chance: heart +0.64\u00b10.21 \u00b7 skin +0.20\u00b10.15, needs 3.4 s.e."
    card = AttunementMeter(("P1", "P2"))
    qtbot.addWidget(card)
    card.set_state("out_of_tune", None, details, words="\u25bd out of tune since 04:51")
    card.resize(290, 232)
    card.grab()
    painted = [t for t, _room, _w in card.painted]
    tail = painted[painted.index(next(t for t in painted if t.startswith("vs chance"))):]
    assert " ".join(tail) == details, painted
    assert tail[0].endswith("\u00b7") and len(tail) >= 2, tail  # broken after the separator, not inside a figure
    assert card.painted_clipped() == []
    card.resize(290, 150)  # short: one line, cut
    card.grab()
    painted = [t for t, _room, _w in card.painted]
    (line,) = [t for t in painted if t.startswith("vs chance")]
    assert line.endswith("\u2026") and card.painted_clipped() == []
