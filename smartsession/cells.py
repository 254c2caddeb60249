"""Cells that stay text in a spreadsheet: what SmartSession writes to CSV never runs as a formula.

A teacher opens exports and report tables in a spreadsheet; a student name or segment title like
``=HYPERLINK(...)`` or ``@SUM(...)`` would run there. As OWASP recommends for CSV injection, a text cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe (shown as text,
not evaluated); control characters (terminal escape codes) are marked as in names (schema.visible_text).
Numbers are numbers and are left alone.
"""

from __future__ import annotations

from typing import Any, Iterable

from smartsession.schema import visible_text

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value``, or for text the text a spreadsheet shows as it is."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_START):
        value = "'" + value
    return visible_text(value)


def safe_row(row: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in row]


def safe_frame(frame):
    """A copy of a DataFrame whose text columns hold safe cells (other columns untouched)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
            out[column] = out[column].map(safe_cell)
    return out
