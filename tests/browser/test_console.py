"""The pages' browser consoles stay clean: every warning or error either is one we checked and documented as
harmless (docs/SERVE.md, "Browser console") or fails the test.

Headless Chromium on a real `smartsession serve`: the student page through consent to a live state, then the
teacher page with the pool's progress note.
"""

from __future__ import annotations

import re

import pytest

PAGE_TIMEOUT_MS = 180_000

#: Voila 0.5 ships JupyterLab 4.2.5's packages; the widget extensions were built against a later 4.x and webpack
#: records the build's version as the required one (their package.json asks for ^4.0.0, and the page uses
#: 4.2.5 anyway). Harmless when the major versions agree; a different major would be a real break.
_SAME_MAJOR = (
    re.compile(
        r"Unsatisfied version (?P<have>\d+)\.[\d.]+ from _JUPYTERLAB\.CORE_OUTPUT of shared singleton module "
        r"@jupyterlab/[\w-]+ \(required \^(?P<want>\d+)\.[\d.]+\)$"
    ),
    re.compile(
        r"No satisfying version \(\^(?P<want>\d+)\.[\d.]+\) of shared module @jupyterlab/[\w-]+ found in shared "
        r"scope default\.\s+Available versions: (?P<have>\d+)\.[\d.]+ from _JUPYTERLAB\.CORE_OUTPUT$"
    ),
)


#: The browser face landmarker (tasks-vision wasm) logs its set-up at INFO/WARNING through the console, and
#: Chromium's software GL warns when it reads the converted frame back for the CPU model: each line known by its
#: source and text (docs/SERVE.md, "Browser console"). MediaPipe's own errors (E...) are never accepted.
_MEDIAPIPE_SETUP = re.compile(
    r"^(?:INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|[IW]\d{4} [\d:.]+ +\d+ (?:"
    r"face_landmarker_graph\.cc:\d+\] Sets FaceBlendshapesGraph acceleration to xnnpack by default\."
    r"|gl_context\.cc:\d+\] (?:GL version: .*|OpenGL error checking is disabled)"
    r"|inference_feedback_manager\.cc:\d+\] Feedback manager requires a model with a single signature "
    r"inference\. Disabling support for feedback tensors\.)"
    r"|\[\.WebGL-0x[0-9a-f]+\]GL Driver Message \(OpenGL, Performance, GL_CLOSE_PATH_NV, High\): GPU stall due "
    r"to ReadPixels(?: \(this message will no longer repeat\))?)$"
)


def harmless(text: str) -> bool:
    for pattern in _SAME_MAJOR:
        match = pattern.match(text.strip())
        if match and match["have"] == match["want"]:
            return True
    return _MEDIAPIPE_SETUP.match(text.strip()) is not None


def test_harmless_filter_accepts_only_same_major_jupyterlab_mismatches():
    assert harmless(
        "Unsatisfied version 4.2.5 from _JUPYTERLAB.CORE_OUTPUT of shared singleton module @jupyterlab/rendermime "
        "(required ^4.6.2)"
    )
    assert not harmless(
        "Unsatisfied version 4.2.5 from _JUPYTERLAB.CORE_OUTPUT of shared singleton module @jupyterlab/rendermime "
        "(required ^5.0.0)"
    )
    assert not harmless(
        "Unsatisfied version 6.0.12 of shared singleton module @jupyter-widgets/base "
        "(required ^1.0 || ^2.0 || ^3.0 || ^4.0)"
    )


def test_harmless_filter_accepts_only_the_landmarkers_known_set_up_lines():
    assert harmless("W1130 18:30:49.302000 2172416 face_landmarker_graph.cc:180] Sets FaceBlendshapesGraph "
                    "acceleration to xnnpack by default.")
    assert harmless("[.WebGL-0x21f4013e6200]GL Driver Message (OpenGL, Performance, GL_CLOSE_PATH_NV, High): GPU "
                    "stall due to ReadPixels")
    assert not harmless("E1130 18:30:49.302000 2172416 face_landmarker_graph.cc:180] Sets FaceBlendshapesGraph "
                        "acceleration to xnnpack by default.")
    assert not harmless("W1130 18:30:49.302000 2172416 calculator_graph.cc:12] Something else went wrong")


def collect(page) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("warning", "error") else None)
    page.on("pageerror", lambda err: messages.append(f"pageerror: {err}"))
    return messages


def unexpected(messages: list[str]) -> list[str]:
    return [m for m in messages if not harmless(m.split(": ", 1)[1])]


@pytest.mark.slow
def test_student_and_teacher_pages_log_no_unexpected_warning_or_error(browser, server):
    server.wait_warm(300)
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    student = context.new_page()
    student_messages = collect(student)
    student.goto(server.join_url, timeout=PAGE_TIMEOUT_MS)
    student.get_by_placeholder("as your teacher will see it").fill("Ada Lovelace")
    student.get_by_role("button", name="I agree, start my camera").click()
    student.wait_for_selector(".ss-feedback[data-state]", timeout=60_000)
    student.wait_for_timeout(2000)
    teacher = context.new_page()
    teacher_messages = collect(teacher)
    teacher.goto(server.teacher_url, timeout=PAGE_TIMEOUT_MS)
    # The pool's progress note (the student took the pool's only kernel, so it refills or is ready).
    note = teacher.locator("#ss-pool-status")
    note.wait_for(timeout=30_000)
    assert re.match(r"Student pages: \d+ of 1 preheated kernels ready", note.inner_text())
    teacher.wait_for_timeout(3000)
    context.close()
    assert not any("@jupyter-widgets/base" in m for m in student_messages + teacher_messages), (
        "ipywebrtc's front end is loaded again: serve denies it (docs/SERVE.md)"
    )
    assert unexpected(student_messages) == []
    assert unexpected(teacher_messages) == []
