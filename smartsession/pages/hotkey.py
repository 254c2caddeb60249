"""A page-wide key (``hotkey.js`` beside it): ``presses`` counts each press outside text fields."""

from __future__ import annotations

import pathlib

import anywidget
import traitlets


class Hotkey(anywidget.AnyWidget):
    _esm = pathlib.Path(__file__).with_name("hotkey.js")

    shortcuts = traitlets.List(traitlets.Unicode(), ["n", "N", "PageDown"]).tag(sync=True)
    presses = traitlets.Int(0).tag(sync=True)
