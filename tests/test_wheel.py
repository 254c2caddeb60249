"""The wheel on its own: built from this checkout, installed into a fresh venv outside it, serving and analysing.

Catches what an editable install hides: pages, data or assets found through the source tree instead of the package.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import cv2
import pytest

from smartsession.dataset.media import astronaut
from testkit.serving import running_server

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv (outside the checkout) with the wheel built from it; dependencies from the package index."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
                   check=True, cwd=work, timeout=600)
    [wheel] = (work / "dist").glob("smartsession-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    # At the tested versions, as the README installs (constraints.txt).
    subprocess.run([python, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)],
                   check=True, cwd=work, timeout=1200)
    return python, work


def test_the_wheel_carries_what_the_package_reads(installed):
    python, work = installed
    code = ("import smartsession, json; from smartsession.shipped import shipped; "
            "print(json.dumps([smartsession.__file__, str(shipped('dashboards')), str(shipped('data'))]))")
    package, dashboards, data = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                                          check=True, cwd=work).stdout)
    assert not package.startswith(str(ROOT)), "the test must import the installed package, not the checkout"
    assert {p.name for p in Path(dashboards).iterdir()} >= {"student.ipynb", "teacher.ipynb"}
    assert (Path(data) / "features.csv").is_file() and Path(dashboards).parent == Path(package).parent
    # The page templates are package data: the installed wheel renders them.
    code = ("from smartsession.pages.teacher_html import gauge_html, style_html; print(style_html(), gauge_html(50)); "
            "from smartsession.markup import templates; print(templates('smartsession.report').get_template("
            "'report.html').filename)")
    markup = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=work).stdout
    assert ".ss-teacher" in markup and 'data-engagement="50"' in markup
    code = "from smartsession.pages.student_html import consent_html, style_html; print(style_html(), consent_html(True))"
    student = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=work).stdout
    assert ".ss-chip" in student and 'data-mode="server"' in student
    assert markup.strip().endswith("report.html") and str(ROOT) not in markup.strip().splitlines()[-1]


def test_the_installed_wheel_analyses_an_image(installed):
    python, work = installed
    image = work / "astronaut.png"
    cv2.imwrite(str(image), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    out = subprocess.run([python, "-m", "smartsession", "analyze", str(image)], capture_output=True, text=True,
                         cwd=work, timeout=300)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["face"] and record["state"] == "happy" and "mouthSmileLeft" in record


def test_the_installed_wheel_serves_both_pages(installed):
    python, work = installed
    (work / "serve").mkdir(exist_ok=True)
    with running_server(work / "serve", pool_size=0, python=python) as server:
        student = server.request(server.join_url, timeout=240)
        teacher = server.request(server.teacher_url, timeout=240)
    assert student.status == 200 and "SmartSession" in student.text
    assert teacher.status == 200 and "voila" in teacher.text.lower()
