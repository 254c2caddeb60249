"""Fixtures for the serve tests: light fixture dashboards and a real `smartsession serve` shared by the suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servekit import SECRET, STUDENT, TEACHER, write_notebook  # noqa: E402

from testkit.serving import running_server  # noqa: E402


@pytest.fixture(scope="session")
def dashboards(tmp_path_factory) -> Path:
    """A dashboards folder with the two pages and one notebook nobody may see."""
    folder = tmp_path_factory.mktemp("dashboards")
    write_notebook(folder / "student.ipynb", STUDENT)
    write_notebook(folder / "teacher.ipynb", TEACHER)
    write_notebook(folder / "secret.ipynb", SECRET)
    return folder


@pytest.fixture(scope="session")
def server(tmp_path_factory, dashboards):
    """`smartsession serve` with a pool of one student kernel, refilled one second after requests stop.

    Shared by the whole serve suite: starting one costs tens of seconds on a busy 2-core machine.
    """
    with running_server(tmp_path_factory.mktemp("serve"), pool_size=1, dashboards=dashboards, refill_quiet=1) as srv:
        yield srv
