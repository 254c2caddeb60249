"""Folders the package reads at run time that a checkout keeps at its top level: the pages and the feature data.

A wheel carries them inside the package (``smartsession/dashboards``, ``smartsession/data``, mapped from the
top-level folders by pyproject.toml); an editable install reads the checkout's own folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """``dashboards`` or ``data``: inside the installed package when a wheel put it there, else the checkout's."""
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _PACKAGE.parent / name
