"""Helpers for the serve tests: fixture notebooks, reading a rendered Voila page, Jupyter kernel messages.

The fixture student page behaves like the real one where serve is concerned (it waits for its request with
Voila's handshake, then shows widgets) without importing MediaPipe, so a pool kernel warms in seconds.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import nbformat

STUDENT = [
    # The sleep keeps the pool visibly filling for a moment, like the real page importing MediaPipe.
    "import os, time\nimport ipywidgets as w\nfrom voila.utils import get_query_string\ntime.sleep(2)",
    "query = get_query_string()",
    "from urllib.parse import parse_qs\n"
    "print('class', parse_qs(query).get('class', ['?'])[0])\n"
    "slider = w.IntSlider(description='x')\n"
    "label = w.Label('start')\n"
    "slider.observe(lambda change: setattr(label, 'value', f\"got {change['new']}\"), 'value')\n"
    "display(slider)\n"
    "display(label)",
    # Kernels reach the hub at the URL serve gives them, trusting its certificate when self-signed.
    "import json, ssl, urllib.request\n"
    "hub = os.environ['SMARTSESSION_HUB_URL']\n"
    "context = ssl.create_default_context(cafile=os.environ.get('SMARTSESSION_HUB_CAFILE'))\n"
    "with urllib.request.urlopen(hub + '/smartsession/health', context=context, timeout=30) as r:\n"
    "    print('hub', hub, 'ok' if json.load(r)['ok'] else 'down')",
]
TEACHER = ["print('teacher page rendered')"]
SECRET = ["# TOP-SECRET-SOURCE\nprint('SECRET NOTEBOOK OUTPUT')"]
#: Strings that must never appear in an anonymous answer.
SECRET_MARKERS = ("TOP-SECRET-SOURCE", "SECRET NOTEBOOK OUTPUT", '"nbformat"', "secret.ipynb")


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)


_OUTPUT = re.compile(r'<script type="application/vnd.voila.cell-output\+json">\s*(.*?)\s*</script>', re.S)


def widget_models(page: str) -> list[str]:
    """Model ids of the widgets a rendered Voila page displays, in order."""
    ids = []
    for block in _OUTPUT.findall(page):
        view = json.loads(block).get("data", {}).get("application/vnd.jupyter.widget-view+json")
        if view:
            ids.append(view["model_id"])
    return ids


def kernel_message(msg_type: str, content: dict, channel: str = "shell") -> dict:
    """A Jupyter message as a page sends it over ``/api/kernels/{id}/channels`` (JSON protocol)."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": "serve-test",
            "username": "student",
            "version": "5.3",
            "date": "2026-01-01T00:00:00Z",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


def load_page(server, url: str, cookies: dict[str, str] | None = None):
    """GET a page as a browser would, presenting ``cookies``: status, body and the cookies it sets (name: header)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=180)
    try:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        conn.request("GET", f"{parts.path}?{parts.query}", headers=headers)
        response = conn.getresponse()
        set_cookies = {h.split("=", 1)[0]: h for h in response.msg.get_all("Set-Cookie") or []}
        return response.status, response.read().decode(), set_cookies
    finally:
        conn.close()


def cookie_value(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]
