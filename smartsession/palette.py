"""How states look everywhere (cards, chips, counts, timelines, report charts): a colour, a symbol and the word.

Colour is never the only carrier. The colours are the Okabe-Ito palette, chosen to stay apart under the
common colour-vision deficiencies (``tests/pages/test_palette.py`` checks it, docs/ACCESSIBILITY.md says how);
each state also has a symbol, a plotly marker and a bar pattern, and its name is always written next to it.
"""

from __future__ import annotations

#: Colours of the states on cards, chips, counts and charts.
STATE_COLOURS = {
    "focused": "#009e73",  # bluish green
    "happy": "#56b4e9",  # sky blue
    "confused": "#cc79a7",  # reddish purple
    "distracted": "#e69f00",  # orange
    "drowsy": "#0072b2",  # blue
    "away": "#d55e00",  # vermillion
    "uncertain": "#bbbbbb",  # grey
}
#: Paused and disconnected are presences, not states: always written out, and a dashed card border.
PRESENCE_COLOURS = {"paused": "#e0e0e0", "disconnected": "#f5f5f5"}

#: A text symbol per state (cards, chips, counts): shapes tell states apart without colour.
STATE_SYMBOLS = {
    "focused": "●",
    "happy": "▲",
    "confused": "◆",
    "distracted": "▼",
    "drowsy": "■",
    "away": "✕",
    "uncertain": "?",
    "paused": "Ⅱ",
    "disconnected": "○",
}
#: The same shapes as plotly marker symbols (timelines, scatter plots).
STATE_MARKERS = {
    "focused": "circle",
    "happy": "triangle-up",
    "confused": "diamond",
    "distracted": "triangle-down",
    "drowsy": "square",
    "away": "x",
    "uncertain": "circle-open",
}
#: Plotly bar fill patterns per state (stacked bars), so neighbouring segments differ by texture too.
STATE_PATTERNS = {
    "focused": "",
    "happy": "/",
    "confused": "x",
    "distracted": "\\",
    "drowsy": ".",
    "away": "+",
    "uncertain": "-",
}


def _linear(channel: float) -> float:
    return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    """WCAG relative luminance of a ``#rrggbb`` colour."""
    r, g, b = (_linear(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (WCAG contrast)."""
    return "#000000" if contrast_ratio(background, "#000000") >= contrast_ratio(background, "#ffffff") else "#ffffff"


def colour_of(state: str) -> str:
    return STATE_COLOURS.get(state) or PRESENCE_COLOURS.get(state) or STATE_COLOURS["uncertain"]


def symbol_of(state: str) -> str:
    return STATE_SYMBOLS.get(state, STATE_SYMBOLS["uncertain"])
