"""Colours shared by the live view (Qt) and the offline report (matplotlib); plain hex strings, no Qt.

From Okabe & Ito's (2008) colour-blind-safe set; every state is also told by a word or a symbol.
"""

__all__ = ["AROUSAL_COLOURS", "rgb"]

#: Person-level arousal moving away: ``state -> (text colour, shading colour)``; the shading is a lighter
#: Okabe-Ito colour, the text a darker one of the same hue that stays readable on white.
AROUSAL_COLOURS = {
    "climbing": ("#A33F00", "#E69F00"),    # orange
    "flattening": ("#6A3D9A", "#CC79A7"),  # reddish purple
}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    """``"#RRGGBB"`` as an (r, g, b) tuple of ints."""
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
