"""The attunement meter: one large, glanceable tile per pair (word + symbol + gauge)."""

from __future__ import annotations

import re

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from attune_monitor.ui.model import tune_evidence_words
from attune_monitor.ui.words import (
    STATE_SYMBOLS,
    STATE_WORDS,
    TIE_SYMBOLS,
    TIE_WORDS,
    countdown_words,
    waiting_for_words,
)

from .style import AROUSAL_STYLE, GRID, INK, MUTED, PANEL, STATE_COLOURS, STATE_TEXT, TIE_TEXT, qcolor

__all__ = [
    "arousal_reason", "fit_reason", "attunement_level", "meter_details", "waiting_words", "MIN_WORD_PX",
    "MIN_WRAPPED_PX", "DETAIL_WRAP_MIN_H", "wrap_lines",
    "AttunementMeter", "MeterPanel"
]


def arousal_reason(pair_arousal: dict | None) -> tuple[str, str, str | None]:
    """What a pair's tile says about its people's arousal.

    Parameters
    ----------
    pair_arousal : dict | None
        One entry of :attr:`attune_monitor.ui.model.Snapshot.pair_arousal`.

    Returns
    -------
    short : str
        A few words for the tile (``"↑ P2 arousal"``; ``""`` when nobody is moving away).
    long : str
        A sentence for the tooltip.
    state : str | None
        ``"climbing"`` / ``"flattening"`` (of the first person moving away), for the colour.
    """
    pa = pair_arousal or {}
    away = pa.get("away") or {}
    if not away:
        return "", "", None
    evidence = pa.get("evidence")
    who = " + ".join(f"{AROUSAL_STYLE[st][1]} {w}" for w, st in away.items())
    short = f"{who} arousal"
    if evidence == "arousal":
        short += " (sync dipping)"
    flav = {"climbing": "climbing (heart rate / skin conductance up, more responses)",
            "flattening": "flattening (fewer responses, less heart-rate variation)"}
    lines = [f"{w}'s arousal is moving away from the others' and from {w}'s own baseline: {flav[st]}."
             for w, st in away.items()]
    if evidence == "arousal":
        lines.append("The flag comes from this arousal divergence with a dip in synchrony (arousal alone never flags; "
                     "the pair's synchrony is not far below its usual range).")
    elif evidence == "synchrony+arousal":
        lines.append("The flag comes from a drop of synchrony and this arousal divergence together.")
    return short, "\n".join(lines), next(iter(away.values()))


def fit_reason(reason: str, font: QtGui.QFont, room: float, min_px: int = 8) -> str:
    """The longest form of ``reason`` that fits in ``room`` pixels.

    Shrinking ``font`` (in place) down to
    ``min_px`` first: the whole text, then without the parenthesis, then only the arrows and names; ``""`` if
    nothing fits (the tooltip still has it all).
    """
    forms = [reason]
    if " (" in reason:
        forms.append(reason.split(" (")[0])
    if reason.endswith(" arousal") or " arousal" in reason:
        forms.append(reason.split(" arousal")[0])
    start = font.pixelSize()
    for text in forms:
        font.setPixelSize(start)
        while font.pixelSize() > min_px and QtGui.QFontMetricsF(font).horizontalAdvance(text) > room:
            font.setPixelSize(font.pixelSize() - 1)
        if QtGui.QFontMetricsF(font).horizontalAdvance(text) <= room:
            return text
    return ""


def attunement_level(pair_state: dict | None) -> float | None:
    """How close the pair is to its usual synchrony now: 1 = as usual, 0 = chance level.

    ``1 - drop`` with the detector's fused, smoothed drop (``pair_state["drop"]``: the same quantity whose deepest
    value is an episode's depth, so the gauge and the episodes table agree); where that is unknown, the mean of
    the modalities' drops. Clipped to 0..1 (below chance shows as chance). None while there is no baseline.
    """
    if not pair_state:
        return None
    drop = pair_state.get("drop")
    if drop is None or not np.isfinite(drop):
        drops = [d.get("drop") for d in pair_state.get("modalities", {}).values()]
        drops = [x for x in drops if x is not None and np.isfinite(x)]
        if not drops:
            return None
        drop = float(np.mean(drops))
    return float(np.clip(1.0 - drop, 0.0, 1.0))


def meter_details(pair_state: dict) -> str:
    """``"r now: heart .62 · skin .58"`` from the detector's smoothed synchrony.

    For a pair that is not measurably in tune, the evidence (synchrony above chance with its uncertainty) instead.
    """
    evidence = tune_evidence_words(pair_state)
    if evidence:
        return evidence
    names = {"hr": "heart", "eda": "skin"}
    parts = []
    for m, d in pair_state.get("modalities", {}).items():
        v = d.get("sync")
        if v is not None and np.isfinite(v):
            parts.append(f"{names.get(m, m)} {v:+.2f}".replace("0.", "."))
    return ("r now: " + " \u00b7 ".join(parts)) if parts else ""


def waiting_words(state: str, ready_in_s: float | None = None, waiting: dict | None = None,
                  short: bool = False) -> str:
    """The gauge's line while there is no baseline to measure against.

    The gauge's line while there is no baseline to measure against (``waiting``: the pair's lost signals,
    ``{person: [modality, ...]}``); ``short``: the words for a small tile, where the full line does not fit.
    """
    if state in ("not_in_tune", "out_of_tune") and short:
        return "not above chance"
    if state == "not_in_tune":
        return "synchrony not above chance: nothing to lapse from"
    if state == "out_of_tune":
        return "waiting for synchrony above chance"
    if waiting:
        return waiting_for_words(waiting)
    ready = countdown_words(ready_in_s)
    return ready if ready else "learning this pair's usual level\u2026"


#: Smallest type a tile's state word is drawn in (px); below that it wraps onto two lines.
MIN_WORD_PX = 11
#: ... and the smallest type for those two lines when the word does not fit one line at all (a small group tile's
#: "not measurably in tune"), before it would be cut short.
MIN_WRAPPED_PX = 9
#: A card at least this tall (px, inside its frame) wraps its details onto up to three lines instead of cutting them.
DETAIL_WRAP_MIN_H = 180


class AttunementMeter(QtWidgets.QWidget):
    """One tile: names, the state in words with a symbol, and a chance-to-usual gauge.

    A pair's tile (``key`` a pair) shows the pair's detector state; a person's tile (``key`` ``(person, "*")``, a
    group) shows one person drifting away from the group: the word from :data:`attune_monitor.ui.words.TIE_WORDS` and
    how many of their ties dropped. Every text is fitted before it is painted and recorded in :attr:`painted`.
    """

    clicked = QtCore.Signal(tuple)

    def __init__(self, pair, parent=None):
        super().__init__(parent)
        self.pair = tuple(pair)
        self.person = self.pair[0] if self.pair[1] == "*" else None
        self.state = "calibrating"
        self._words: str | None = None
        self.level: float | None = None
        self.details = ""
        self.reason = ""
        self.reason_long = ""
        self.reason_state: str | None = None
        self.ready_in_s: float | None = None
        self.waiting = ""
        self.painted: list = []
        self.setMinimumSize(150, 84)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)
        self.setCursor(QtCore.Qt.CursorShape.PointingHandCursor)
        self._update_tooltip()

    @property
    def names(self) -> str:
        """Who the meter is about: the pair, or a person and the group."""
        return f"{self.person} and the group" if self.person else f"{self.pair[0]} \u2013 {self.pair[1]}"

    @property
    def words(self) -> str:
        """The state in words, as shown."""
        if self.person:
            return self._words or TIE_WORDS["drifting_away"]
        return self._words or STATE_WORDS.get(self.state, self.state)

    @property
    def symbol(self) -> str:
        """The state's symbol, as shown."""
        return TIE_SYMBOLS["drifting_away"] if self.person else STATE_SYMBOLS.get(self.state, "")

    def set_state(self, state: str, level: float | None, details: str = "", pair_arousal: dict | None = None,
                  words: str | None = None, ready_in_s: float | None = None, waiting: dict | None = None) -> None:
        """Show a new state (and who of the pair is moving away in arousal); repaints only on change."""
        level = None if level is None else round(level, 2)
        ready = None if ready_in_s is None else int(round(ready_in_s / 5.0)) * 5
        reason, reason_long, reason_state = arousal_reason(pair_arousal)
        waiting = waiting_for_words(waiting)
        if (state, level, details, reason, reason_long, words, ready, waiting) == (
                self.state, self.level, self.details, self.reason, self.reason_long, self._words, self.ready_in_s,
                self.waiting):
            return
        self.state, self.level, self.details, self._words, self.ready_in_s = state, level, details, words, ready
        self.waiting = waiting
        self.reason, self.reason_long, self.reason_state = reason, reason_long, reason_state
        self._update_tooltip()
        self.update()

    def _update_tooltip(self) -> None:
        lvl = ("" if self.level is None
               else f"\nAttunement now: {self.level:.0%} of the way from chance to the usual level.")
        why = f"\n{self.reason_long}" if self.reason_long else ""
        det = f"\n{self.details}" if self.details else ""
        self.setToolTip(f"{self.names}: {self.symbol} {self.words}{lvl}{det}{why}")

    def mousePressEvent(self, event):  # noqa: N802
        self.clicked.emit(self.pair)

    def _text(self, p: QtGui.QPainter, rect: QtCore.QRectF, flags, text: str) -> None:
        """Draw one line of text, recording whether it fits its room (width, and height within the tile)."""
        fm = QtGui.QFontMetricsF(p.font())
        w = fm.horizontalAdvance(text)
        inside = QtCore.QRectF(self.rect()).contains(QtCore.QPointF(rect.left(), rect.center().y() + fm.ascent() / 2))
        self.painted.append((text, rect.width(), w if inside else float("inf")))
        p.drawText(rect, flags, text)

    def painted_clipped(self) -> list:
        """Texts painted wider than their room (or outside the tile) in the last paint.

        Texts painted wider than their room (or outside the tile) in the last paint (for tests; should be
        empty).
        """
        return [(t, room, w) for t, room, w in self.painted if w > room + 0.5]

    def _fit(self, font: QtGui.QFont, text: str, room: float, start: int, least: int = 9) -> str:
        """Shrink ``font`` (in place) from ``start`` px until ``text`` fits ``room``.

        Else elide it (the tooltip holds it all).
        """
        size = start
        font.setPixelSize(size)
        while size > least and QtGui.QFontMetricsF(font).horizontalAdvance(text) > room:
            size -= 1
            font.setPixelSize(size)
        fm = QtGui.QFontMetricsF(font)
        return text if fm.horizontalAdvance(text) <= room else fm.elidedText(text, QtCore.Qt.TextElideMode.ElideRight,
                                                                             room)

    def paintEvent(self, event):  # noqa: N802
        self.painted = []
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        r = QtCore.QRectF(self.rect()).adjusted(3, 3, -3, -3)
        state_key = "possible_rupture" if self.person else self.state
        colour = qcolor(STATE_COLOURS.get(state_key, MUTED))
        p.setPen(QtGui.QPen(qcolor(GRID), 1))
        p.setBrush(qcolor(PANEL))
        p.drawRoundedRect(r, 10, 10)
        p.setBrush(qcolor(STATE_COLOURS.get(state_key, MUTED), 34))
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.drawRoundedRect(r, 10, 10)
        p.setBrush(colour)  # state stripe on the left
        p.drawRoundedRect(QtCore.QRectF(r.left(), r.top(), 8, r.height()), 4, 4)
        inner = r.adjusted(18, 6, -12, -6)
        h, w = inner.height(), inner.width()
        left_mid = QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter
        # names
        f = QtGui.QFont(self.font())
        names = self._fit(f, self.names, w, int(max(11, min(22, h * 0.13))))
        p.setFont(f)
        p.setPen(qcolor(MUTED))
        name_h = f.pixelSize() * 1.35
        self._text(p, QtCore.QRectF(inner.left(), inner.top(), w, name_h), left_mid, names)
        if self.reason:
            # who is moving away in arousal: right of the names, in that flavour's colour, shrunk to fit
            fr = QtGui.QFont(f)
            fr.setBold(True)
            room = w - QtGui.QFontMetricsF(f).horizontalAdvance(names) - 10
            text = fit_reason(self.reason, fr, room)
            if text:
                p.setFont(fr)
                p.setPen(qcolor(AROUSAL_STYLE.get(self.reason_state, AROUSAL_STYLE["climbing"])[0]))
                tw = QtGui.QFontMetricsF(fr).horizontalAdvance(text)
                self._text(p, QtCore.QRectF(inner.right() - tw - 1, inner.top(), tw + 1, name_h), left_mid, text)
            p.setFont(f)
        # details (current r per modality, or the evidence vs chance), only when there is room: one line, and up
        # to three in a tall card rather than cut ("vs chance: heart +0.64±0.21 · ski…" hid skin and the need)
        small = QtGui.QFont(self.font())
        small.setPixelSize(int(max(9, min(14, h * 0.09))))
        fs = QtGui.QFontMetricsF(small)
        detail_lines = (wrap_lines(self.details, fs, w, 3 if h > DETAIL_WRAP_MIN_H else 1)
                        if (self.details and h > 130 and not self.person) else [])
        detail_lh = small.pixelSize() * 1.4
        detail_h = detail_lh * len(detail_lines)
        # gauge: chance (left) ... usual (right), labels under the track
        track_h = max(6.0, min(14.0, h * 0.07))
        label_h = small.pixelSize() * 1.3
        gauge_top = inner.bottom() - detail_h - label_h - track_h - 2
        word_rect = QtCore.QRectF(inner.left(), inner.top() + name_h, w, gauge_top - inner.top() - name_h - 4)
        # the word, as large as fits (two lines if needed)
        word = f"{self.symbol} {self.words}".strip()
        fw = QtGui.QFont(self.font())
        fw.setBold(True)
        start = int(max(12, min(56, word_rect.height() * 0.7)))
        size = start
        fw.setPixelSize(size)
        while size > MIN_WORD_PX and QtGui.QFontMetricsF(fw).horizontalAdvance(word) > w:   # largest size on one line
            size -= 1
            fw.setPixelSize(size)
        lines = [word]
        one_line_fits = QtGui.QFontMetricsF(fw).horizontalAdvance(word) <= w
        if (size < 28 or not one_line_fits) and " " in word:
            # two lines in larger type read better than one in small type (and fit where one line does not)
            for s2 in range(start, (MIN_WORD_PX if one_line_fits else MIN_WRAPPED_PX) - 1, -1):
                fw.setPixelSize(s2)
                fm = QtGui.QFontMetricsF(fw)
                split = _two_lines(word, fm, w)
                if split and 2 * fm.height() <= word_rect.height() and (s2 > size or not one_line_fits):
                    lines, size = split, s2
                    break
            fw.setPixelSize(size)
        fm = QtGui.QFontMetricsF(fw)
        if len(lines) == 1 and fm.horizontalAdvance(word) > w:
            lines = [fm.elidedText(word, QtCore.Qt.TextElideMode.ElideRight, w)]
        p.setFont(fw)
        p.setPen(qcolor(TIE_TEXT["drifting_away"] if self.person else STATE_TEXT.get(self.state, INK)))
        lh = fm.height()
        y0 = word_rect.top() + max(0.0, (word_rect.height() - lh * len(lines)) / 2)
        for k, line in enumerate(lines):
            self._text(p, QtCore.QRectF(word_rect.left(), y0 + k * lh, w, lh), left_mid, line)
        track = QtCore.QRectF(inner.left(), gauge_top, w, track_h)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(qcolor("#E5E7EB"))
        p.drawRoundedRect(track, track_h / 2, track_h / 2)
        if self.level is not None:
            frac = float(np.clip(self.level, 0.0, 1.0))
            p.setBrush(colour)
            p.drawRoundedRect(QtCore.QRectF(track.left(), track.top(), max(track_h, w * frac), track_h), track_h / 2,
                              track_h / 2)
        p.setFont(small)
        p.setPen(qcolor(MUTED))
        lab = QtCore.QRectF(inner.left(), track.bottom() + 1, w, label_h)
        if self.person:
            text = self.details
            self._text(p, lab, left_mid, fs.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, w))
        elif self.level is None:
            waiting = self.waiting if self.waiting and self.state == "calibrating" else waiting_words(
                self.state, self.ready_in_s)
            if fs.horizontalAdvance(waiting) > w and self.state in ("not_in_tune", "out_of_tune"):
                waiting = waiting_words(self.state, short=True)  # a small tile: the gist, not a cut sentence
            self._text(p, lab, left_mid, fs.elidedText(waiting, QtCore.Qt.TextElideMode.ElideRight, w))
        else:
            cw, uw = fs.horizontalAdvance("chance"), fs.horizontalAdvance("usual")
            self._text(p, QtCore.QRectF(lab.left(), lab.top(), cw + 1, label_h), left_mid, "chance")
            self._text(p, QtCore.QRectF(lab.right() - uw - 1, lab.top(), uw + 1, label_h), left_mid, "usual")
        for k, line in enumerate(detail_lines):
            self._text(p, QtCore.QRectF(inner.left(), lab.bottom() + k * detail_lh, w, detail_lh), left_mid, line)
        p.end()


def wrap_lines(text: str, fm: QtGui.QFontMetricsF, room: float, max_lines: int) -> list[str]:
    """``text`` in at most ``max_lines`` lines of ``room`` px, broken at spaces (the last line elided if it must be).

    Lines break after a separator (``·`` or ``,``) where they can, as :func:`_two_lines` keeps ``·``.
    """
    # broken after a separator ("heart +0.64±0.21 ·", "skin +0.20±0.15,"), so a figure stays with its name; a
    # piece wider than the room is broken at its spaces
    words: list[str] = []
    for piece in re.split(r"(?<=[\u00b7,]) ", text):
        words.extend([piece] if fm.horizontalAdvance(piece) <= room else piece.split(" "))
    lines: list[str] = []
    line = ""
    for word in words:
        trial = f"{line} {word}" if line else word
        if line and fm.horizontalAdvance(trial) > room and len(lines) < max_lines - 1:
            lines.append(line)
            line = word
        else:
            line = trial
    if line:
        lines.append(line)
    return [x if fm.horizontalAdvance(x) <= room else fm.elidedText(x, QtCore.Qt.TextElideMode.ElideRight, room)
            for x in lines]


def _two_lines(text: str, fm: QtGui.QFontMetricsF, room: float) -> list[str] | None:
    """``text`` split at a space into two lines that each fit ``room`` (the most even split), or None.

    A separator (``·``) stays at the end of the first line ("● in tune ·" / "dipping").
    """
    words = text.split(" ")
    best = None
    for k in range(1, len(words)):
        if words[k] == "\u00b7":
            continue
        a, b = " ".join(words[:k]), " ".join(words[k:])
        wa, wb = fm.horizontalAdvance(a), fm.horizontalAdvance(b)
        if wa <= room and wb <= room and (best is None or max(wa, wb) < best[0]):
            best = (max(wa, wb), [a, b])
    return None if best is None else best[1]


class MeterPanel(QtWidgets.QWidget):
    """A grid of :class:`AttunementMeter` tiles: every pair's, or (a big group) only the ones worth a look.

    Parameters
    ----------
    pairs : list of (str, str)
    shown : list | None
        The tiles shown (pairs, or ``(person, "*")`` for a person drifting away from the group); default every
        pair. :meth:`set_shown` changes them.
    """

    pair_clicked = QtCore.Signal(tuple)

    def __init__(self, pairs, parent=None, shown=None, columns: int | None = None, empty_text: str | None = None):
        super().__init__(parent)
        self.pairs = [tuple(p) for p in pairs]
        n = len(self.pairs)
        self.columns = columns
        self.small = n > 2
        self.grid = QtWidgets.QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(6)
        self.meters: dict = {}
        self.shown: list = []
        self.empty = QtWidgets.QLabel(empty_text or "")
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet(f"color:{MUTED}")
        self.empty.setVisible(False)
        self.more = QtWidgets.QLabel("")
        self.more.setWordWrap(True)
        self.more.setStyleSheet(f"color:{MUTED}")
        self.more.setVisible(False)
        self.set_shown(self.pairs if shown is None else shown)

    def meter(self, key) -> AttunementMeter:
        """The tile of a pair or ``(person, "*")`` (made on first use)."""
        key = tuple(key)
        m = self.meters.get(key)
        if m is None:
            m = AttunementMeter(key, self)
            if self.small:
                m.setMinimumSize(130, 84)
                m.setMaximumHeight(130)
            m.clicked.connect(self.pair_clicked)
            m.setVisible(False)
            self.meters[key] = m
        return m

    def set_shown(self, keys, more: str = "") -> bool:
        """Show exactly these tiles, in order (``more``: a line about what is left out); True when it changed."""
        keys = [tuple(k) for k in keys]
        if keys == self.shown and self.more.text() == more and self.grid.count():
            return False
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().setVisible(False)
        n = len(keys)
        cols = self.columns or (1 if n <= 2 else 2 if n <= 6 else 3)
        for i, key in enumerate(keys):
            m = self.meter(key)
            self.grid.addWidget(m, i // cols, i % cols)
            m.setVisible(True)
        rows = (n + cols - 1) // cols
        self.empty.setVisible(n == 0 and bool(self.empty.text()))
        if n == 0 and self.empty.text():
            self.grid.addWidget(self.empty, 0, 0)
        self.more.setText(more)
        self.more.setVisible(bool(more))
        if more:
            self.grid.addWidget(self.more, rows, 0, 1, cols)
        self.shown = keys
        return True

    def update_view(self, snap) -> None:
        """Show each meter's state, level and arousal from the snapshot."""
        pair_arousal = getattr(snap, "pair_arousal", {}) or {}
        arming = getattr(snap, "arming", {}) or {}
        ready = arming.get("pairs", {})
        waiting = arming.get("waiting", {})
        states = {tuple(ps["pair"]): ps for ps in snap.pair_states}
        for key in self.shown:
            m = self.meters[key]
            if key[1] == "*":
                tie = (getattr(snap, "ties", {}) or {}).get(key[0], {})
                mine = [ps for pair, ps in states.items() if key[0] in pair and ps.get("state") in
                        ("drifting", "possible_rupture", "repairing")]
                levels = [lv for lv in (attunement_level(ps) for ps in mine) if lv is not None]
                details = f"{tie.get('dropping', len(mine))} of {tie.get('ties', '?')} ties dropped"
                m.set_state(tie.get("state", "drifting_away"), float(np.mean(levels)) if levels else None, details,
                            words=tie.get("words"))
                continue
            ps = states.get(key)
            if ps is None:
                continue
            m.set_state(ps["state"], attunement_level(ps), meter_details(ps), pair_arousal.get(key), ps.get("words"),
                        ready.get(key), waiting.get(key))
