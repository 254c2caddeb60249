"""Page-wide keyboard helpers: ``Hotkey`` (``hotkey.js``) counts presses of a key outside text fields; ``Focus``
(``focus.js``) brings an element into view and focus."""

from __future__ import annotations

import pathlib

import anywidget
import traitlets


class Hotkey(anywidget.AnyWidget):
    _esm = pathlib.Path(__file__).with_name("hotkey.js")

    shortcuts = traitlets.List(traitlets.Unicode(), ["n", "N", "PageDown"]).tag(sync=True)
    presses = traitlets.Int(0).tag(sync=True)


class Focus(anywidget.AnyWidget):
    """Scrolls the element ``selector`` names into view and focuses it each time ``nonce`` changes (``focus.js``)."""

    _esm = pathlib.Path(__file__).with_name("focus.js")

    selector = traitlets.Unicode("").tag(sync=True)
    nonce = traitlets.Int(0).tag(sync=True)

    def bring(self, selector: str) -> None:
        self.selector = selector
        self.nonce += 1
