"""Group view: the pairwise synchrony matrix and each person's connectedness."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from .style import GRID, INK, MUTED, OKABE_ITO, PANEL, STATE_COLOURS, STATE_SYMBOLS, qcolor

#: r range of the colour scale.
R_RANGE = (-0.2, 1.0)
#: Connectedness this far below the mean of the others reads as "drifting away".
DRIFT_AWAY_MARGIN = 0.25


def drifting_away(participants, connectedness, episodes, states: dict | None = None) -> list[str]:
    """Who is drifting away from the group.

    A person is drifting away when an open episode names them alone (the
    detector attributes a pair's drop to the member most of whose pairs are
    dropping), or when their connectedness lies more than
    :data:`DRIFT_AWAY_MARGIN` below the mean of the others'.

    Parameters
    ----------
    participants : list of str
    connectedness : ndarray, shape (n_people,)
    episodes : list of dict
        Snapshot episodes.
    states : dict | None
        ``pair -> detector state``; when given, only pairs still drifting or in a possible rupture count
        (a pair that is repairing is coming back).
    """
    out = set()
    for ep in episodes:
        if ep.get("open") and not ep.get("repaired") and len(ep.get("people", [])) == 1 and ep.get("review") != "dismiss":
            if states is None or states.get(tuple(ep["pair"])) in ("drifting", "possible_rupture"):
                out.add(ep["people"][0])
    c = np.asarray(connectedness, dtype=float)
    if c.size >= 3 and np.isfinite(c).sum() >= 3:
        for i, who in enumerate(participants):
            others = np.delete(c, i)
            if np.isfinite(c[i]) and np.nanmean(others) - c[i] > DRIFT_AWAY_MARGIN:
                out.add(who)
    return [p for p in participants if p in out]


class SyncMatrix(QtWidgets.QWidget):
    """Heatmap of current combined synchrony per pair, plus connectedness bars per person.

    Cells of pairs in a possible rupture get a vermillion frame and a triangle;
    people drifting away get the words "drifting away".
    """

    pair_clicked = QtCore.Signal(tuple)

    def __init__(self, participants, parent=None):
        super().__init__(parent)
        self.participants = list(participants)
        n = len(self.participants)
        self.matrix = np.full((n, n), np.nan)
        self.connectedness = np.full(n, np.nan)
        self.states = {}
        self.away: list[str] = []
        self.cmap = pg.colormap.get("cividis")
        self.setMinimumSize(260, 150)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)
        self._key = None

    def update_view(self, snap) -> None:
        states = {tuple(ps["pair"]): ps["state"] for ps in snap.pair_states}
        away = drifting_away(self.participants, snap.connectedness, snap.episodes, states)
        key = (np.round(np.nan_to_num(snap.matrix, nan=-9), 2).tobytes(),
               np.round(np.nan_to_num(snap.connectedness, nan=-9), 2).tobytes(), tuple(sorted(states.items())), tuple(away))
        if key == self._key:
            return
        self._key = key
        self.matrix, self.connectedness, self.states, self.away = snap.matrix, snap.connectedness, states, away
        self.update()

    def _layout(self):
        """Matrix on top (square cells), connectedness bars under it."""
        n = max(1, len(self.participants))
        r = QtCore.QRectF(self.rect()).adjusted(8, 6, -8, -6)
        label_w = 34.0
        bars_h = n * 20.0 + 24
        cell = max(8.0, min((r.width() - label_w) / n, (r.height() - 22 - bars_h) / n, 90.0))
        origin = QtCore.QPointF(r.left() + label_w, r.top() + 20)
        return r, cell, origin, label_w

    def mousePressEvent(self, event):  # noqa: N802
        _, cell, origin, _ = self._layout()
        x = int((event.position().x() - origin.x()) // cell)
        y = int((event.position().y() - origin.y()) // cell)
        n = len(self.participants)
        if 0 <= x < n and 0 <= y < n and x != y:
            a, b = sorted((x, y))
            self.pair_clicked.emit((self.participants[a], self.participants[b]))

    def paintEvent(self, event):  # noqa: N802
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        r, cell, origin, label_w = self._layout()
        n = len(self.participants)
        p.setPen(QtGui.QPen(qcolor(GRID)))
        p.setBrush(qcolor(PANEL))
        p.drawRoundedRect(QtCore.QRectF(self.rect()).adjusted(1, 1, -1, -1), 8, 8)
        f = QtGui.QFont(self.font())
        f.setPixelSize(int(max(10, min(15, cell * 0.3))))
        p.setFont(f)
        p.setPen(qcolor(MUTED))
        p.drawText(QtCore.QRectF(r.left(), r.top(), r.width(), 18), QtCore.Qt.AlignmentFlag.AlignLeft,
                   "synchrony now (r)")
        for i, who in enumerate(self.participants):
            p.drawText(QtCore.QRectF(origin.x() - label_w, origin.y() + i * cell, label_w - 4, cell),
                       QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter, who)
        lo, hi = R_RANGE
        for i in range(n):
            for j in range(n):
                rect = QtCore.QRectF(origin.x() + j * cell + 1, origin.y() + i * cell + 1, cell - 2, cell - 2)
                if i == j:
                    p.setBrush(qcolor("#F3F4F6"))
                    p.setPen(QtCore.Qt.PenStyle.NoPen)
                    p.drawRect(rect)
                    continue
                v = self.matrix[i, j]
                if np.isfinite(v):
                    c = self.cmap.map((np.clip(v, lo, hi) - lo) / (hi - lo), mode="qcolor")
                else:
                    c = qcolor("#E5E7EB")
                p.setBrush(c)
                p.setPen(QtCore.Qt.PenStyle.NoPen)
                p.drawRect(rect)
                a, b = sorted((i, j))
                state = self.states.get((self.participants[a], self.participants[b]), "calibrating")
                if state in ("possible_rupture", "drifting", "repairing"):
                    p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
                    p.setPen(QtGui.QPen(qcolor(STATE_COLOURS[state]), 3 if state == "possible_rupture" else 2))
                    p.drawRect(rect.adjusted(1.5, 1.5, -1.5, -1.5))
                if cell >= 26:
                    txt = "" if not np.isfinite(v) else f"{v:.2f}".replace("0.", ".")
                    if state == "possible_rupture":
                        txt = f"{STATE_SYMBOLS[state]} {txt}"
                    lum = c.lightnessF() if np.isfinite(v) else 1.0
                    p.setPen(qcolor("#FFFFFF" if lum < 0.5 else INK))
                    p.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, txt)
        # connectedness bars, one row per person
        top = origin.y() + n * cell + 10
        p.setPen(qcolor(MUTED))
        p.setFont(f)
        p.drawText(QtCore.QRectF(r.left(), top, r.width(), 18), QtCore.Qt.AlignmentFlag.AlignLeft,
                   "connectedness")
        top += 20
        fb = QtGui.QFont(f)
        fb.setBold(True)
        word_w = QtGui.QFontMetricsF(fb).horizontalAdvance("\u25BC drifting away") + 8
        track_w = max(20.0, r.right() - origin.x() - word_w)
        row_h = 20.0
        for i, who in enumerate(self.participants):
            v = self.connectedness[i] if i < self.connectedness.size else np.nan
            y = top + i * row_h
            p.setPen(qcolor(MUTED))
            p.setFont(f)
            p.drawText(QtCore.QRectF(r.left(), y, label_w - 4, row_h),
                       QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter, who)
            h = 12.0
            track = QtCore.QRectF(origin.x(), y + (row_h - h) / 2, track_w, h)
            p.setPen(QtCore.Qt.PenStyle.NoPen)
            p.setBrush(qcolor("#EEF0F3"))
            p.drawRoundedRect(track, 3, 3)
            away = who in self.away
            if np.isfinite(v):
                frac = float(np.clip((v - lo) / (hi - lo), 0.02, 1))
                p.setBrush(qcolor(OKABE_ITO["vermillion"] if away else OKABE_ITO["blue"]))
                p.drawRoundedRect(QtCore.QRectF(track.left(), track.top(), track.width() * frac, h), 3, 3)
            if away:
                p.setPen(qcolor("#A33F00"))
                p.setFont(fb)
                p.drawText(QtCore.QRectF(track.right() + 8, y, word_w, row_h),
                           QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter,
                           "\u25BC drifting away")
        p.end()
