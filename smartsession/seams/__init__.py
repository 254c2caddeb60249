"""Where SmartSession leans on the internals of Voila, jupyter_server, jupyter_client, ipykernel and tornado.

Every private attribute, override or environment contract lives in this room (``http``: tornado; ``jupyter``: Voila,
jupyter_server and jupyter_client in the server; ``kernel``: ipykernel in the pages' kernels), each as a
:class:`Seam` saying what it relies on and since which release. ``smartsession serve`` and ``smartsession hub``
:func:`check` them when they start and refuse to run on a release where one no longer holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, Iterable


@dataclass(frozen=True)
class Seam:
    """One thing we rely on inside a dependency; ``changed(app)`` says what no longer holds, or None."""

    package: str  # the distribution, as pip names it
    relies_on: str  # one line: what we use and for what
    since: str  # the release it has held since
    changed: Callable[[Any], str | None]


class SeamBroken(RuntimeError):
    """A dependency no longer offers what a seam relies on; ``str(err)`` is the one line to show."""


def installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


def check(seams: Iterable[Seam], app: Any = None) -> None:
    """Raise :class:`SeamBroken` for the first seam that no longer holds (``app``: the server being started)."""
    for seam in seams:
        try:
            what = seam.changed(app)
        except Exception as err:  # a check that cannot even look is a broken seam too
            what = f"{type(err).__name__}: {err}"
        if what:
            raise SeamBroken(
                f"{seam.package} {installed(seam.package)} changed what SmartSession relies on "
                f"({seam.relies_on}, as since {seam.since}): {what}. Install the tested versions: "
                "pip install -c constraints.txt -e ."
            )
