"""Per-pair synchrony timelines.

HR, EDA and combined, with baseline band, chance level, possible-rupture shading (turning to the repaired colour),
signal-loss hatching and markers.

A pair's flag can come from one person's arousal moving away (:mod:`attune_monitor.dsp.divergence`) while
its synchrony looks as usual: the pair's title then names who is moving away and says where
the evidence comes from, and an *arousal strip* along the bottom of the combined plot marks
the seconds in which either person was moving away (orange: climbing, purple: flattening).

The y axis shows r from -0.5 to 1; a plot extends it down to -1 while a value it shows (in the
visible time span) is below -0.5, and goes back once every shown value is above -0.45.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from attune_monitor.dsp.detector import STATE_WORDS, get_preset
from attune_monitor.dsp.synchrony import fisher_mean
from attune_monitor.ui.model import AROUSAL_STATES

from .plots import MarkerSet, SpanSet, StreamCurve, hatch_brush, make_plot
from .style import (
    AROUSAL_STYLE,
    DISMISSED_FILL,
    INK,
    LOSS_HATCH,
    MODALITY_COLOURS,
    MODALITY_NAMES,
    MUTED,
    OKABE_ITO,
    PANEL,
    REPAIRED_FILL,
    RUPTURE_FILL,
    STATE_SYMBOLS,
    STATE_TEXT,
    qcolor,
)

__all__ = [
    "Y_RANGE", "Y_LOW_EXTENDED", "Y_RETURN_MARGIN", "Y_TICKS", "AROUSAL_STRIP_Y", "EVIDENCE_WORDS",
    "arousal_title_html", "arousal_note", "baseline_band", "episode_brush", "PairTimelines"
]

#: Usual y range of every synchrony plot (Pearson r).
Y_RANGE = (-0.5, 1.0)
#: Lower y bound of a plot while a value it shows is below ``Y_RANGE[0]`` (a strongly negative synchrony).
Y_LOW_EXTENDED = -1.02
#: The extended range goes back to ``Y_RANGE`` only once every shown value is at least this far above
#: ``Y_RANGE[0]`` (r units), so values hovering at the edge do not make the axis jump back and forth.
Y_RETURN_MARGIN = 0.05
#: y ticks of the usual and the extended range.
Y_TICKS = {False: [(0.0, "0"), (0.5, ".5"), (1.0, "1")],
           True: [(-1.0, "−1"), (-0.5, "−.5"), (0.0, "0"), (0.5, ".5"), (1.0, "1")]}
#: Height (r units) of the arousal strip's lines along the bottom of the combined plot (usual range; with the
#: extended range they move down with the bottom edge).
AROUSAL_STRIP_Y = {"climbing": -0.44, "flattening": -0.47}
#: What the pair title says about where a flag's evidence comes from (``ui.model`` ``pair_arousal["evidence"]``).
EVIDENCE_WORDS = {
    "arousal": "from arousal with a dip in synchrony",
    "synchrony+arousal": "from synchrony + arousal",
    "synchrony": None,
    None: None,
}


def arousal_title_html(away: dict) -> str:
    """The (short) part of a pair's title about its people's arousal: who is moving away, which way."""
    parts = []
    for who, st in away.items():
        colour, symbol, _ = AROUSAL_STYLE[st]
        parts.append(f"<span style='color:{colour}'>{symbol} {who} arousal</span>")
    return " &nbsp;".join(parts)


def arousal_note(away: dict, evidence: str | None) -> str:
    """The note on a pair's combined plot while its flag's evidence comes (partly) from someone's arousal."""
    if not away or evidence not in ("arousal", "synchrony+arousal"):
        return ""  # the title already names who is moving away; the note is for a pair the detector flags
    text = ", ".join(f"{AROUSAL_STYLE[st][1]} {who} moving away ({st})" for who, st in away.items())
    words = EVIDENCE_WORDS.get(evidence)
    return f"{text}: flag {words}" if words else text


def _fisher_mean(values) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(fisher_mean(np.asarray(vals))) if vals else None


def baseline_band(pair_state: dict, modality: str, drift_frac: float) -> tuple[float, float] | None:
    """The pair's "usual" band for one modality (or ``"combined"``): from the drift threshold up to its baseline.

    Inside the band the detector calls the pair in tune; below it, drifting.
    Returns ``(lower_r, baseline_r)`` or None while the baseline is being learned.
    """
    mods = pair_state.get("modalities", {})
    names = list(mods) if modality == "combined" else [modality]
    base = _fisher_mean(mods.get(m, {}).get("baseline") for m in names)
    chance = _fisher_mean(mods.get(m, {}).get("chance") for m in names)
    if base is None:
        return None
    bz = math.atanh(min(max(base, -0.999), 0.999))
    cz = math.atanh(min(max(chance if chance is not None else 0.0, -0.999), 0.999))
    lo = math.tanh(bz - drift_frac * max(bz - cz, 0.0))
    return (lo, base)


def episode_brush(ep: dict):
    """Shade of an episode: open = vermillion, repaired = sky blue, dismissed = grey."""
    if ep.get("review") == "dismiss":
        return "dismissed", pg.mkBrush(DISMISSED_FILL)
    if ep.get("repaired"):
        return "repaired", pg.mkBrush(REPAIRED_FILL)
    return "open", pg.mkBrush(RUPTURE_FILL)


class PairTimelines(pg.GraphicsLayoutWidget):
    """Synchrony timelines of pairs.

    Parameters
    ----------
    pairs : list of (str, str)
    modalities : tuple of str
    stacked : bool
        One plot per modality plus one combined (for a couple); otherwise one
        plot per pair with the modalities as thin lines under the combined one.
    preset : str
        Detector preset (for the baseline band's lower edge).
    ticks : ui.gui.plots.TimeTicks | None
        The window's shared time ticks.
    shown : list of (str, str) | None
        The pairs drawn (default: all); :meth:`set_shown` changes them (a big group shows only the pairs that
        are flagged or selected). Plots are made the first time a pair is shown.
    """

    def __init__(self, pairs, modalities, stacked: bool = False, preset: str = "balanced", ticks=None, shown=None,
                 parent=None):
        super().__init__(parent=parent)
        self.setBackground(PANEL)
        self.pairs = [tuple(p) for p in pairs]
        self.modalities = tuple(modalities)
        self.stacked = stacked
        self.ticks = ticks
        cfg = get_preset(preset)
        # lower edge of the "usual range": the drop the detector tolerates (threshold detector: drift_frac;
        # CUSUM detector: its reference drop cusum_k, below which drops wash out)
        self.drift_frac = float(getattr(cfg, "drift_frac", getattr(cfg, "cusum_k", 0.5)))
        self.ci.setSpacing(2)
        self.ci.layout.setContentsMargins(2, 2, 2, 2)
        self.plots = []   # plot records of the shown pairs, in order
        self._records: dict[int, list] = {}  # pair index -> its plot records (made once)
        self.pair_rows = {}
        self._titles = {}
        self.kinds_per_plot = [[m] for m in self.modalities] + [["combined"]] if stacked else [[*self.modalities,
                                                                                                "combined"]]
        self.shown: list = []
        self.set_shown(self.pairs if shown is None else shown)

    def _make_records(self, p: int) -> list:
        """The plots of pair ``p`` (made on first use)."""
        if p in self._records:
            return self._records[p]
        stacked = self.stacked
        recs = []
        for k, kinds in enumerate(self.kinds_per_plot):
            plot = make_plot(show_time=False, left_width=36, ticks=self.ticks)
            plot.setYRange(*Y_RANGE, padding=0)
            plot.getAxis("left").setTicks([Y_TICKS[False]])
            band = pg.LinearRegionItem((0, 0), orientation="horizontal", movable=False,
                                       brush=pg.mkBrush(qcolor(OKABE_ITO["bluish_green"], 38)), pen=pg.mkPen(None))
            for line in band.lines:
                line.setPen(pg.mkPen(None))
            band.setZValue(-20)
            band.setVisible(False)
            plot.addItem(band, ignoreBounds=True)
            curves = {}
            for m in kinds:
                main = m == "combined"
                width = 2.4 if main else (1.5 if stacked else 1.0)
                colour = qcolor(MODALITY_COLOURS[m], 255 if (main or stacked) else 170)
                c = StreamCurve(pen=pg.mkPen(colour, width=width), connect="finite")
                c.setZValue(10 if main else 5)
                plot.addItem(c)
                curves[m] = c
            strips = {}
            if "combined" in kinds:
                for st in ("climbing", "flattening"):
                    c = StreamCurve(pen=pg.mkPen(qcolor(AROUSAL_STYLE[st][0]), width=5), connect="finite")
                    c.setZValue(8)
                    plot.addItem(c)
                    strips[st] = c
            note = None
            if strips:
                # a TextItem lives in the view and never widens the layout (a long title would)
                note = pg.TextItem("", color=INK, anchor=(1, 1), fill=pg.mkBrush(255, 255, 255, 210))
                note.setZValue(12)
                note.setVisible(False)
                plot.addItem(note, ignoreBounds=True)
            chance_kind = kinds[0] if stacked else "combined"
            chance = StreamCurve(pen=pg.mkPen(MUTED, width=1.2, style=QtCore.Qt.PenStyle.DashLine),
                                      connect="finite")
            chance.setZValue(4)
            plot.addItem(chance)
            recs.append({
                "pair": p, "kinds": kinds, "chance_kind": chance_kind, "plot": plot, "curves": curves,
                "chance": chance, "band": band, "band_val": None, "spans": SpanSet(plot), "strips": strips,
                "note": note, "note_text": "", "extended": False,
                "markers": MarkerSet(plot, labels=(k == 0)),
            })
            if k > 0 and stacked:
                plot.setTitle(f"<span style='color:{MUTED}'>{MODALITY_NAMES[kinds[0]]}</span>", size="8pt",
                              justify="left")
        for d in recs:   # owned by the scene from the start (hidden until shown): see set_shown
            self.scene().addItem(d["plot"])
            d["plot"].hide()
        self._records[p] = recs
        state, away, evidence, words = self._titles.get(p, ("calibrating", (), None, None))
        self._set_title(p, state, dict(away), evidence, words, force=True)
        return recs

    def set_shown(self, pairs) -> bool:
        """Draw exactly these pairs, in this order; True when that changed the layout."""
        shown = [tuple(p) for p in pairs if tuple(p) in self.pairs]
        if shown == self.shown and self.plots:
            return False
        self.ci.clear()
        self.shown = shown
        self.plots = []
        self.pair_rows = {}
        for recs in self._records.values():
            for d in recs:
                # a plot out of the layout stays in the scene, hidden and unlinked: the scene keeps owning it, so
                # closing the window never leaves a plot whose linked view was deleted before it
                d["plot"].setXLink(None)
                d["plot"].hide()
                if d["plot"].scene() is None:
                    self.scene().addItem(d["plot"])
        row = 0
        for pair in shown:
            p = self.pairs.index(pair)
            self.pair_rows[pair] = row
            for d in self._make_records(p):
                if d["plot"].scene() is not None:
                    d["plot"].scene().removeItem(d["plot"])
                self.ci.addItem(d["plot"], row=row, col=0)
                d["plot"].show()
                d["plot"].hideAxis("bottom")
                self.plots.append(d)
                row += 1
        if self.plots:
            self.plots[-1]["plot"].showAxis("bottom")
            if self.stacked:
                for d in self.plots:
                    if d["kinds"] == ["combined"]:
                        d["plot"].showAxis("bottom")
            # one x range: every plot follows the last one
            last = self.plots[-1]["plot"]
            for d in self.plots[:-1]:
                d["plot"].setXLink(last)
            last.setXLink(None)
        per_plot = 150 if self.stacked else 92
        self.setMinimumHeight(min(per_plot * len(self.plots) + 20, 100000) if self.stacked else 0)
        return True

    def _set_title(self, p: int, state: str, away: dict, evidence: str | None, words: str | None = None,
                   force: bool = False) -> None:
        key = (state, tuple(sorted(away.items())), evidence, words)
        if self._titles.get(p) == key and not force:
            return
        if p not in self._records:
            self._titles[p] = key
            return
        self._titles[p] = key
        self._draw_title(p)

    def _title_forms(self, p: int) -> list[str]:
        """A pair's title, longest first: with who is moving away in arousal, then without."""
        state, away, evidence, words = self._titles[p]
        a, b = self.pairs[p]
        word = words or STATE_WORDS.get(state, state)
        modality = MODALITY_NAMES[self._records[p][0]['kinds'][0]] if self.stacked else ""
        sub = f" &nbsp;<span style='color:{MUTED}'>{modality}</span>" if self.stacked else ""
        html = (f"<b style='font-size:11pt'>{a} \u2013 {b}</b>{sub} &nbsp; "
                f"<span style='color:{STATE_TEXT.get(state, MUTED)}'>{STATE_SYMBOLS.get(state, '')} {word}</span>")
        extra = arousal_title_html(dict(away))
        return [html + " &nbsp; " + extra, html] if extra else [html]

    def _draw_title(self, p: int) -> None:
        """Set the longest title form that fits the plot's width (a title wider than the plot would widen it)."""
        plot = self._records[p][0]["plot"]
        room = self.width() - 16
        doc = QtGui.QTextDocument()
        doc.setDefaultFont(plot.titleLabel.item.font())
        forms = self._title_forms(p)
        html = forms[-1]
        for form in forms:
            doc.setHtml(form)
            if doc.idealWidth() <= room or room <= 0:
                html = form
                break
        if getattr(plot, "_attune_title", None) != html:
            plot._attune_title = html
            plot.setTitle(html, justify="left")

    def resizeEvent(self, ev):  # noqa: N802
        super().resizeEvent(ev)
        for pair in getattr(self, "shown", ()):
            self._draw_title(self.pairs.index(pair))

    def plots_for(self, p: int) -> list:
        """The plot records of pair ``p`` (made if it was never shown)."""
        return self._make_records(p)

    def title_state(self, pair) -> str:
        """The state word currently in a pair's title (for tests)."""
        return self._titles[self.pairs.index(tuple(pair))][0]

    def arousal_note(self, pair) -> str:
        """The arousal note shown on a pair's combined plot (``""`` when none; for tests)."""
        for d in self.plots_for(self.pairs.index(tuple(pair))):
            if d["note"] is not None:
                return d["note_text"] if d["note"].isVisible() else ""
        return ""

    def title_arousal(self, pair) -> tuple[dict, str | None]:
        """``(who is moving away -> flavour, evidence)`` currently in a pair's title (for tests)."""
        _, away, evidence, _ = self._titles[self.pairs.index(tuple(pair))]
        return dict(away), evidence

    def title_html(self, pair) -> str:
        """The pair title's text as drawn (for tests)."""
        return self.plots_for(self.pairs.index(tuple(pair)))[0]["plot"].titleLabel.text

    def _fit_y(self, d: dict, low: float) -> None:
        """Extend a plot's y range down to -1 while a shown value is below ``Y_RANGE[0]``; back (hysteretic)."""
        extended = d["extended"]
        if not extended and low < Y_RANGE[0]:
            extended = True
        elif extended and not low < Y_RANGE[0] + Y_RETURN_MARGIN:  # NaN (nothing shown) also goes back
            extended = False
        if extended == d["extended"]:
            return
        d["extended"] = extended
        d["plot"].setYRange(Y_LOW_EXTENDED if extended else Y_RANGE[0], Y_RANGE[1], padding=0)
        d["plot"].getAxis("left").setTicks([Y_TICKS[extended]])

    def strip_data(self, pair, state: str) -> tuple[np.ndarray, np.ndarray]:
        """``(t, y)`` of a pair's arousal strip of one flavour (NaN = gap; for tests)."""
        for d in self.plots_for(self.pairs.index(tuple(pair))):
            if state in d["strips"]:
                return d["strips"][state].getData()
        return np.zeros(0), np.zeros(0)

    def episode_spans(self, pair) -> dict:
        """``key -> (x0, x1, brush_key)`` of the episode spans drawn for a pair (for tests)."""
        d = self.plots_for(self.pairs.index(tuple(pair)))[0]
        return {k: (*st[0], st[1]) for k, st in d["spans"]._state.items() if k[0] == "ep"}

    def loss_spans(self, pair) -> dict:
        """Signal-loss spans drawn on a pair's first plot (for tests)."""
        d = self.plots_for(self.pairs.index(tuple(pair)))[0]
        return {k: st[0] for k, st in d["spans"]._state.items() if k[0] == "loss"}

    def update_view(self, snap, x_range, markers: dict, visible: tuple | None = None) -> None:
        """Redraw from a :class:`attune_monitor.ui.model.Snapshot` for the time span ``x_range``.

        ``visible`` = (top, bottom) in this widget's pixels: plots scrolled out of view are skipped
        (the window marks itself dirty when the user scrolls).
        """
        x0, x1 = x_range
        states = {tuple(ps["pair"]): ps for ps in snap.pair_states}
        eps_by_pair: dict = {}
        for ep in snap.episodes:
            end = ep["offset_s"] if ep.get("offset_s") is not None else snap.t_now
            if end < x0 or ep["onset_s"] > x1:
                continue
            key, brush = episode_brush(ep)
            eps_by_pair.setdefault(tuple(ep["pair"]), {})[("ep", ep["id"])] = (ep["onset_s"], end, key, brush)
        loss = []
        for rec in snap.signal_loss:
            end = rec["offset_s"] if rec["offset_s"] is not None else snap.t_now
            if end >= x0 and rec["onset_s"] <= x1:
                loss.append((rec["participant"], rec["modality"], rec["onset_s"], end))
        hatch = hatch_brush(LOSS_HATCH)
        pair_arousal = getattr(snap, "pair_arousal", {}) or {}
        at, _al, ac = getattr(snap, "arousal", (np.zeros(0), None, np.zeros((0, 0))))
        index = {who: i for i, who in enumerate(snap.participants)}
        for p, pair in enumerate(self.pairs):
            ps = states.get(pair)
            pa = pair_arousal.get(pair, {})
            if ps is not None:
                self._set_title(p, ps["state"], pa.get("away", {}), pa.get("evidence"), ps.get("words"))
        for d in self.plots:
            p = d["pair"]
            pair = self.pairs[p]
            plot = d["plot"]
            if visible is not None:
                r = plot.sceneBoundingRect()
                if r.bottom() < visible[0] or r.top() > visible[1]:
                    continue
            low = np.nan
            for m, curve in d["curves"].items():
                series = snap.sync.get(m)
                if series is None:
                    curve.setData([], [])
                    continue
                y = series[1][p] if series[1].shape[0] > p else np.zeros(series[0].size)
                curve.set_series(series[0], y)
                shown = y[(series[0] >= x0) & (series[0] <= x1) & np.isfinite(y)]
                if shown.size:
                    low = float(np.fmin(low, shown.min()))
            self._fit_y(d, low)
            bottom = Y_LOW_EXTENDED if d["extended"] else Y_RANGE[0]
            series = snap.sync.get(d["chance_kind"])
            if series is not None and series[2].shape[0] > p:
                # the chance line stays inside the plot: clipped to the view range
                d["chance"].set_series(series[0], np.clip(series[2][p], bottom + 0.01, Y_RANGE[1]))
            if d["strips"]:
                rows = [index[w] for w in pair if w in index and index[w] < ac.shape[0]]
                code = ac[rows].astype(int) if rows else np.zeros((0, at.size), int)
                for st, curve in d["strips"].items():
                    on = (code == AROUSAL_STATES.index(st)).any(axis=0) if code.size else np.zeros(at.size, bool)
                    curve.set_series(at, np.where(on, AROUSAL_STRIP_Y[st] - Y_RANGE[0] + bottom, np.nan))
                    curve.setVisible(bool(on.any()))   # nothing to draw: not painted at all
                pa = pair_arousal.get(pair, {})
                text = arousal_note(pa.get("away") or {}, pa.get("evidence"))
                if text != d["note_text"]:
                    d["note_text"] = text
                    d["note"].setText(text)
                    st = next(iter((pa.get("away") or {}).values()), "climbing")
                    d["note"].setColor(qcolor(AROUSAL_STYLE[st][0]))
                    d["note"].setVisible(bool(text))
                if text and d["extended"]:
                    # the extended range is there to show values below -0.5: the note goes to the top instead
                    d["note"].setAnchor((1, 0))
                    d["note"].setPos(x1, Y_RANGE[1])
                elif text:
                    d["note"].setAnchor((1, 1))
                    d["note"].setPos(x1, AROUSAL_STRIP_Y["climbing"] + 0.05)
            ps = states.get(pair)
            band_key = None if not ps else tuple(
                (m, v.get("baseline"), v.get("chance")) for m, v in sorted((ps.get("modalities") or {}).items()))
            if band_key != d.get("band_key", ()) or "band_new" not in d:   # the baseline moves once a window
                d["band_key"] = band_key
                d["band_new"] = baseline_band(ps, d["chance_kind"], self.drift_frac) if ps else None
            band = d["band_new"]
            if band != d["band_val"]:
                d["band_val"] = band
                d["band"].setVisible(band is not None)
                if band is not None:
                    d["band"].setRegion(band)
            spans = dict(eps_by_pair.get(pair, {}))
            mods = set(self.modalities) if "combined" in d["kinds"] else set(d["kinds"])
            for who, m, on, end in loss:
                if who in pair and m in mods:
                    spans[("loss", who, m, on)] = (on, end, "loss", hatch)
            d["spans"].sync(spans)
            d["markers"].sync(markers)
        if self.plots:
            self.plots[-1]["plot"].setXRange(x0, x1, padding=0)  # the others follow (x linked)
        view = self.viewport().size()
        geo = self.ci.geometry()
        if abs(geo.width() - view.width()) > 1 or abs(geo.height() - view.height()) > 1:
            # shown again after being hidden (nothing to show), or pairs swapped: lay out in the view's size
            pg.GraphicsLayoutWidget.resizeEvent(self, None)
