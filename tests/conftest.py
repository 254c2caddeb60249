"""Marks shared by the whole suite. ``pytest -m "not slow"`` is the inner loop (under a minute); CI runs everything."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# testkit (test and benchmark support: real servers, a page client without a browser) is imported by name.
sys.path.insert(0, str(Path(__file__).parent))

#: Folders where every test starts a real server, Jupyter kernels or Chromium: slow as a whole.
SLOW_FOLDERS = {"browser", "serve", "notebooks"}
#: Fixtures that take tens of seconds to make (lessons played through a real hub, tests/report/conftest.py).
SLOW_FIXTURES = {"lessons"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in SLOW_FOLDERS or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
