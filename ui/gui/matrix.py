"""Group view: the pairwise synchrony matrix now, coloured by how far each pair is above chance, with a legend.

Each cell is one pair's current combined synchrony (the last few windows). Its colour says how far above its
own chance level it is: grey at or below chance, light to dark blue from chance up to r = 1 (Okabe-Ito blue, a
single hue, so it reads the same for colour-blind eyes); a pair the detector is watching for a drop has its
number in the cell, and a flagged pair a frame and a symbol (▲ possible rupture, ◐ drifting, ↻ repairing).
The legend under the matrix shows the scale with chance marked. Who is drifting away from the group is said in
each person's row (:mod:`attune_monitor.ui.gui.traces`), not here.

Every text this widget paints is measured first and recorded in :attr:`SyncMatrix.painted` (text, room,
width), so a test can check that nothing is cut.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from attune_monitor.ui.words import STATE_SYMBOLS

from .style import GRID, INK, MUTED, PANEL, STATE_COLOURS, STATE_TEXT, qcolor

__all__ = ["AT_CHANCE", "SCALE_LOW", "SCALE_HIGH", "FRAMED", "above_chance", "cell_colour", "SyncMatrix"]

#: Colour of a cell at or below chance, and the two ends of the above-chance scale (chance -> r = 1).
AT_CHANCE = "#E5E7EB"
SCALE_LOW = "#D6E8F5"
SCALE_HIGH = "#084A80"
#: Pair states drawn with a frame.
FRAMED = ("drifting", "possible_rupture", "repairing")


def above_chance(value: float, chance: float) -> float:
    """Where ``value`` lies between its chance level (0) and r = 1 (1); NaN when unknown, < 0 below chance."""
    if not (np.isfinite(value) and np.isfinite(chance)) or chance >= 1:
        return float("nan")
    return float((value - chance) / (1.0 - chance))


def cell_colour(value: float, chance: float) -> QtGui.QColor:
    """The colour of a cell: grey at or below chance, blue above it (darker = further above)."""
    f = above_chance(value, chance)
    if not np.isfinite(f):
        return qcolor(PANEL)
    if f <= 0:
        return qcolor(AT_CHANCE)
    lo, hi = qcolor(SCALE_LOW), qcolor(SCALE_HIGH)
    f = min(f, 1.0)
    return QtGui.QColor(round(lo.red() + f * (hi.red() - lo.red())), round(lo.green() + f * (hi.green() - lo.green())),
                        round(lo.blue() + f * (hi.blue() - lo.blue())))


class SyncMatrix(QtWidgets.QWidget):
    """Heatmap of every pair's synchrony now, relative to chance, with its legend; a click selects a pair."""

    pair_clicked = QtCore.Signal(tuple)

    def __init__(self, participants, parent=None):
        super().__init__(parent)
        self.participants = list(participants)
        n = len(self.participants)
        self.matrix = np.full((n, n), np.nan)
        self.chance = np.full((n, n), np.nan)
        self.states: dict = {}
        self.selected: tuple | None = None
        self.painted: list = []
        cell = 30 if n <= 4 else 22 if n <= 8 else 17
        self.setMinimumSize(44 + cell * n, self.legend_height() + 50 + cell * n)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Minimum)
        self.setToolTip("Synchrony now of every pair (combined heart + skin, last 5 s of windows), against chance:\n"
                        "grey = at or below what two people who are not interacting reach, blue = above it "
                        "(darker = closer to r = 1).\nA frame marks a pair the detector flags. Click a cell to "
                        "show that pair.")
        self._key = None

    def update_view(self, snap) -> None:
        """Show the snapshot's synchrony matrix and pair states; repaints only on change."""
        states = {tuple(ps["pair"]): ps["state"] for ps in snap.pair_states}
        chance = getattr(snap, "chance_matrix", np.full_like(snap.matrix, np.nan))
        key = (np.round(np.nan_to_num(snap.matrix, nan=-9), 2).tobytes(),
               np.round(np.nan_to_num(chance, nan=-9), 2).tobytes(), tuple(sorted(states.items())))
        if key == self._key:
            return
        self._key = key
        self.matrix, self.chance, self.states = snap.matrix, chance, states
        self.update()

    def set_selected(self, pair) -> None:
        """Outline the selected pair's cells (None: none)."""
        self.selected = None if pair is None else tuple(pair)
        self.update()

    # -- geometry ------------------------------------------------------------------------------------------
    def _font(self, px: float) -> QtGui.QFont:
        f = QtGui.QFont(self.font())
        f.setPixelSize(int(max(9, min(15, px))))
        return f

    def legend_height(self) -> int:
        """Height of the legend under the matrix, in pixels."""
        return 40

    def _layout(self):
        """Matrix (square cells, labels left and top), the legend under it.

        Returns ``(r, cell, origin, label_w, label_f, col_f, rotated)``: the inner rectangle, the cell size, the
        top-left corner of the cells, the width of the row labels and their font, the column labels' font and
        whether they are turned on their side. Every column gets its label: in the row labels' type where it fits
        the cell, else in smaller type (down to 9 px), else turned 90 degrees (a 12-person group's ``P10``).
        """
        n = max(1, len(self.participants))
        r = QtCore.QRectF(self.rect()).adjusted(8, 6, -8, -6)
        label_f = self._font(12)
        fm = QtGui.QFontMetricsF(label_f)
        label_w = max(fm.horizontalAdvance(p) for p in self.participants) + 10

        def cell_for(top_h: float) -> float:
            avail_h = r.height() - 20 - top_h - self.legend_height()
            return max(8.0, min((r.width() - label_w) / n, avail_h / n, 72.0))

        def widest(f: QtGui.QFont) -> float:
            fmf = QtGui.QFontMetricsF(f)
            return max(fmf.horizontalAdvance(p) for p in self.participants)

        top_h = fm.height() + 4
        cell = cell_for(top_h)
        col_f, rotated = label_f, False
        if widest(label_f) > cell - 1:
            for px in range(label_f.pixelSize() - 1, 8, -1):   # smaller type first ...
                f = self._font(px)
                if widest(f) <= cell - 1:
                    col_f = f
                    break
            else:                                               # ... else turned on its side
                rotated = True
                top_h = widest(label_f) + 6
                cell = cell_for(top_h)
                px = label_f.pixelSize()
                while px > 9 and QtGui.QFontMetricsF(self._font(px)).height() > cell:
                    px -= 1
                col_f = self._font(px)
        origin = QtCore.QPointF(r.left() + label_w, r.top() + 20 + top_h)
        return r, cell, origin, label_w, label_f, col_f, rotated

    def cell_at(self, pos: QtCore.QPointF):
        """The pair under a point (None off the matrix or on the diagonal)."""
        _, cell, origin, *_ = self._layout()
        x = int((pos.x() - origin.x()) // cell)
        y = int((pos.y() - origin.y()) // cell)
        n = len(self.participants)
        if 0 <= x < n and 0 <= y < n and x != y and pos.x() >= origin.x() and pos.y() >= origin.y():
            a, b = sorted((x, y))
            return (self.participants[a], self.participants[b])
        return None

    def mousePressEvent(self, event):  # noqa: N802
        pair = self.cell_at(event.position())
        if pair is not None:
            self.pair_clicked.emit(pair)

    # -- painting ------------------------------------------------------------------------------------------
    def _text(self, p: QtGui.QPainter, rect: QtCore.QRectF, flags, text: str) -> None:
        """Draw ``text`` in ``rect``, recording whether it fits."""
        w = QtGui.QFontMetricsF(p.font()).horizontalAdvance(text)
        self.painted.append((text, rect.width(), w))
        p.drawText(rect, flags, text)

    def paintEvent(self, event):  # noqa: N802
        self.painted = []
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        r, cell, origin, label_w, label_f, col_f, rotated = self._layout()
        n = len(self.participants)
        left = QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter
        centre = QtCore.Qt.AlignmentFlag.AlignCenter
        p.setPen(QtGui.QPen(qcolor(GRID)))
        p.setBrush(qcolor(PANEL))
        p.drawRoundedRect(QtCore.QRectF(self.rect()).adjusted(1, 1, -1, -1), 8, 8)
        p.setFont(self._font(12))
        p.setPen(qcolor(MUTED))
        self._text(p, QtCore.QRectF(r.left(), r.top(), r.width(), 18), left,
                   "synchrony now (r, heart + skin)" if QtGui.QFontMetricsF(p.font()).horizontalAdvance(
                       "synchrony now (r, heart + skin)") <= r.width() else "synchrony now (r)")
        top_h = origin.y() - r.top() - 20
        p.setPen(qcolor(MUTED))
        for i, who in enumerate(self.participants):
            p.setFont(label_f)
            self._text(p, QtCore.QRectF(origin.x() - label_w, origin.y() + i * cell, label_w - 5, cell),
                       QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter, who)
            p.setFont(col_f)   # every column its label (see _layout)
            if rotated:   # read bottom to top, ending just above its column
                p.save()
                p.translate(origin.x() + i * cell, origin.y() - 3)
                p.rotate(-90)
                self._text(p, QtCore.QRectF(0, 0, top_h - 4, cell - 1.5), left, who)
                p.restore()
            else:
                self._text(p, QtCore.QRectF(origin.x() + i * cell, origin.y() - top_h, cell - 1.5, top_h), centre, who)
        num_f = self._font(cell * 0.3)
        show_num = cell >= 30 and QtGui.QFontMetricsF(num_f).horizontalAdvance("\u25B2 .00") <= cell - 2
        for i in range(n):
            for j in range(n):
                rect = QtCore.QRectF(origin.x() + j * cell, origin.y() + i * cell, cell - 1.5, cell - 1.5)
                if i == j:
                    p.setPen(QtCore.Qt.PenStyle.NoPen)
                    p.setBrush(qcolor("#F3F4F6"))
                    p.drawRect(rect)
                    continue
                v, c = float(self.matrix[i, j]), float(self.chance[i, j])
                a, b = sorted((i, j))
                pair = (self.participants[a], self.participants[b])
                state = self.states.get(pair)
                p.setPen(QtCore.Qt.PenStyle.NoPen)
                p.setBrush(cell_colour(v, c))
                p.drawRect(rect)
                if state in FRAMED:
                    p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
                    p.setPen(QtGui.QPen(qcolor(STATE_COLOURS[state]), 3 if state == "possible_rupture" else 2))
                    p.drawRect(rect.adjusted(1.5, 1.5, -1.5, -1.5))
                if self.selected == pair:
                    p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
                    p.setPen(QtGui.QPen(qcolor(INK), 1.5, QtCore.Qt.PenStyle.DashLine))
                    p.drawRect(rect.adjusted(0.5, 0.5, -0.5, -0.5))
                sym = STATE_SYMBOLS.get(state, "") if state in FRAMED else ""
                txt = ""
                if show_num and np.isfinite(v):
                    txt = f"{v:.2f}".replace("0.", ".")
                if sym and (show_num or cell >= 14):
                    txt = f"{sym} {txt}".strip() if show_num else sym
                if txt:
                    p.setFont(num_f if show_num else self._font(cell * 0.7))
                    dark = cell_colour(v, c).lightnessF() < 0.5
                    p.setPen(qcolor("#FFFFFF" if dark else (STATE_TEXT.get(state, INK) if sym else INK)))
                    self._text(p, rect, centre, txt)
        self._paint_legend(p, QtCore.QRectF(r.left(), origin.y() + n * cell + 8, r.width(), self.legend_height()))
        p.end()

    def _paint_legend(self, p: QtGui.QPainter, box: QtCore.QRectF) -> None:
        """The colour scale with chance marked: ``[grey] ≤ chance | chance [light ... dark] 1``, and the frame."""
        f = self._font(11)
        p.setFont(f)
        fm = QtGui.QFontMetricsF(f)
        left = QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter
        h = 12.0
        y = box.top()
        sw = QtCore.QRectF(box.left(), y, 14, h)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(qcolor(AT_CHANCE))
        p.drawRect(sw)
        x = sw.right() + 4
        label = "\u2264 chance"
        p.setPen(qcolor(MUTED))
        self._text(p, QtCore.QRectF(x, y - 2, fm.horizontalAdvance(label) + 2, h + 4), left, label)
        x += fm.horizontalAdvance(label) + 12
        grad_w = max(40.0, box.right() - x - fm.horizontalAdvance("1") - 6)
        grad = QtGui.QLinearGradient(x, 0, x + grad_w, 0)
        grad.setColorAt(0.0, qcolor(SCALE_LOW))
        grad.setColorAt(1.0, qcolor(SCALE_HIGH))
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(QtGui.QBrush(grad))
        bar = QtCore.QRectF(x, y, grad_w, h)
        p.drawRect(bar)
        p.setPen(QtGui.QPen(qcolor(INK), 2))
        p.drawLine(QtCore.QPointF(x, y - 2), QtCore.QPointF(x, y + h + 2))   # chance, marked
        p.setPen(qcolor(MUTED))
        self._text(p, QtCore.QRectF(bar.right() + 4, y - 2, fm.horizontalAdvance("1") + 2, h + 4), left, "1")
        under = QtCore.QRectF(x - 2, y + h + 1, grad_w, fm.height())
        self._text(p,
                   QtCore.QRectF(under.left(), under.top(), fm.horizontalAdvance("\u25B4 chance") + 2, under.height()),
                   left, "\u25B4 chance")
        frame = f"{STATE_SYMBOLS['possible_rupture']} frame: flagged"
        fw = fm.horizontalAdvance(frame)
        if fw + fm.horizontalAdvance("\u25B4 chance") + 16 <= grad_w:
            p.setPen(qcolor(STATE_TEXT["possible_rupture"]))
            self._text(p, QtCore.QRectF(bar.right() - fw - 2, under.top(), fw + 2, under.height()), left, frame)

    def painted_clipped(self) -> list:
        """Texts painted wider than their room in the last paint (for tests; should be empty)."""
        return [(t, room, w) for t, room, w in self.painted if w > room + 0.5]

