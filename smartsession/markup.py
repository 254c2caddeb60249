"""Jinja2 templates with autoescape for the pages and the report: every value is escaped unless it is ``Markup``.

``templates("smartsession.pages")`` loads that package's ``templates/`` folder (package data in the wheel).
"""

from __future__ import annotations

import functools

import jinja2


@functools.cache
def templates(package: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty string on the page
    )
