"""The grid of student cards on the teacher page: one small anywidget, ``classgrid.js`` beside it.

Python assigns the whole card list (a few KB for 30+ students) at most a few times a second; the
browser redraws only the cards whose content changed and reports clicks through ``selected``.
"""

from __future__ import annotations

import pathlib

import anywidget
import traitlets


class ClassGrid(anywidget.AnyWidget):
    """Cards are dicts from ``ClassView.card``; ``selected`` is the id of the card the teacher clicked."""

    _esm = pathlib.Path(__file__).with_name("classgrid.js")
    _css = pathlib.Path(__file__).with_name("classgrid.css")

    cards = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
