"""The attunement meter: one large, glanceable tile per pair (word + symbol + gauge)."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from dsp.detector import STATE_WORDS
from ui.model import tune_evidence_words

from .style import AROUSAL_STYLE, GRID, INK, MUTED, PANEL, STATE_COLOURS, STATE_SYMBOLS, STATE_TEXT, qcolor


def arousal_reason(pair_arousal: dict | None) -> tuple[str, str, str | None]:
    """What a pair's tile says about its people's arousal.

    Parameters
    ----------
    pair_arousal : dict | None
        One entry of :attr:`ui.model.Snapshot.pair_arousal`.

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
    """The longest form of ``reason`` that fits in ``room`` pixels, shrinking ``font`` (in place) down to
    ``min_px`` first: the whole text, then without the parenthesis, then only the arrows and names; ``""`` if
    nothing fits (the tooltip still has it all)."""
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
    """How close the pair is to its usual synchrony: 1 = as usual, 0 = chance level.

    ``1 - drop`` averaged over the modalities whose baseline is known
    (``drop`` as in :mod:`dsp.detector`); None while calibrating.
    """
    if not pair_state:
        return None
    drops = [d.get("drop") for d in pair_state.get("modalities", {}).values()]
    drops = [x for x in drops if x is not None and np.isfinite(x)]
    if not drops:
        return None
    return float(np.clip(1.0 - np.mean(drops), -0.2, 1.2))


def meter_details(pair_state: dict) -> str:
    """``"r now: heart .62 · skin .58"`` from the detector's smoothed synchrony; for a pair that is not
    measurably in tune, the evidence (synchrony above chance with its uncertainty) instead."""
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


class AttunementMeter(QtWidgets.QWidget):
    """One pair's tile: names, the state in words with a symbol, and a chance-to-usual gauge."""

    clicked = QtCore.Signal(tuple)

    def __init__(self, pair, parent=None):
        super().__init__(parent)
        self.pair = tuple(pair)
        self.state = "calibrating"
        self._words: str | None = None
        self.level: float | None = None
        self.details = ""
        self.reason = ""
        self.reason_long = ""
        self.reason_state: str | None = None
        self.setMinimumSize(150, 84)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)
        self.setCursor(QtCore.Qt.CursorShape.PointingHandCursor)
        self._update_tooltip()

    @property
    def words(self) -> str:
        """The state in words, as shown."""
        return self._words or STATE_WORDS.get(self.state, self.state)

    def set_state(self, state: str, level: float | None, details: str = "", pair_arousal: dict | None = None,
                  words: str | None = None) -> None:
        """Show a new state (and who of the pair is moving away in arousal); repaints only on change."""
        level = None if level is None else round(level, 2)
        reason, reason_long, reason_state = arousal_reason(pair_arousal)
        if (state, level, details, reason, reason_long, words) == (self.state, self.level, self.details, self.reason,
                                                                   self.reason_long, self._words):
            return
        self.state, self.level, self.details, self._words = state, level, details, words
        self.reason, self.reason_long, self.reason_state = reason, reason_long, reason_state
        self._update_tooltip()
        self.update()

    def _update_tooltip(self) -> None:
        lvl = "" if self.level is None else f"\nAttunement: {self.level:.0%} of the way from chance to this pair's usual level."
        why = f"\n{self.reason_long}" if self.reason_long else ""
        self.setToolTip(f"{self.pair[0]} \u2013 {self.pair[1]}: {self.words}{lvl}{why}")

    def mousePressEvent(self, event):  # noqa: N802
        self.clicked.emit(self.pair)

    def paintEvent(self, event):  # noqa: N802
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        r = QtCore.QRectF(self.rect()).adjusted(3, 3, -3, -3)
        colour = qcolor(STATE_COLOURS.get(self.state, MUTED))
        p.setPen(QtGui.QPen(qcolor(GRID), 1))
        p.setBrush(qcolor(PANEL))
        p.drawRoundedRect(r, 10, 10)
        p.setBrush(qcolor(STATE_COLOURS.get(self.state, MUTED), 34))
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.drawRoundedRect(r, 10, 10)
        p.setBrush(colour)  # state stripe on the left
        p.drawRoundedRect(QtCore.QRectF(r.left(), r.top(), 8, r.height()), 4, 4)
        inner = r.adjusted(18, 6, -12, -6)
        h, w = inner.height(), inner.width()
        left_mid = QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter
        # pair names
        f = QtGui.QFont(self.font())
        f.setPixelSize(int(max(11, min(22, h * 0.13))))
        p.setFont(f)
        p.setPen(qcolor(MUTED))
        name_h = f.pixelSize() * 1.35
        names = f"{self.pair[0]} \u2013 {self.pair[1]}"
        p.drawText(QtCore.QRectF(inner.left(), inner.top(), w, name_h), left_mid, names)
        if self.reason:
            # who is moving away in arousal: right of the names, in that flavour's colour, shrunk to fit
            fr = QtGui.QFont(f)
            fr.setBold(True)
            room = w - QtGui.QFontMetricsF(f).horizontalAdvance(names) - 10
            text = fit_reason(self.reason, fr, room)
            if text:
                p.setFont(fr)
                p.setPen(qcolor(AROUSAL_STYLE.get(self.reason_state, AROUSAL_STYLE["climbing"])[0]))
                p.drawText(QtCore.QRectF(inner.left(), inner.top(), w, name_h),
                           QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter, text)
            p.setFont(f)
        # details line (current r per modality), only when there is room
        small = QtGui.QFont(self.font())
        small.setPixelSize(int(max(9, min(14, h * 0.09))))
        detail_h = small.pixelSize() * 1.4 if (self.details and h > 130) else 0.0
        # gauge: chance (left) ... usual (right), labels under the track
        track_h = max(6.0, min(14.0, h * 0.07))
        label_h = small.pixelSize() * 1.3
        gauge_top = inner.bottom() - detail_h - label_h - track_h - 2
        word_rect = QtCore.QRectF(inner.left(), inner.top() + name_h, w, gauge_top - inner.top() - name_h - 4)
        # the word, as large as fits (two lines if needed)
        word = f"{STATE_SYMBOLS.get(self.state, '')} {self.words}"
        fw = QtGui.QFont(self.font())
        fw.setBold(True)
        start = int(max(12, min(56, word_rect.height() * 0.7)))
        size = start
        fw.setPixelSize(size)
        flags = left_mid
        while size > 11 and QtGui.QFontMetricsF(fw).horizontalAdvance(word) > w:   # largest size on one line
            size -= 1
            fw.setPixelSize(size)
        if size < 28 and " " in self.words:   # one line only in small type: two lines in larger type read better
            wrap = left_mid | QtCore.Qt.TextFlag.TextWordWrap
            for s2 in range(start, size, -1):
                fw.setPixelSize(s2)
                two = QtGui.QFontMetricsF(fw).boundingRect(word_rect, int(wrap), word)
                if two.height() <= word_rect.height() and two.width() <= w:
                    size, flags = s2, wrap
                    break
            fw.setPixelSize(size)
        p.setFont(fw)
        p.setPen(qcolor(STATE_TEXT.get(self.state, INK)))
        p.drawText(word_rect, flags, word)
        track = QtCore.QRectF(inner.left(), gauge_top, w, track_h)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(qcolor("#E5E7EB"))
        p.drawRoundedRect(track, track_h / 2, track_h / 2)
        if self.level is not None:
            frac = float(np.clip(self.level, 0.0, 1.0))
            p.setBrush(colour)
            p.drawRoundedRect(QtCore.QRectF(track.left(), track.top(), max(track_h, w * frac), track_h), track_h / 2, track_h / 2)
        p.setFont(small)
        p.setPen(qcolor(MUTED))
        lab = QtCore.QRectF(inner.left(), track.bottom() + 1, w, label_h)
        if self.level is None:
            waiting = {"not_in_tune": "synchrony not above chance: nothing to lapse from",
                       "out_of_tune": "waiting for synchrony above chance"}.get(self.state, "learning this pair's usual level\u2026")
            p.drawText(lab, left_mid, QtGui.QFontMetricsF(small).elidedText(waiting, QtCore.Qt.TextElideMode.ElideRight, w))
        else:
            p.drawText(lab, left_mid, "chance")
            p.drawText(lab, QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter, "usual")
        if detail_h:
            details = QtGui.QFontMetricsF(small).elidedText(self.details, QtCore.Qt.TextElideMode.ElideRight, w)
            p.drawText(QtCore.QRectF(inner.left(), lab.bottom(), w, detail_h), left_mid, details)
        p.end()


class MeterPanel(QtWidgets.QWidget):
    """A grid of :class:`AttunementMeter`, one per pair."""

    pair_clicked = QtCore.Signal(tuple)

    def __init__(self, pairs, parent=None):
        super().__init__(parent)
        n = len(pairs)
        cols = 1 if n <= 2 else 2 if n <= 6 else 3 if n <= 12 else 4
        lay = QtWidgets.QGridLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        self.meters = {}
        for i, pair in enumerate(pairs):
            m = AttunementMeter(pair)
            if n > 2:
                m.setMinimumSize(110, 64)
                m.setMaximumHeight(130)
            m.clicked.connect(self.pair_clicked)
            lay.addWidget(m, i // cols, i % cols)
            self.meters[tuple(pair)] = m

    def update_view(self, snap) -> None:
        pair_arousal = getattr(snap, "pair_arousal", {}) or {}
        for ps in snap.pair_states:
            m = self.meters.get(tuple(ps["pair"]))
            if m is not None:
                m.set_state(ps["state"], attunement_level(ps), meter_details(ps), pair_arousal.get(tuple(ps["pair"])),
                            ps.get("words"))
