"""pyqtgraph building blocks shared by the trace and synchrony views.

Patterns (pyqtgraph ``scrollingPlots.py`` / ``PlotSpeedTest.py``): items are
created once and updated with ``setData``; plots have fixed ranges, clip to the
view and downsample automatically; nothing auto-ranges on a frame.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from .style import GRID, INK, MUTED, fmt_time, qcolor


class TimeAxis(pg.AxisItem):
    """Bottom axis labelled in session time (``m:ss``)."""

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        return [fmt_time(v) for v in values]


def make_plot(show_time: bool = True, left_width: int = 44) -> pg.PlotItem:
    """A quiet, non-interactive plot for streaming data."""
    plot = pg.PlotItem(axisItems={"bottom": TimeAxis(orientation="bottom")})
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    plot.vb.disableAutoRange()
    axis_pen = pg.mkPen(GRID)
    for name in ("left", "bottom"):
        ax = plot.getAxis(name)
        ax.setPen(axis_pen)
        ax.setTextPen(pg.mkPen(MUTED))
    plot.getAxis("left").setWidth(left_width)
    if not show_time:
        plot.hideAxis("bottom")
    plot.layout.setContentsMargins(0, 0, 4, 0)
    return plot


def hatch_brush(rgba) -> QtGui.QBrush:
    """A diagonal hatch (signal loss): a texture, not a colour, so it never reads as a rupture."""
    return QtGui.QBrush(qcolor(rgba), QtCore.Qt.BrushStyle.BDiagPattern)


class SpanSet:
    """Vertical shaded spans on one plot, keyed, created once and moved when they change.

    Parameters
    ----------
    plot : pyqtgraph.PlotItem
    z : float
        Z value (below the curves).
    """

    def __init__(self, plot: pg.PlotItem, z: float = -10):
        self.plot = plot
        self.z = z
        self.items: dict = {}
        self._state: dict = {}

    def sync(self, spans: dict) -> None:
        """Make the plot show exactly ``spans``: ``key -> (x0, x1, brush_key, brush)``."""
        for key in list(self.items):
            if key not in spans:
                self.plot.removeItem(self.items.pop(key))
                self._state.pop(key, None)
        for key, (x0, x1, brush_key, brush) in spans.items():
            item = self.items.get(key)
            if item is None:
                item = pg.LinearRegionItem((x0, x1), orientation="vertical", movable=False, brush=brush,
                                           pen=pg.mkPen(None))
                item.setZValue(self.z)
                for line in item.lines:
                    line.setPen(pg.mkPen(None))
                self.plot.addItem(item, ignoreBounds=True)
                self.items[key] = item
                self._state[key] = ((x0, x1), brush_key)
                continue
            old_region, old_brush = self._state[key]
            if old_region != (x0, x1):
                item.setRegion((x0, x1))
            if old_brush != brush_key:
                item.setBrush(brush)
                item.update()
            self._state[key] = ((x0, x1), brush_key)


class MarkerSet:
    """Vertical marker lines (facilitator markers) on one plot, optionally labelled."""

    def __init__(self, plot: pg.PlotItem, labels: bool = True):
        self.plot = plot
        self.labels = labels
        self.items: dict = {}

    def sync(self, markers: dict) -> None:
        """``key -> (t, colour, text)``; markers never move, so only adds and removals."""
        for key in list(self.items):
            if key not in markers:
                self.plot.removeItem(self.items.pop(key))
        for key, (t, colour, text) in markers.items():
            if key in self.items:
                continue
            pen = pg.mkPen(colour, width=1.5, style=QtCore.Qt.PenStyle.DashLine)
            opts = {}
            if self.labels and text:
                opts = dict(label=text, labelOpts={"position": 0.92, "color": INK, "fill": (255, 255, 255, 200),
                                                   "anchors": [(0, 0), (0, 0)]})
            line = pg.InfiniteLine(pos=t, angle=90, movable=False, pen=pen, **opts)
            line.setZValue(5)
            self.plot.addItem(line, ignoreBounds=True)
            self.items[key] = line
