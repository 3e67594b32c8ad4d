"""Per-person HR and EDA traces with signal status, arousal state and tie to the group.

Per-person HR and EDA traces with a signal-status badge, the person's arousal state and, in a group, their
tie to the group.

The arousal state (:data:`attune_monitor.ui.words.AROUSAL_WORDS`: "moving away (climbing)" /
"moving away (flattening)" / "with the group" / "learning baseline") is
shown under the badges, and the seconds in which the person was moving away
are shaded on their traces (orange: climbing, purple: flattening), so a flag
that comes from one person's arousal rather than from synchrony can be seen.

In a group (3+ people) each row leads with the person's tie to the group
(:data:`attune_monitor.ui.words.TIE_WORDS`: "with the group" / "drifting away" / "not measurably in tune" /
"learning baseline") and has a third plot: their mean synchrony with the others over time against its chance
level, with the episodes that name them shaded. The arousal line then only speaks when the person is moving
away, so the row never says "with the group" twice for two different things.

Every plot of the panel shares one x range (linked) and the window's time ticks
(:class:`attune_monitor.ui.gui.plots.TimeTicks`): a person's row lines up in time with the
pair plots. Only the bottom row shows its time axis; the value axes label at
most what fits (:class:`attune_monitor.ui.gui.plots.FittedAxis`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from attune_monitor.ui.model import AROUSAL_STATES
from attune_monitor.ui.words import AROUSAL_WORDS, TIE_WORDS, tie_label

from .plots import MIN_LABEL_GAP_PX, SpanSet, StreamCurve, TimeAxis, hatch_brush, make_plot  # noqa: F401
from .style import (
    AROUSAL_STYLE,
    INK,
    LOSS_HATCH,
    MODALITY_COLOURS,
    MUTED,
    PANEL,
    REPAIRED_FILL,
    RUPTURE_FILL,
    STATUS_STYLE,
    TIE_TEXT,
)

__all__ = [
    "UNITS", "MIN_SPAN", "TRACE_NAMES", "SHORT_NAMES", "Y_CHECK_EVERY", "TIE_RANGE", "display_status", "badge_html",
    "compact_badges_html", "arousal_html", "tie_html", "short_arousal_html", "arousal_runs", "PeopleTraces"
]

#: Units and sensible minimum y spans of the traces.
UNITS = {"hr": "bpm", "eda": "\u00b5S", "tie": "r"}
MIN_SPAN = {"hr": 12.0, "eda": 0.6}
TRACE_NAMES = {"hr": "heart rate", "eda": "skin conductance", "tie": "synchrony with the others"}
#: Shorter column titles, used when the long ones do not fit the column.
SHORT_NAMES = {"hr": "heart", "eda": "skin", "tie": "with the others"}
#: A trace's y range is reconsidered on every this many redraws (see PeopleTraces._adapt_y).
Y_CHECK_EVERY = 8
#: y range of the tie plot (r).
TIE_RANGE = (-0.3, 1.0)


def display_status(status: str, open_loss_reason: str | None) -> str:
    """The badge word: acquisition status, overridden by an ongoing loss the pipeline sees.

    A stream can be connected (acquisition ``ok``) while the pipeline finds its
    samples unusable (electrode off, motion): that shows as ``noisy``; no data
    at all shows as ``lost``.
    """
    if open_loss_reason is None or status in ("lost", "absent", "no data", "connecting"):
        return status
    return "lost" if open_loss_reason == "no_data" else "noisy"


def badge_html(modality: str, status: str) -> str:
    """A person's header badge for one modality: the status symbol, ``HR``/``EDA`` and the status word (rich text)."""
    colour, symbol = STATUS_STYLE.get(status, STATUS_STYLE["absent"])
    word = {"hr": "HR", "eda": "EDA"}[modality]
    return (f"<span style='color:{colour}; font-size:13pt'>{symbol}</span>"
            f"<span style='color:{MUTED}'>&nbsp;{word}&nbsp;</span><b style='color:{colour}'>{status}</b>")


def compact_badges_html(states: dict, modalities) -> str:
    """The signal badges of a group row.

    A coloured symbol per signal, the word only when it is not ok (``"● HR ● EDA"``, ``"✕ HR lost ● EDA"``).
    """
    parts = []
    for m in modalities:
        st = states.get(m, "absent")
        colour, symbol = STATUS_STYLE.get(st, STATUS_STYLE["absent"])
        word = {"hr": "HR", "eda": "EDA"}[m]
        extra = "" if st in ("ok", "recovered", "absent") else f"&nbsp;<b style='color:{colour}'>{st}</b>"
        parts.append(f"<span style='color:{colour}'>{symbol}</span><span "
                     f"style='color:{MUTED}'>&nbsp;{word}</span>{extra}")
    return "&nbsp;&nbsp;".join(parts)


def arousal_html(state: str) -> str:
    """The header line of a person's arousal state (symbol + words, two lines when moving away)."""
    colour, symbol, _ = AROUSAL_STYLE.get(state, AROUSAL_STYLE["unknown"])
    words = AROUSAL_WORDS.get(state, state)
    if state in ("climbing", "flattening"):
        return (f"<span style='color:{colour}'>{symbol}&nbsp;<b>moving away</b></span><br>"
                f"<span style='color:{colour}'>&nbsp;&nbsp;&nbsp;({state})</span>")
    return f"<span style='color:{colour}'>{symbol}&nbsp;{words}</span>"


def tie_html(state: str) -> str:
    """A person's tie to the group, symbol and words in its colour (bold while drifting away)."""
    colour = TIE_TEXT.get(state, MUTED)
    text = tie_label(state).replace(" ", "&nbsp;")
    return f"<span style='color:{colour}'>{'<b>' + text + '</b>' if state == 'drifting_away' else text}</span>"


def short_arousal_html(state: str) -> str:
    """A group row's arousal note: only while the person is moving away (``"↓ flattening"``)."""
    if state not in ("climbing", "flattening"):
        return ""
    colour, symbol, _ = AROUSAL_STYLE[state]
    return f"<span style='color:{colour}'>{symbol}&nbsp;{state}</span>"


def arousal_runs(t: np.ndarray, codes: np.ndarray, step_s: float = 1.0) -> list[tuple[float, float, str]]:
    """Spans in which a person was moving away: ``[(t0, t1, "climbing" | "flattening"), ...]``.

    Parameters
    ----------
    t : ndarray, shape (n,)
        Time of each second's value (the end of that second).
    codes : ndarray, shape (n,)
        State codes into :data:`attune_monitor.dsp.divergence.AROUSAL_STATES`.
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
    """One row per person: a header (name, badges, arousal; in a group their tie first) and a plot per column.

    Parameters
    ----------
    participants : list of str
    modalities : tuple of str
        ``"hr"`` and/or ``"eda"``.
    ticks : ui.gui.plots.TimeTicks | None
        The window's shared time ticks.
    group : bool
        A group's rows: compact two-line headers led by the person's tie, and a "synchrony with the others"
        column.
    """

    def __init__(self, participants, modalities, ticks=None, group: bool = False, parent=None):
        super().__init__(parent=parent)
        self.setBackground(PANEL)
        self.participants = list(participants)
        self.modalities = tuple(modalities)
        self.group = bool(group)
        self.columns = (*self.modalities, "tie") if self.group else self.modalities
        self.ci.setSpacing(2 if not self.group else 1)
        self.ci.layout.setContentsMargins(2, 2, 2, 2)
        self.headers = {}
        self.plots = {}     # (person, column) -> PlotItem
        self.curves = {}    # (person, column) -> PlotCurveItem
        self.spans = {}     # (person, column) -> SpanSet
        self.chance = {}    # person -> chance PlotCurveItem of the tie column
        self.markers = {}
        self.badge_state = {}
        self.arousal_state = {p: "unknown" for p in self.participants}
        self.tie_state = {p: "calibrating" for p in self.participants}
        self._yrange = {}
        self._y_checks: dict = {}
        self._titles = {}
        n = len(self.participants)
        left_w = 34 if self.group else 40
        for r, person in enumerate(self.participants):
            header = self.addLabel("", row=r, col=0, justify="left")
            header.item.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)   # rich text: a pixmap
            self.headers[person] = header
            for c, m in enumerate(self.columns):
                plot = make_plot(show_time=(r == n - 1), left_width=left_w, ticks=ticks, fitted_y=True)
                if r == 0:
                    self._titles[m] = None
                self.addItem(plot, row=r, col=1 + c)
                if m == "tie":
                    curve = StreamCurve(pen=pg.mkPen(INK, width=1.6), connect="finite")
                    ch = StreamCurve(pen=pg.mkPen(MUTED, width=1.0, style=QtCore.Qt.PenStyle.DashLine),
                                          connect="finite")
                    ch.setZValue(4)
                    plot.addItem(ch)
                    self.chance[person] = ch
                    plot.setYRange(*TIE_RANGE, padding=0)
                else:
                    curve = StreamCurve(pen=pg.mkPen(MODALITY_COLOURS[m], width=1.0), connect="finite")
                    plot.setYRange(*((55, 100) if m == "hr" else (0, 10)), padding=0)
                curve.setZValue(5)
                plot.addItem(curve)
                self.plots[(person, m)] = plot
                self.curves[(person, m)] = curve
                self.spans[(person, m)] = SpanSet(plot)
            self._set_header(person, {m: "absent" for m in self.modalities}, "unknown", "calibrating", force=True)
        # one time axis: every plot follows the bottom-left one's x range
        self.master = self.plots[(self.participants[-1], self.columns[0])]
        for plot in self.plots.values():
            if plot is not self.master:
                plot.setXLink(self.master)
        self.header_width = self._fix_header_width()
        self.setMinimumHeight((34 if self.group else 84) * n + 30)
        self._set_titles(force=True)

    # -- headers -----------------------------------------------------------------------------------------
    def _header_html(self, person: str, states: dict, arousal: str, tie: str) -> str:
        if self.group:
            line1 = f"<b style='font-size:12pt'>{person}</b>&nbsp;&nbsp;{tie_html(tie)}"
            line2 = compact_badges_html(states, self.modalities)
            extra = short_arousal_html(arousal)
            if extra:
                wide = self._width(f"<span style='font-size:9pt'>{line2}&nbsp;&nbsp;{extra}</span>")
                # on the badges' line where it fits the header, else on a line of its own
                line2 += ("&nbsp;&nbsp;" if wide <= getattr(self, "header_width", 1e9) - 8 else "<br>") + extra
            return f"<span style='font-size:9pt'>{line1}<br>{line2}</span>"
        lines = [f"<b style='font-size:15pt'>{person}</b>"]
        lines += [badge_html(m, states.get(m, "absent")) for m in self.modalities]
        lines.append(arousal_html(arousal))
        return "<br>".join(lines)

    def _width(self, html: str) -> float:
        """The width of a header text (px)."""
        doc = getattr(self, "_doc", None)
        if doc is None:
            doc = self._doc = QtGui.QTextDocument()
            doc.setDefaultFont(next(iter(self.headers.values())).item.font())
        doc.setHtml(html)
        return doc.idealWidth()

    def _fix_header_width(self) -> int:
        """Fix the header column to the widest text any row can show (no clipping, no jumping layout)."""
        item = next(iter(self.headers.values())).item
        doc = QtGui.QTextDocument()
        doc.setDefaultFont(item.font())
        widest = 0.0
        # the widest rows: every signal in its longest status word, or all well while moving away (an arousal
        # note that does not fit next to bad badges goes on a line of its own: see _header_html)
        cases = [({m: st for m in self.modalities}, "unknown") for st in ("lost", "noisy", "no data")]
        cases += [({m: "ok" for m in self.modalities}, a) for a in ("climbing", "flattening")]
        for person in self.participants:
            for tie in (TIE_WORDS if self.group else ("calibrating",)):
                for states, arousal in cases:
                    doc.setHtml(self._header_html(person, states, arousal, tie))
                    widest = max(widest, doc.idealWidth())
        w = int(np.ceil(widest)) + 8
        for h in self.headers.values():
            h.setFixedWidth(w)
        return w

    def _set_header(self, person: str, states: dict, arousal: str, tie: str = "calibrating",
                    force: bool = False) -> None:
        key = tuple(states.get(m, "absent") for m in self.modalities)
        if (not force and self.badge_state.get(person) == key and self.arousal_state.get(person) == arousal
                and self.tie_state.get(person) == tie):
            return
        self.badge_state[person] = key
        self.arousal_state[person] = arousal
        self.tie_state[person] = tie
        self.headers[person].setText(self._header_html(person, states, arousal, tie))

    def _set_titles(self, force: bool = False) -> None:
        """Column titles: the long form where it fits the plot's width, else the short one."""
        first = self.participants[0]
        # the room a column gets from the widget's width (a title wider than that would widen the column itself)
        left_w = self.plots[(first, self.columns[0])].getAxis("left").width()
        width = (self.width() - getattr(self, "header_width", 0) - 12) / len(self.columns) - 6
        fm = QtGui.QFontMetricsF(self._title_font())
        changed = False
        for m in self.columns:
            plot = self.plots[(first, m)]
            long = f"{TRACE_NAMES[m]} ({UNITS[m]})"
            fits = fm.horizontalAdvance(long) + 10 <= width - left_w
            text = long if fits or self.width() <= 0 else f"{SHORT_NAMES[m]} ({UNITS[m]})"
            if force or text != self._titles.get(m):
                self._titles[m] = text
                plot.setTitle(f"<span style='color:{MUTED}'>{text}</span>", size="9pt")
                changed = True
        if changed and not force:
            # the plots' minimum widths changed: lay them out again in the view's width
            pg.GraphicsLayoutWidget.resizeEvent(self, None)

    def _title_font(self) -> QtGui.QFont:
        f = QtGui.QFont(self.font())
        f.setPointSizeF(9.0)
        return f

    def resizeEvent(self, ev):  # noqa: N802
        super().resizeEvent(ev)
        if getattr(self, "_titles", None) is not None and self.plots:
            self._set_titles()

    # -- for tests and the status line -----------------------------------------------------------------
    def arousal_words(self, person: str) -> str:
        """The arousal words shown for a person (for tests and the status line)."""
        return AROUSAL_WORDS[self.arousal_state[person]]

    def arousal_colour(self, person: str) -> str:
        """The colour of a person's arousal words (for tests)."""
        return AROUSAL_STYLE[self.arousal_state[person]][0]

    def tie_words(self, person: str) -> str:
        """A person's tie to the group as shown (for tests)."""
        return TIE_WORDS[self.tie_state[person]]

    def arousal_spans(self, person: str, modality: str | None = None) -> dict:
        """``key -> ((t0, t1), state)`` of the moving-away shading drawn on a person's trace (for tests)."""
        m = modality or self.modalities[0]
        return {k: st for k, st in self.spans[(person, m)]._state.items() if k[0] == "arousal"}

    def badge(self, person: str, modality: str) -> str:
        """The status word shown for one person's modality (for tests and the headless view)."""
        return self.badge_state[person][self.modalities.index(modality)]

    # -- redraw ---------------------------------------------------------------------------------------------
    def update_view(self, snap, x_range, markers: dict) -> None:
        """Redraw from a :class:`attune_monitor.ui.model.Snapshot` for the time span ``x_range``."""
        x0, x1 = x_range
        open_loss = {}
        loss_spans = {}
        for rec in snap.signal_loss:
            key = (rec["participant"], rec["modality"])
            end = rec["offset_s"] if rec["offset_s"] is not None else snap.t_now
            if rec["offset_s"] is None:
                open_loss[key] = rec["reason"]
            if end >= x0 and rec["onset_s"] <= x1:
                loss_spans.setdefault(key, {})[("loss", rec["onset_s"])] = (rec["onset_s"], end, "loss",
                                                                            hatch_brush(LOSS_HATCH))
        at, _al, ac = getattr(snap, "arousal", (np.zeros(0), None, np.zeros((0, 0))))
        step = float(np.median(np.diff(at))) if at.size > 1 else 1.0
        people_arousal = getattr(snap, "people_arousal", {}) or {}
        ties = getattr(snap, "ties", {}) or {}
        signal = snap.signal_states()  # a replay's source reports no device status: from the grid
        tt, conn, chance = getattr(snap, "tie_series", (np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0))))
        named = {}
        if self.group:
            for ep in snap.episodes:
                people = ep.get("people") or []
                if len(people) != 1:
                    continue
                end = ep["offset_s"] if ep.get("offset_s") is not None else snap.t_now
                if end < x0 or ep["onset_s"] > x1:
                    continue
                # a person drifting away from several others at once: one span (their pairs' episodes merged)
                spans = named.setdefault(people[0], [])
                kind = "repaired" if ep.get("repaired") else "open"
                for k, (a, b, kk, first) in enumerate(spans):
                    if ep["onset_s"] <= b and end >= a:
                        spans[k] = (min(a, ep["onset_s"]), max(b, end), "open" if "open" in (kk, kind) else kk,
                                    min(first, ep["id"]))
                        break
                else:
                    spans.append((ep["onset_s"], end, kind, ep["id"]))
        named = {who: {("ep", first): (a, b, kind, pg.mkBrush(REPAIRED_FILL if kind == "repaired" else RUPTURE_FILL))
                       for a, b, kind, first in spans} for who, spans in named.items()}
        for i, person in enumerate(self.participants):
            states = {m: display_status(signal.get(person, {}).get(m, "absent"), open_loss.get((person, m)))
                      for m in self.modalities}
            tie = ties.get(person, {}).get("state", "calibrating")
            self._set_header(person, states, people_arousal.get(person, {}).get("state", "unknown"), tie)
            away = {}
            if ac.shape[0] > i:
                for t0, t1, st in arousal_runs(at, ac[i], step):
                    if t1 >= x0 and t0 <= x1:
                        # a run cut by the start of the snapshot keeps one key while the view scrolls
                        start = "cut" if t0 <= at[0] - step + 1e-6 else round(t0, 3)
                        away[("arousal", st, start)] = (t0, t1, st, pg.mkBrush(AROUSAL_STYLE[st][2]))
            for m in self.modalities:
                t, vals = snap.grid.get(m, (np.zeros(0), np.zeros((len(self.participants), 0))))
                y = vals[i] if vals.shape[0] > i else np.zeros(0)
                self.curves[(person, m)].setData(t, y)
                self._adapt_y(person, m, y)
                self.spans[(person, m)].sync({**away, **loss_spans.get((person, m), {})})
            if self.group:
                if conn.shape[0] > i and tt.size:
                    lo = TIE_RANGE[0] + 0.01
                    self.curves[(person, "tie")].set_series(tt, np.clip(conn[i], lo, TIE_RANGE[1]))
                    # chance kept inside the plot: clipped to the view range
                    self.chance[person].set_series(tt, np.clip(chance[i], lo, TIE_RANGE[1]))
                self.spans[(person, "tie")].sync(named.get(person, {}))
        self.master.setXRange(x0, x1, padding=0)  # every other plot follows (x linked)
        view_w = self.viewport().width()
        if self.ci.geometry().width() > view_w + 1 and self.ci.minimumWidth() <= view_w:
            pg.GraphicsLayoutWidget.resizeEvent(self, None)  # laid out while a wider text was in it: again

    def _adapt_y(self, person: str, m: str, y: np.ndarray) -> None:
        """Slow, hysteretic y range: changes only when the data leave it or use a small part of it.

        Looked at on every :data:`Y_CHECK_EVERY`-th redraw of a trace (the range moves slowly by design; the
        percentiles of every trace on every frame cost more than drawing them).
        """
        k = self._y_checks.get((person, m), 0)
        self._y_checks[(person, m)] = k + 1
        if k % Y_CHECK_EVERY and (person, m) in self._yrange:
            return
        finite = y[np.isfinite(y)]
        if finite.size < 4:
            return
        lo, hi = (float(v) for v in np.percentile(finite, (1, 99)))
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
