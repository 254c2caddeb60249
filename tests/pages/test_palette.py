"""The state palette stays distinguishable under colour-vision deficiencies, and the state is never colour alone.

Method (also in docs/ACCESSIBILITY.md): every state colour is converted to linear RGB, passed through the
Machado, Oliveira & Fernandes (2009) simulation matrices for protanopia, deuteranopia and tritanopia
(severity 1.0, the strongest form), converted to CIELAB (D65), and every pair of states must stay at least
``MIN_DELTA_E`` apart in CIEDE2000, in normal vision and in each simulation.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from smartsession.palette import (
    PRESENCE_COLOURS,
    STATE_COLOURS,
    STATE_MARKERS,
    STATE_PATTERNS,
    STATE_SYMBOLS,
    contrast_ratio,
    text_colour,
)
from smartsession.schema import STATES

#: Machado et al. 2009, Table 1 at severity 1.0; they apply to linear RGB.
MACHADO_2009 = {
    "normal": np.eye(3),
    "protanopia": np.array(
        [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]
    ),
    "deuteranopia": np.array(
        [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]
    ),
    "tritanopia": np.array(
        [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]]
    ),
}
#: CIEDE2000 distance every pair of state colours keeps. About 2 is "just noticeable" side by side; 10 keeps
#: small marks (a card's edge, a timeline symbol) apart at a glance. The palette measures 10.9 at worst.
MIN_DELTA_E = 10.0

_SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_D65 = np.array([0.95047, 1.0, 1.08883])


def linear_rgb(colour: str) -> np.ndarray:
    c = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def lab(linear: np.ndarray) -> tuple[float, float, float]:
    xyz = _SRGB_TO_XYZ @ np.clip(linear, 0, 1) / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def ciede2000(lab1, lab2) -> float:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), kL = kC = kH = 1."""
    (L1, a1, b1), (L2, a2, b2) = lab1, lab2
    c_mean = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_mean**7 / (c_mean**7 + 25**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360
    h2p = math.degrees(math.atan2(b2, a2p)) % 360
    dl, dc = L2 - L1, c2p - c1p
    dh = 0.0 if c1p * c2p == 0 else (h2p - h1p + 180) % 360 - 180
    d_h = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh / 2))
    l_mean, cp_mean = (L1 + L2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_mean = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        h_mean = (h1p + h2p) / 2
    else:
        h_mean = (h1p + h2p + 360) / 2 if h1p + h2p < 360 else (h1p + h2p - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(h_mean - 30)) + 0.24 * math.cos(math.radians(2 * h_mean))
         + 0.32 * math.cos(math.radians(3 * h_mean + 6)) - 0.20 * math.cos(math.radians(4 * h_mean - 63)))
    d_theta = 30 * math.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(cp_mean**7 / (cp_mean**7 + 25**7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / math.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = -math.sin(math.radians(2 * d_theta)) * r_c
    return math.sqrt((dl / s_l) ** 2 + (dc / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (dc / s_c) * (d_h / s_h))


def test_ciede2000_matches_the_published_test_data():
    # Sharma, Wu & Dalal (2005), pairs 1, 7 and 17 of their table.
    assert ciede2000((50, 2.6772, -79.7751), (50, 0, -82.7485)) == pytest.approx(2.0425, abs=1e-4)
    assert ciede2000((50, 0, 0), (50, -1, 2)) == pytest.approx(2.3669, abs=1e-4)
    assert ciede2000((50, 2.5, 0), (73, 25, -18)) == pytest.approx(27.1492, abs=1e-4)


@pytest.mark.parametrize("vision", list(MACHADO_2009))
def test_state_colours_stay_apart_under_colour_vision_deficiencies(vision):
    matrix = MACHADO_2009[vision]
    seen = {state: lab(matrix @ linear_rgb(colour)) for state, colour in STATE_COLOURS.items()}
    too_close = [
        (a, b, round(ciede2000(seen[a], seen[b]), 1))
        for a, b in itertools.combinations(STATES, 2)
        if ciede2000(seen[a], seen[b]) < MIN_DELTA_E
    ]
    assert not too_close, f"{vision}: these state colours look alike (CIEDE2000 < {MIN_DELTA_E}): {too_close}"


def test_every_state_has_a_symbol_a_marker_and_a_pattern_all_different():
    for table in (STATE_SYMBOLS, STATE_MARKERS, STATE_PATTERNS):
        assert set(STATES) <= set(table)
        values = [table[s] for s in STATES]
        assert len(set(values)) == len(values), table
    assert set(PRESENCE_COLOURS) <= set(STATE_SYMBOLS)


@pytest.mark.parametrize("colour", [*STATE_COLOURS.values(), *PRESENCE_COLOURS.values()])
def test_text_on_each_colour_meets_wcag_aa(colour):
    assert contrast_ratio(colour, text_colour(colour)) >= 4.5
