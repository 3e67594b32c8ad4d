"""Per-person HR and EDA traces with a signal-status badge."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from .plots import SpanSet, hatch_brush, make_plot
from .style import PANEL, LOSS_HATCH, MODALITY_COLOURS, MUTED, STATUS_STYLE

#: Units and sensible minimum y spans of the traces.
UNITS = {"hr": "bpm", "eda": "\u00b5S"}
MIN_SPAN = {"hr": 12.0, "eda": 0.6}
TRACE_NAMES = {"hr": "heart rate", "eda": "skin conductance"}


def display_status(status: str, open_loss_reason: str | None) -> str:
    """The badge word: acquisition status, overridden by an ongoing loss the pipeline sees.

    A stream can be connected (acquisition ``ok``) while the pipeline finds its
    samples unusable (electrode off, motion): that shows as ``noisy``; no data
    at all shows as ``lost``.
    """
    if open_loss_reason is None or status in ("lost", "absent"):
        return status
    return "lost" if open_loss_reason == "no_data" else "noisy"


def badge_html(modality: str, status: str) -> str:
    colour, symbol = STATUS_STYLE.get(status, STATUS_STYLE["absent"])
    word = {"hr": "HR", "eda": "EDA"}[modality]
    return (f"<span style='color:{colour}; font-size:13pt'>{symbol}</span>"
            f"<span style='color:{MUTED}'>&nbsp;{word}&nbsp;</span><b style='color:{colour}'>{status}</b>")


class PeopleTraces(pg.GraphicsLayoutWidget):
    """One row per person: a header (name + badges) and a trace per modality.

    Parameters
    ----------
    participants : list of str
    modalities : tuple of str
        ``"hr"`` and/or ``"eda"``.
    """

    def __init__(self, participants, modalities, parent=None):
        super().__init__(parent=parent)
        self.setBackground(PANEL)
        self.participants = list(participants)
        self.modalities = tuple(modalities)
        self.ci.setSpacing(2)
        self.ci.layout.setContentsMargins(2, 2, 2, 2)
        self.headers = {}
        self.plots = {}     # (person, modality) -> PlotItem
        self.curves = {}    # (person, modality) -> PlotCurveItem
        self.spans = {}     # (person, modality) -> SpanSet
        self.markers = {}
        self.badge_state = {}
        self._yrange = {}
        n = len(self.participants)
        for r, person in enumerate(self.participants):
            header = self.addLabel("", row=r, col=0)
            header.setFixedWidth(92)
            self.headers[person] = header
            for c, m in enumerate(self.modalities):
                plot = make_plot(show_time=(r == n - 1), left_width=40)
                if r == 0:
                    plot.setTitle(f"<span style='color:{MUTED}'>{TRACE_NAMES[m]} ({UNITS[m]})</span>", size="9pt")
                self.addItem(plot, row=r, col=1 + c)
                curve = pg.PlotCurveItem(pen=pg.mkPen(MODALITY_COLOURS[m], width=1.0), connect="finite")
                plot.addItem(curve)
                self.plots[(person, m)] = plot
                self.curves[(person, m)] = curve
                self.spans[(person, m)] = SpanSet(plot)
                plot.setYRange(*((55, 100) if m == "hr" else (0, 10)), padding=0)
            self._set_header(person, {m: "absent" for m in self.modalities})
        self.setMinimumHeight(70 * n + 30)

    def _set_header(self, person: str, states: dict) -> None:
        key = tuple(states.get(m, "absent") for m in self.modalities)
        if self.badge_state.get(person) == key:
            return
        self.badge_state[person] = key
        lines = [f"<b style='font-size:15pt'>{person}</b>"]
        lines += [badge_html(m, states.get(m, "absent")) for m in self.modalities]
        self.headers[person].setText("<br>".join(lines))

    def badge(self, person: str, modality: str) -> str:
        """The status word shown for one person's modality (for tests and the headless view)."""
        return self.badge_state[person][self.modalities.index(modality)]

    def update_view(self, snap, x_range, markers: dict) -> None:
        """Redraw from a :class:`ui.model.Snapshot` for the time span ``x_range``."""
        x0, x1 = x_range
        open_loss = {}
        loss_spans = {}
        for rec in snap.signal_loss:
            key = (rec["participant"], rec["modality"])
            end = rec["offset_s"] if rec["offset_s"] is not None else snap.t_now
            if rec["offset_s"] is None:
                open_loss[key] = rec["reason"]
            if end >= x0 and rec["onset_s"] <= x1:
                loss_spans.setdefault(key, {})[("loss", rec["onset_s"])] = (rec["onset_s"], end, "loss", hatch_brush(LOSS_HATCH))
        for i, person in enumerate(self.participants):
            states = {m: display_status(snap.status.get(person, {}).get(m, "absent"), open_loss.get((person, m)))
                      for m in self.modalities}
            self._set_header(person, states)
            for m in self.modalities:
                plot = self.plots[(person, m)]
                t, vals = snap.grid.get(m, (np.zeros(0), np.zeros((len(self.participants), 0))))
                y = vals[i] if vals.shape[0] > i else np.zeros(0)
                self.curves[(person, m)].setData(t, y)
                self._adapt_y(person, m, y)
                plot.setXRange(x0, x1, padding=0)
                self.spans[(person, m)].sync(loss_spans.get((person, m), {}))

    def _adapt_y(self, person: str, m: str, y: np.ndarray) -> None:
        """Slow, hysteretic y range: changes only when the data leave it or use a small part of it."""
        finite = y[np.isfinite(y)]
        if finite.size < 4:
            return
        lo, hi = float(np.percentile(finite, 1)), float(np.percentile(finite, 99))
        span = max(hi - lo, MIN_SPAN[m])
        cur = self._yrange.get((person, m))
        if cur is not None:
            c_lo, c_hi = cur
            inside = lo >= c_lo and hi <= c_hi
            if inside and span > 0.4 * (c_hi - c_lo):
                return
        mid = 0.5 * (lo + hi)
        new = (mid - 0.75 * span, mid + 0.75 * span)
        if m == "eda":
            new = (max(0.0, new[0]), new[1])
        self._yrange[(person, m)] = new
        self.plots[(person, m)].setYRange(*new, padding=0)
