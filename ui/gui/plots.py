"""pyqtgraph building blocks shared by the trace and synchrony views.

Patterns (pyqtgraph ``scrollingPlots.py`` / ``PlotSpeedTest.py``): items are
created once and updated with ``setData``; plots have fixed ranges, clip to the
view and downsample automatically; nothing auto-ranges on a frame.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from .style import GRID, INK, MUTED, fmt_time, qcolor

__all__ = [
    "MIN_LABEL_GAP_PX", "LABEL_STEPS_S", "TimeTicks", "TimeAxis", "FittedAxis", "make_plot", "StreamCurve",
    "hatch_brush", "SpanSet", "MarkerSet"
]

#: Least room (pixels) between two time labels.
MIN_LABEL_GAP_PX = 8.0
#: Time-label steps (s) the axes choose from: the smallest that leaves room between labels on the narrowest axis.
LABEL_STEPS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200)


class TimeTicks:
    """One time-tick step shared by every time axis of a window.

    So a person's trace and a pair's synchrony
    are labelled at the same times (2:00, 2:30 ... on both) and can be lined up by eye.

    :meth:`fit` picks the smallest step of :data:`LABEL_STEPS_S` whose labels keep
    :data:`MIN_LABEL_GAP_PX` between them on the narrowest axis; axes made with this object use it.
    """

    def __init__(self):
        self.step: float | None = None
        self.axes: list = []

    def fit(self, x0: float, x1: float) -> float | None:
        """Choose the step for the view ``x0 .. x1`` (s) from the axes' current widths; returns it."""
        span_s = x1 - x0
        widths = [a.geometry().width() for a in self.axes if a.isVisible() and a.geometry().width() > 20]
        if not widths or span_s <= 0:
            return self.step
        ax = self.axes[0]
        fm = QtGui.QFontMetricsF(ax.style.get("tickFont") or ax.font())
        widest = max(fm.horizontalAdvance(fmt_time(x)) for x in (x0, x1))
        need = span_s * (widest + MIN_LABEL_GAP_PX) / min(widths)
        step = next((float(s) for s in LABEL_STEPS_S if s >= need),
                    float(LABEL_STEPS_S[-1] * math.ceil(need / LABEL_STEPS_S[-1])))
        if step != self.step:
            self.step = step
            for a in self.axes:
                a.picture = None
                a.update()
        return step


class TimeAxis(pg.AxisItem):
    """Bottom axis labelled in session time (``m:ss``); with a :class:`TimeTicks`, at its shared step."""

    def __init__(self, *args, ticks: TimeTicks | None = None, **kw):
        super().__init__(*args, **kw)
        self.ticks = ticks
        if ticks is not None:
            ticks.axes.append(self)

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        return [fmt_time(v) for v in values]

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802, N803 (Qt naming)
        if self.ticks is not None and self.ticks.step:
            return [(self.ticks.step, 0.0)]
        span = abs(maxVal - minVal)
        if span == 0 or size <= 0:
            return []
        fm = QtGui.QFontMetricsF(self.style.get("tickFont") or self.font())
        widest = max(fm.horizontalAdvance(s) for s in self.tickStrings([minVal, maxVal], 1.0, 1.0))
        need = span * (widest + MIN_LABEL_GAP_PX) / size
        step = next((s for s in LABEL_STEPS_S if s >= need), LABEL_STEPS_S[-1] * math.ceil(need / LABEL_STEPS_S[-1]))
        return [(float(step), 0.0)]


class FittedAxis(pg.AxisItem):
    """Left (value) axis whose labels never run into each other nor past the plot's edge.

    Ticks at round values ``k * step`` that lie at least half a label's height inside the range; the step is the
    smallest of 1, 2, 2.5, 5 x 10^k that leaves ``1.5`` label heights between labels (a 40-px row shows one or
    two labels instead of four overlapping ones).
    """

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 (Qt naming)
        lo, hi = sorted((float(minVal), float(maxVal)))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or size <= 0:
            return []
        fm = QtGui.QFontMetricsF(self.style.get("tickFont") or self.font())
        lh = fm.height()
        per_px = (hi - lo) / size
        need = 1.5 * lh * per_px
        mag = 10.0 ** math.floor(math.log10(need)) if need > 0 else 1.0
        step = next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= need), 10 * mag)
        margin = 0.5 * lh * per_px
        first = math.ceil((lo + margin) / step) * step
        values = []
        v = first
        while v <= hi - margin + 1e-12 and len(values) < 20:
            values.append(round(v, 10))
            v += step
        return [(step, values)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        digits = next((d for d in range(4) if abs(round(spacing, d) - spacing) < 1e-9 * max(1.0, abs(spacing))), 3)
        return [f"{v:.{digits}f}" for v in values]


def make_plot(show_time: bool = True, left_width: int = 44, ticks: TimeTicks | None = None,
              fitted_y: bool = False) -> pg.PlotItem:
    """A quiet, non-interactive plot for streaming data.

    A quiet, non-interactive plot for streaming data (``ticks``: the window's shared time ticks;
    ``fitted_y``: a :class:`FittedAxis` on the left).
    """
    items = {"bottom": TimeAxis(orientation="bottom", ticks=ticks)}
    if fitted_y:
        items["left"] = FittedAxis(orientation="left")
    plot = pg.PlotItem(axisItems=items)
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
        # no SI prefixes (seconds, bpm, r): without this every range change re-renders each axis label's HTML
        ax.enableAutoSIPrefix(False)
    plot.getAxis("left").setWidth(left_width)
    # the value axis and the title change rarely while the view scrolls every frame: painted from a pixmap
    plot.getAxis("left").setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
    plot.titleLabel.item.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
    if not show_time:
        plot.hideAxis("bottom")
    plot.layout.setContentsMargins(0, 0, 4, 0)
    return plot


class StreamCurve(pg.PlotCurveItem):
    """A :class:`pyqtgraph.PlotCurveItem` for data replaced on every frame in a plot with fixed ranges.

    A plain curve recomputes its data bounds (NaN-aware min/max of x and y, and the pixel size) every time its
    data change, several times per paint; with 50+ curves redrawn 30 times a second that was a third of the
    paint time. Here the bounds are the data's first and last time (the data come in time order) and a fixed,
    generous y extent: the view box clips its children to the view and nothing auto-ranges, so nothing needs
    the data's own y bounds. (Kept within what a view can map to pixels: an "infinite" rect overflows Qt's
    integer rectangles and the view then never repaints.)
    """

    Y_EXTENT = 1e5

    def set_series(self, x: np.ndarray, y: np.ndarray) -> bool:
        """:meth:`setData` unless these are the samples already drawn.

        Same times (count, first, last) and the same values (their NaN-aware sum and count: a synchrony window, once
        computed, never changes; new ones arrive once a second). Keeping the curve keeps its path, so the frames in
        between only scroll it. Returns True when the data were set.
        """
        fin = np.isfinite(y)
        key = (x.size, float(x[0]) if x.size else None, float(x[-1]) if x.size else None,
               int(fin.sum()), float(y[fin].sum()) if fin.any() else 0.0)
        if key == getattr(self, "_series_key", None):
            return False
        self._series_key = key
        self.setData(x, y)
        return True

    def setData(self, *args, **kw):  # noqa: N802 (Qt naming)
        super().setData(*args, **kw)
        x = self.xData
        if x is None or not len(x):
            self._stream_rect = QtCore.QRectF()
        else:
            x0, x1 = float(x[0]), float(x[-1])
            if not (math.isfinite(x0) and math.isfinite(x1)):
                x0, x1 = float(np.nanmin(x)), float(np.nanmax(x))
            self._stream_rect = QtCore.QRectF(x0, -self.Y_EXTENT, max(x1 - x0, 1e-6), 2 * self.Y_EXTENT)

    def boundingRect(self):  # noqa: N802 (Qt naming)
        return getattr(self, "_stream_rect", QtCore.QRectF())

    def dataBounds(self, ax, frac=1.0, orthoRange=None):  # noqa: N803 (pyqtgraph naming)
        return None, None   # never used to range a plot (fixed ranges)


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
