"""Colours, words and fonts shared by the GUI views.

The palette is Okabe & Ito's (2008) colour-blind-safe set; every state is also
told by a word and a symbol, never by colour alone.
"""

from __future__ import annotations

from PySide6 import QtGui

from attune_monitor.ui.palette import AROUSAL_COLOURS, rgb
from attune_monitor.ui.words import STATE_SYMBOLS as _STATE_SYMBOLS
from attune_monitor.ui.words import clock

__all__ = [
    "OKABE_ITO", "BACKGROUND", "PANEL", "INK", "MUTED", "GRID", "STATE_COLOURS", "STATE_TEXT", "STATE_SYMBOLS",
    "TIE_TEXT", "STATUS_STYLE", "AROUSAL_STYLE", "MODALITY_COLOURS", "MODALITY_NAMES", "RUPTURE_FILL", "REPAIRED_FILL",
    "DISMISSED_FILL", "LOSS_HATCH", "qcolor", "fmt_time", "STYLESHEET"
]

#: Okabe-Ito colours.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

BACKGROUND = "#F7F6F2"   # warm off-white: calm, low glare
PANEL = "#FFFFFF"
INK = "#1F2328"          # text
MUTED = "#6B7280"        # secondary text, axes
GRID = "#E5E3DC"

#: Detector state -> colour (lines, tiles). Words come from dsp.detector.STATE_WORDS.
STATE_COLOURS = {
    "calibrating": "#9CA3AF",
    "not_in_tune": "#9CA3AF",
    "out_of_tune": OKABE_ITO["reddish_purple"],
    "attuned": OKABE_ITO["bluish_green"],
    "drifting": OKABE_ITO["orange"],
    "possible_rupture": OKABE_ITO["vermillion"],
    "repairing": OKABE_ITO["sky_blue"],
    "repaired": OKABE_ITO["blue"],
}
#: Darker variants for text on light backgrounds (contrast >= 4.5:1 on white).
STATE_TEXT = {
    "calibrating": "#4B5563",
    "not_in_tune": "#4B5563",
    "out_of_tune": "#8E4A72",
    "attuned": "#00684C",
    "drifting": "#8A5F00",
    "possible_rupture": "#A33F00",
    "repairing": "#1F6E99",
    "repaired": "#00558A",
}
#: A symbol per state, so state never rests on colour alone (the words and symbols live in ui.words).
STATE_SYMBOLS = _STATE_SYMBOLS

#: A person's tie to the group (ui.words.TIE_STATES) -> text colour (the words and symbols live in ui.words).
TIE_TEXT = {
    "calibrating": STATE_TEXT["calibrating"],
    "not_in_tune": STATE_TEXT["not_in_tune"],
    "with_group": STATE_TEXT["attuned"],
    "drifting_away": STATE_TEXT["possible_rupture"],
}

#: Signal status (acquisition) -> (colour, symbol).
STATUS_STYLE = {
    "ok": (OKABE_ITO["bluish_green"], "\u25CF"),
    "noisy": (OKABE_ITO["orange"], "\u25D0"),
    "lost": (OKABE_ITO["vermillion"], "\u2715"),
    "recovered": (OKABE_ITO["sky_blue"], "\u21BB"),
    "absent": ("#9CA3AF", "\u2013"),
    "no data": ("#9CA3AF", "\u2013"),
    "connecting": ("#6B7280", "\u25CC"),  # dotted circle: the inlet is still opening
}

#: Person-level arousal state (dsp.divergence.AROUSAL_STATES) -> (text colour, symbol, trace shading rgba or None).
#: Words come from ui.model.AROUSAL_WORDS; moving away is told by a word and an arrow, never by colour alone.
AROUSAL_STYLE = {
    "unknown": ("#4B5563", "\u25CC", None),                 # dotted circle: learning the person's baseline
    "with_group": ("#00684C", "\u25CF", None),              # filled circle
    "climbing": (AROUSAL_COLOURS["climbing"][0], "\u2191", (*rgb(AROUSAL_COLOURS["climbing"][1]), 70)),  # up arrow
    "flattening": (AROUSAL_COLOURS["flattening"][0], "\u2193", (*rgb(AROUSAL_COLOURS["flattening"][1]), 70)),
}

#: Synchrony curves.
MODALITY_COLOURS = {"hr": OKABE_ITO["reddish_purple"], "eda": OKABE_ITO["blue"], "combined": INK}
MODALITY_NAMES = {"hr": "heart", "eda": "skin", "combined": "combined"}

#: Episode shading.
RUPTURE_FILL = (213, 94, 0, 60)       # vermillion, translucent
REPAIRED_FILL = (86, 180, 233, 70)    # sky blue, translucent
DISMISSED_FILL = (156, 163, 175, 40)  # grey
LOSS_HATCH = (107, 114, 128, 150)     # grey diagonal hatch


def qcolor(spec, alpha: int | None = None) -> QtGui.QColor:
    """A QColor from ``"#RRGGBB"`` or an ``(r, g, b[, a])`` tuple."""
    c = QtGui.QColor(*spec) if isinstance(spec, tuple) else QtGui.QColor(spec)
    if alpha is not None:
        c.setAlpha(alpha)
    return c


def fmt_time(t: float | None) -> str:
    """Session seconds as ``m:ss`` (``h:mm:ss`` past an hour); ``"–"`` when unknown (same as ``words.clock``)."""
    return clock(t)


STYLESHEET = f"""
QMainWindow, QDialog {{ background: {BACKGROUND}; }}
QWidget {{ color: {INK}; }}
QToolBar {{ background: {PANEL}; border: none; border-bottom: 1px solid {GRID}; spacing: 6px; padding: 4px; }}
QPushButton, QToolButton {{ padding: 4px 10px; border: 1px solid #D1D5DB; border-radius: 6px; background: {PANEL}; }}
QPushButton:hover, QToolButton:hover {{ background: #EEF2F7; }}
QPushButton:checked, QToolButton:checked {{ background: #FDE7DA; border-color: {OKABE_ITO['vermillion']}; }}
QPushButton:disabled, QToolButton:disabled {{ color: #A0A4AB; }}
QTableWidget {{ background: {PANEL}; gridline-color: {GRID}; border: 1px solid {GRID}; border-radius: 6px; }}
QHeaderView::section {{ background: {BACKGROUND}; border: none; border-bottom: 1px solid {GRID}; padding: 3px;
                         color: {MUTED}; }}
QStatusBar {{ color: {MUTED}; }}
QLabel#sectionTitle {{ color: {MUTED}; font-weight: 600; letter-spacing: 0.5px; }}
"""
