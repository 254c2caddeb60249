"""notebooks/05_session_report.ipynb runs top to bottom on a lesson it simulates through a real hub."""

from __future__ import annotations

import pytest

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "05_session_report.ipynb"


@pytest.mark.slow
def test_session_report_notebook_runs_top_to_bottom(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    assert all(o.get("output_type") != "error" for outs in outputs.values() for o in outs)
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for outs in outputs.values() for o in outs
    )
    assert "scripted drop at 264 s" in text
    assert "Long derivation" in text
    # The notebook's step-by-step drops table names the scripted segment first.
    drops_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("drops = analysis.detect_drops"))
    assert "seg3" in drops_cell.outputs[0]["data"]["text/plain"].splitlines()[1]
