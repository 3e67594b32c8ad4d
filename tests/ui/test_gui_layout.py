"""Nothing clipped: the main window of a 2-, 4-, 8- and 12-person session at 1366x768 and 1920x1080.

Each visible label's text must fit its width (rich text measured as laid out; word-wrapped text must fit its
height too), each button its text, each table/tree header its section and each cell its column unless the
cell's tooltip carries the whole text; every text the custom widgets paint (matrix, tiles) fits its room; every
plot title and person header fits its item; the toolbar has no overflow menu; every person's row is on screen
without scrolling; the episodes table shows its rows. The sessions are scripted (tests/helpers/gui_fake.py): one person
(P3) drifts away from everyone at 60 s (a couple: the pair drops), so the flagged layout is what is checked,
and the first seconds (learning the baseline, with its countdown) are checked too.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
import pyqtgraph as pg  # noqa: E402
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from tests.helpers.gui_fake import FakeSession  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("tmp_qsettings")]

SIZES = ((1366, 768), (1920, 1080))


def _window(qtbot, model):
    from attune_monitor.ui.gui.main_window import MainWindow
    from attune_monitor.ui.gui.settings import Settings

    win = MainWindow(model, settings=Settings(recordings_dir="/nonexistent"))
    qtbot.addWidget(win)
    win.show()
    return win


def _shown(w: QtWidgets.QWidget) -> bool:
    """Visible and not entirely cut away by its ancestors (e.g. scrolled out of a scroll area).

    (``visibleRegion`` is empty for every widget of an offscreen window, so the rectangles are intersected here.)
    """
    if not w.isVisible():
        return False
    win = w.window()
    rect = QtCore.QRect(w.mapTo(win, QtCore.QPoint(0, 0)), w.size())
    parent = w.parentWidget()
    while parent is not None and parent is not win:
        rect = rect.intersected(QtCore.QRect(parent.mapTo(win, QtCore.QPoint(0, 0)), parent.size()))
        parent = parent.parentWidget()
    return not rect.isEmpty()


def _doc(font: QtGui.QFont, html: str) -> QtGui.QTextDocument:
    doc = QtGui.QTextDocument()
    doc.setDefaultFont(font)
    doc.setDocumentMargin(0)
    doc.setHtml(html)
    return doc


def _label_problem(w: QtWidgets.QLabel) -> str | None:
    text = w.text()
    if not text or w.pixmap() is not None and not w.pixmap().isNull():
        return None
    rect = w.contentsRect()
    rich = w.textFormat() == QtCore.Qt.TextFormat.RichText or (
        w.textFormat() == QtCore.Qt.TextFormat.AutoText and QtGui.Qt.mightBeRichText(text))
    fm = QtGui.QFontMetricsF(w.font())
    if w.wordWrap():
        if rich:
            doc = _doc(w.font(), text)
            doc.setTextWidth(rect.width())
            need_h, need_w = doc.size().height(), doc.idealWidth()
        else:
            br = fm.boundingRect(QtCore.QRectF(0, 0, rect.width(), 1e6), int(QtCore.Qt.TextFlag.TextWordWrap), text)
            need_h, need_w = br.height(), br.width()
        if need_w > rect.width() + 1 or need_h > rect.height() + 1:
            return f"wrapped label {text[:60]!r}: needs {need_w:.0f}x{need_h:.0f}, has {rect.width()}x{rect.height()}"
        return None
    need = _doc(w.font(), text).idealWidth() if rich else fm.horizontalAdvance(text)
    if need > rect.width() + 1:
        if "\u2026" in text and w.toolTip():
            return None
        return f"label {text[:60]!r}: needs {need:.0f} px, has {rect.width()}"
    return None


def clipping_problems(win) -> list[str]:
    """Every clipped text of the window, in words (empty: nothing clipped)."""
    problems = []
    for w in win.findChildren(QtWidgets.QLabel):
        if _shown(w):
            p = _label_problem(w)
            if p:
                problems.append(p)
    for w in win.findChildren(QtWidgets.QAbstractButton):
        if _shown(w) and w.text() and not isinstance(w, QtWidgets.QToolButton) and w.width() < w.sizeHint().width():
            problems.append(f"button {w.text()!r}: {w.width()} < {w.sizeHint().width()} px")
    for w in win.findChildren(QtWidgets.QComboBox):
        if _shown(w) and w.width() < w.minimumSizeHint().width():
            problems.append(f"combo box {w.currentText()!r}: {w.width()} < {w.minimumSizeHint().width()} px")
    for tb in win.findChildren(QtWidgets.QToolBar):
        ext = tb.findChild(QtWidgets.QToolButton, "qt_toolbar_ext_button")
        if ext is not None and ext.isVisible():
            problems.append("the toolbar overflows (its extension menu is shown)")
    for tree in win.findChildren(QtWidgets.QTreeWidget):
        if not _shown(tree):
            continue
        hh = tree.header()
        fm = QtGui.QFontMetricsF(hh.font())
        for c in range(tree.columnCount()):
            text = tree.headerItem().text(c)
            if not hh.isSectionHidden(c) and fm.horizontalAdvance(text) + 6 > hh.sectionSize(c):
                problems.append(f"header {text!r}: {hh.sectionSize(c)} px")
        it = QtWidgets.QTreeWidgetItemIterator(tree)
        fm = QtGui.QFontMetricsF(tree.font())
        while it.value():
            item = it.value()
            it += 1
            vis = tree.visualItemRect(item)
            if vis.isEmpty():
                continue
            for c in range(tree.columnCount()):
                text = item.text(c)
                rect = tree.visualRect(tree.indexFromItem(item, c))
                if text and fm.horizontalAdvance(text) + 6 > rect.width() and item.toolTip(c) != text:
                    problems.append(f"cell {text!r}: {rect.width()} px")
    for gw in win.findChildren(pg.GraphicsView):
        if not _shown(gw):
            continue
        view = gw.viewport().rect()
        for item in gw.scene().items():
            if not isinstance(item, pg.LabelItem) or not item.isVisible() or not item.text:
                continue
            doc = item.item.document()
            need = doc.idealWidth()
            r = item.mapRectToScene(item.boundingRect())
            if need > item.boundingRect().width() + 1:
                problems.append(f"plot text {item.text[:60]!r}: needs {need:.0f} px, has "
                                f"{item.boundingRect().width():.0f}")
            vr = gw.mapFromScene(r).boundingRect()
            if vr.right() > view.right() + 2 and vr.left() < view.right():
                problems.append(f"plot text {item.text[:60]!r} runs past the view's right edge")
        for item in gw.scene().items():
            if isinstance(item, pg.PlotItem) and item.isVisible():
                vr = gw.mapFromScene(item.mapRectToScene(item.boundingRect())).boundingRect()
                if vr.right() > view.right() + 2:
                    problems.append(f"a plot runs {vr.right() - view.right()} px past the right edge of its view")
        scene_w = gw.sceneRect().width()
        if gw.centralWidget is not None and gw.centralWidget.geometry().width() > view.width() + 1:
            plots_w = gw.centralWidget.geometry().width()
            problems.append(f"{type(gw).__name__}: its plots are {plots_w:.0f} px wide in a "
                            f"{view.width()} px view ({scene_w:.0f})")
    for sa in win.findChildren(QtWidgets.QScrollArea):
        inner = sa.widget()
        if _shown(sa) and inner is not None and inner.width() > sa.viewport().width() + 1:
            problems.append(f"{type(inner).__name__} is {inner.width()} px wide in a {sa.viewport().width()} px "
                            "scroll area without a horizontal scroll bar: its right side is cut")
    if win.matrix is not None and _shown(win.matrix):
        win.matrix.repaint()
        problems += [f"matrix text {t!r}: {w:.0f} px in {room:.0f}" for t, room, w in win.matrix.painted_clipped()]
        # every person labelled on both axes (a 12-person group's P10-P12 columns were left unlabelled)
        painted = [t for t, _room, _w in win.matrix.painted]
        problems += [f"matrix: {who} is labelled {painted.count(who)} time(s), not on both axes"
                     for who in win.matrix.participants if painted.count(who) < 2]
    for m in win.meters.meters.values():
        if _shown(m):
            m.repaint()
            problems += [f"tile {m.pair} text {t!r}: {w:.0f} px in {room:.0f}" for t, room, w in m.painted_clipped()]
    return problems


def _fit(qtbot, win, size):
    win.resize(*size)
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
        win.redraw()
        qtbot.wait(10)


@pytest.fixture(scope="module")
def sessions():
    """Scripted sessions of 2, 4, 8 and 12 people at 20 s (learning) and 100 s (P3 flagged away from everyone)."""
    out = {}
    for n in (2, 4, 8, 12):
        fs = FakeSession(n_people=n, rupture=(60.0, 200.0), withdrawer=None if n == 2 else "P3", loss=None)
        out[n] = fs
    return out


@pytest.mark.parametrize("n", [2, 4, 8, 12])
def test_nothing_clipped_at_laptop_and_full_hd(qtbot, sessions, n):
    fs = sessions[n]
    while fs.model.t_now < 20:
        fs.advance(5)
    win = _window(qtbot, fs.model)
    _fit(qtbot, win, SIZES[0])
    assert win.snapshot.arming["learning"]
    if n >= 3:
        assert "ready in ~" in win.pairs_hint.text() and win.pairs_hint.isVisible()
    assert "ready in ~" in win.arming_label.text()
    assert clipping_problems(win) == [], ("learning", n)
    while fs.model.t_now < 100:
        fs.advance(5)
    for size in SIZES:
        _fit(qtbot, win, size)
        assert (win.width(), win.height()) == size, "the window does not fit the screen"
        assert clipping_problems(win) == [], (n, size)
        # every person's row on screen (no scrolling), the episodes' rows readable
        bar = win.people_scroll.verticalScrollBar()
        assert not bar.isVisible() or bar.maximum() == 0, (n, size)
        tree = win.episodes.tree
        assert win.episodes.count() >= 1
        row_h = tree.visualItemRect(tree.topLevelItem(0)).height()
        assert tree.viewport().height() >= 2 * row_h
        if n >= 3:
            # one person drifting away from everyone: one group episode, said in their row
            assert win.episodes.count() == 1 and win.episodes.row_texts(0)[2].startswith("P3 drifting away")
            assert win.traces.tie_words("P3") == "drifting away"
            assert all(win.traces.tie_words(p) == "with the group" for p in fs.model.participants if p != "P3")
            assert win.timelines.shown and all("P3" in p for p in win.timelines.shown)
        # the synchrony plots shown are laid out in their view (not collapsed after being swapped in)
        view_w = win.timelines.viewport().width()
        for d in win.timelines.plots:
            assert d["plot"].vb.height() >= 40 and d["plot"].geometry().width() >= 0.9 * view_w, (n, size)


@pytest.mark.parametrize("n", [2, 8])
def test_replay_toolbar_fits_and_offers_no_record_button(qtbot, n):
    """A replay in its first seconds (learning, with the countdown) at 1366x768: the toolbar has no overflow,
    no Record button, one clock (the scrubber's); the countdown is on the card (couple) or the pairs' line."""
    fs = FakeSession(n_people=n, rupture=None, loss=None)
    fs.advance(15)
    fs.model.replay = {"position_s": 21.0, "duration_s": 600.0, "speed": 1.0, "paused": False}
    win = _window(qtbot, fs.model)
    _fit(qtbot, win, SIZES[0])
    assert win.snapshot.arming["learning"]
    assert win.replay_action.isVisible() and not win.record_action.isVisible()
    assert win.pos_label.text().startswith("0:21 /")
    assert not any(c.isdigit() for c in win.session_label.text().split("people")[-1])
    if n == 2:
        tile = win.meters.meters[("P1", "P2")]
        tile.repaint()
        assert any(t.startswith("ready in ~") for t, _room, _w in tile.painted)
    else:
        assert "ready in ~" in win.pairs_hint.text()
    assert clipping_problems(win) == []
