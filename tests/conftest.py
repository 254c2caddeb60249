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
#: The modules that take minutes, slowest first. They run first, so that `.ci/run`'s parallel workers (a module
#: each at a time) finish together instead of one of them starting the capacity benchmark last.
LONGEST_MODULES = ("serve/test_capacity_bench.py", "notebooks/test_notebooks.py", "test_wheel.py",
                   "browser/test_accessibility.py", "browser/test_nothing_leaves_the_page.py", "hub/test_scaleout.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in SLOW_FOLDERS or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    tests = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        module = item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else ""
        return LONGEST_MODULES.index(module) if module in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)  # stable: the rest keep their order, and each module its own
