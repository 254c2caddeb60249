"""After the lesson: where did the class lose interest? Session reports from the hub's store.

``build_report(store_or_export, session_id) -> Report`` (figures, tables, ``to_html()``, ``write()``) serves
``smartsession report`` and the teacher dashboard alike; imports are lazy so the CLI stays fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Report": "smartsession.report.build",
    "SessionData": "smartsession.report.build",
    "build_report": "smartsession.report.build",
    "load_session": "smartsession.report.build",
    "report_html": "smartsession.report.build",
    "ReportSettings": "smartsession.report.analysis",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'smartsession.report' has no attribute {name!r}")
