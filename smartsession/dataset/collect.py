"""Recording labelled features from a researcher's own webcam: prompt a state, keep the face's features.

Used by notebooks/00_collect_webcam_data.ipynb with ``camera.on_frame(recorder.record)``; frames are analysed
in memory and dropped, only feature rows (the columns of ``data/features.csv``) are appended to a CSV.
"""

from __future__ import annotations

import csv
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from smartsession.classify.model import CLASSIFIER_STATES
from smartsession.dataset.build import DECIMALS, META_COLUMNS

#: What the participant is asked to do for each state.
PROMPTS = {
    "focused": "Look at the screen as if following a lecture, face relaxed.",
    "happy": "Smile or laugh at the screen.",
    "confused": "Frown as if the last slide made no sense to you.",
}


class FeatureRecorder:
    """Appends one feature row per analysed frame to ``path`` while a prompt is active.

    ``record(frame, t)`` may be called from the camera's worker thread; ``start(label, person)`` from the
    notebook's buttons. The CSV is only created when the first row is recorded.
    """

    def __init__(self, path: str | Path, seconds: float = 5.0):
        from smartsession.features import LandmarkFeaturizer
        from smartsession.vision.landmarks import FaceLandmarker

        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        self.path = Path(path)
        self.seconds = float(seconds)
        self._names = [str(f) for f in LandmarkFeaturizer().get_feature_names_out()]
        self._landmarker = FaceLandmarker(static_image_mode=False)
        self._lock = threading.Lock()
        self._label: str | None = None
        self._person = ""
        self._until = 0.0
        self._frames = 0
        self._no_face = 0
        self._counts: Counter[str] = Counter()
        self._listeners: list[Callable[[], None]] = []
        self._closed = False

    def __enter__(self) -> "FeatureRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureRecorder({str(self.path)!r}, seconds={self.seconds}): {self.status()}"

    def start(self, label: str, person: str) -> None:
        """Record ``label`` for ``person`` during the next ``seconds``."""
        if label not in CLASSIFIER_STATES:
            raise ValueError(f"unknown state {label!r}; choose one of {', '.join(CLASSIFIER_STATES)}")
        person = person.strip()
        if not person or not all(c.isalnum() or c in "-_." for c in person):
            raise ValueError("type a participant id made of letters, digits, '-', '_' or '.' (no names needed)")
        with self._lock:
            self._label, self._person = label, person
            self._until = time.monotonic() + self.seconds
        self._changed()

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each recorded row and when a prompt starts."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()

    def recording(self) -> bool:
        return self._label is not None and time.monotonic() < self._until

    def record(self, frame: np.ndarray, t: float | None = None) -> bool:
        """Analyse one RGB frame; append its features if a prompt is active and a face is found."""
        from smartsession.features import face_vector

        with self._lock:
            if self._closed or not self.recording():
                return False
            label, person = self._label, self._person
            found = self._landmarker.detect(frame, t=t)
            if not found.face:
                self._no_face += 1
                return False
            values = face_vector(found)
            if not np.isfinite(values).all():
                self._no_face += 1
                return False
            self._frames += 1
            row = ["webcam", self._frames, person, label] + [round(float(v), DECIMALS) for v in values]
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                if new:
                    writer.writerow(list(META_COLUMNS) + self._names)
                writer.writerow(row)
            self._counts[label] += 1
        self._changed()
        return True

    def status(self) -> str:
        """One line for the participant: what is being recorded and what was."""
        done = ", ".join(f"{k}: {v}" for k, v in sorted(self._counts.items())) or "nothing yet"
        if self.recording():
            left = max(0.0, self._until - time.monotonic())
            return f"Recording '{self._label}' for {self._person}, {left:.0f} s left ({PROMPTS[self._label]}). Rows: {done}."
        return f"Press a state button and hold that state. Rows: {done}; frames without a face: {self._no_face}."

    def counts(self) -> pd.Series:
        """Rows recorded in this session per label."""
        return pd.Series({label: self._counts.get(label, 0) for label in CLASSIFIER_STATES}, name="rows")

    def close(self) -> None:
        """Stop recording and release the landmarker; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._landmarker.close()
