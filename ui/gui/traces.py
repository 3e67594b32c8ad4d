"""Per-person HR and EDA traces with a signal-status badge and the person's arousal state.

The arousal state (:data:`ui.model.AROUSAL_WORDS`: "moving away (climbing)" /
"moving away (flattening)" / "with the group" / "learning baseline") is
shown under the badges, and the seconds in which the person was moving away
are shaded on their traces (orange: climbing, purple: flattening), so a flag
that comes from one person's arousal rather than from synchrony can be seen.

Each column (heart rate, skin conductance) has one time axis, under its bottom
plot; the plots above follow it (x linked), and its labels keep at least
:data:`MIN_LABEL_GAP_PX` between them, so a narrow column of a 4-person window
stays readable.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui

from .plots import SpanSet, TimeAxis, hatch_brush, make_plot
from ui.model import AROUSAL_STATES, AROUSAL_WORDS

from .style import AROUSAL_STYLE, PANEL, LOSS_HATCH, MODALITY_COLOURS, MUTED, STATUS_STYLE

#: Units and sensible minimum y spans of the traces.
UNITS = {"hr": "bpm", "eda": "\u00b5S"}
MIN_SPAN = {"hr": 12.0, "eda": 0.6}
TRACE_NAMES = {"hr": "heart rate", "eda": "skin conductance"}
#: Least room (pixels) between two time labels of a column's axis.
MIN_LABEL_GAP_PX = 8.0
#: Time-label steps (s) a column's axis chooses from: the smallest that leaves room between its labels.
LABEL_STEPS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200)


class ColumnTimeAxis(TimeAxis):
    """Session-time axis (``m:ss``) whose labels never run into each other, however narrow the column."""

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802, N803 (Qt naming)
        span = abs(maxVal - minVal)
        if span == 0 or size <= 0:
            return []
        fm = QtGui.QFontMetricsF(self.style.get("tickFont") or self.font())
        widest = max(fm.horizontalAdvance(s) for s in self.tickStrings([minVal, maxVal], 1.0, 1.0))
        need = span * (widest + MIN_LABEL_GAP_PX) / size  # seconds between two labels
        step = next((s for s in LABEL_STEPS_S if s >= need), LABEL_STEPS_S[-1] * int(np.ceil(need / LABEL_STEPS_S[-1])))
        return [(float(step), 0.0)]


def _column_axis(plot: pg.PlotItem) -> None:
    """Give a column's bottom plot a :class:`ColumnTimeAxis` styled as :func:`ui.gui.plots.make_plot`'s."""
    old = plot.getAxis("bottom")
    axis = ColumnTimeAxis(orientation="bottom")
    plot.setAxisItems({"bottom": axis})
    axis.setPen(old.pen())
    axis.setTextPen(old.textPen())


def display_status(status: str, open_loss_reason: str | None) -> str:
    """The badge word: acquisition status, overridden by an ongoing loss the pipeline sees.

    A stream can be connected (acquisition ``ok``) while the pipeline finds its
    samples unusable (electrode off, motion): that shows as ``noisy``; no data
    at all shows as ``lost``.
    """
    if open_loss_reason is None or status in ("lost", "absent", "no data"):
        return status
    return "lost" if open_loss_reason == "no_data" else "noisy"


def badge_html(modality: str, status: str) -> str:
    colour, symbol = STATUS_STYLE.get(status, STATUS_STYLE["absent"])
    word = {"hr": "HR", "eda": "EDA"}[modality]
    return (f"<span style='color:{colour}; font-size:13pt'>{symbol}</span>"
            f"<span style='color:{MUTED}'>&nbsp;{word}&nbsp;</span><b style='color:{colour}'>{status}</b>")


def arousal_html(state: str) -> str:
    """The header line of a person's arousal state (symbol + words, two lines when moving away)."""
    colour, symbol, _ = AROUSAL_STYLE.get(state, AROUSAL_STYLE["unknown"])
    words = AROUSAL_WORDS.get(state, state)
    if state in ("climbing", "flattening"):
        return (f"<span style='color:{colour}'>{symbol}&nbsp;<b>moving away</b></span><br>"
                f"<span style='color:{colour}'>&nbsp;&nbsp;&nbsp;({state})</span>")
    return f"<span style='color:{colour}'>{symbol}&nbsp;{words}</span>"


def arousal_runs(t: np.ndarray, codes: np.ndarray, step_s: float = 1.0) -> list[tuple[float, float, str]]:
    """Spans in which a person was moving away: ``[(t0, t1, "climbing" | "flattening"), ...]``.

    Parameters
    ----------
    t : ndarray, shape (n,)
        Time of each second's value (the end of that second).
    codes : ndarray, shape (n,)
        State codes into :data:`dsp.divergence.AROUSAL_STATES`.
    step_s : float
        Seconds each value covers (it covers ``(t - step_s, t]``).
    """
    codes = np.asarray(codes)
    ok = np.isfinite(t)
    t, codes = np.asarray(t, float)[ok], codes[ok]
    out = []
    if not t.size:
        return out
    edges = np.flatnonzero(np.diff(codes.astype(int)) != 0) + 1
    for a, b in zip(np.r_[0, edges], np.r_[edges, codes.size]):
        c = int(codes[a])
        if c >= 2:
            out.append((float(t[a] - step_s), float(t[b - 1]), AROUSAL_STATES[c]))
    return out


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
        self.arousal_state = {p: "unknown" for p in self.participants}
        self._yrange = {}
        n = len(self.participants)
        for r, person in enumerate(self.participants):
            header = self.addLabel("", row=r, col=0)
            header.setFixedWidth(104)
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
                if r == n - 1:
                    _column_axis(plot)
            self._set_header(person, {m: "absent" for m in self.modalities}, "unknown", force=True)
        # one time axis per column: the plots above follow the bottom one's x range
        for m in self.modalities:
            bottom = self.plots[(self.participants[-1], m)]
            for person in self.participants[:-1]:
                self.plots[(person, m)].setXLink(bottom)
        self.setMinimumHeight(84 * n + 30)

    def _set_header(self, person: str, states: dict, arousal: str, force: bool = False) -> None:
        key = tuple(states.get(m, "absent") for m in self.modalities)
        if not force and self.badge_state.get(person) == key and self.arousal_state.get(person) == arousal:
            return
        self.badge_state[person] = key
        self.arousal_state[person] = arousal
        lines = [f"<b style='font-size:15pt'>{person}</b>"]
        lines += [badge_html(m, states.get(m, "absent")) for m in self.modalities]
        lines.append(arousal_html(arousal))
        self.headers[person].setText("<br>".join(lines))

    def arousal_words(self, person: str) -> str:
        """The arousal words shown for a person (for tests and the status line)."""
        return AROUSAL_WORDS[self.arousal_state[person]]

    def arousal_colour(self, person: str) -> str:
        """The colour of a person's arousal words (for tests)."""
        return AROUSAL_STYLE[self.arousal_state[person]][0]

    def arousal_spans(self, person: str, modality: str | None = None) -> dict:
        """``key -> ((t0, t1), state)`` of the moving-away shading drawn on a person's trace (for tests)."""
        m = modality or self.modalities[0]
        return {k: st for k, st in self.spans[(person, m)]._state.items() if k[0] == "arousal"}

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
        at, _al, ac = getattr(snap, "arousal", (np.zeros(0), None, np.zeros((0, 0))))
        step = float(np.median(np.diff(at))) if at.size > 1 else 1.0
        people_arousal = getattr(snap, "people_arousal", {}) or {}
        signal = snap.signal_states()  # a replay's source reports no device status: from the grid
        for i, person in enumerate(self.participants):
            states = {m: display_status(signal.get(person, {}).get(m, "absent"), open_loss.get((person, m)))
                      for m in self.modalities}
            self._set_header(person, states, people_arousal.get(person, {}).get("state", "unknown"))
            away = {}
            if ac.shape[0] > i:
                for t0, t1, st in arousal_runs(at, ac[i], step):
                    if t1 >= x0 and t0 <= x1:
                        # a run cut by the start of the snapshot keeps one key while the view scrolls
                        start = "cut" if t0 <= at[0] - step + 1e-6 else round(t0, 3)
                        away[("arousal", st, start)] = (t0, t1, st, pg.mkBrush(AROUSAL_STYLE[st][2]))
            for m in self.modalities:
                plot = self.plots[(person, m)]
                t, vals = snap.grid.get(m, (np.zeros(0), np.zeros((len(self.participants), 0))))
                y = vals[i] if vals.shape[0] > i else np.zeros(0)
                self.curves[(person, m)].setData(t, y)
                self._adapt_y(person, m, y)
                if i == len(self.participants) - 1:
                    plot.setXRange(x0, x1, padding=0)  # the column's plots above follow (x linked)
                self.spans[(person, m)].sync({**away, **loss_spans.get((person, m), {})})

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
