"""The Analyzer: one frame in, one Observation out (landmarks -> features -> rules/model -> engagement -> smoothing).

The single entry point for live streams, files, the CLI, the pages and the notebooks; it owns the models.
"""

from __future__ import annotations

import math
import time
from typing import Iterable, Mapping

import numpy as np

from smartsession.analysis.observation import Observation
from smartsession.classify import engagement as engagement_mod
from smartsession.classify import rules
from smartsession.classify.calibration import Baseline, Calibration, CalibrationError
from smartsession.classify.smoothing import EXPRESSION_MIN_SPAN, EXPRESSION_WINDOW, StateSmoother
from smartsession.features.featurizer import face_vector, face_vectors
from smartsession.features.geometry import FEATURE_NAMES
from smartsession.schema import EMOTION_STATES
from smartsession.vision.landmarks import FaceLandmarker, FaceLandmarks

MODES = ("stream", "image")
_NO_FEATURES = dict.fromkeys(FEATURE_NAMES, math.nan)
_EAR, _LIP_LIFT = FEATURE_NAMES.index("ear"), FEATURE_NAMES.index("lip_corner_lift")
#: States of a face that attends (named by its expression); smoothing first decides attending or not, as one state.
ATTENDING_STATES = frozenset({"focused", "happy", "confused"})


class Analyzer:
    """Frame -> :class:`Observation`. Use it as a context manager; closing twice is harmless.

    ``mode="stream"`` is for consecutive frames of one person (webcam, video): the landmarker's tracking, time-based
    rules (drowsy) and smoothing. ``mode="image"`` treats every frame on its own: detection each time, no
    smoothing, no duration rules. ``emotions=False`` never reports ``happy`` or ``confused``: their probability
    goes to ``focused``, because both are expressions of a person attending (smiling at, or puzzling over, the
    lesson) and the attention-only reading of such a face is "focused" (EU AI Act art. 5(1)(f)).
    ``model`` is a loaded state model, a path to one, or None for the model shipped in the package.
    ``calibration_seconds`` > 0 learns the person's neutral face from the first seconds of a stream.

    :meth:`process` takes pictures; :meth:`process_face` takes a face already landmarked elsewhere (the student's
    browser, see ``vision/packed.py``) and :meth:`process_faces` a batch of them, with the same results frame for
    frame. MediaPipe and OpenCV load on the first picture, never before.
    """

    def __init__(self, emotions: bool = True, mode: str = "stream", model=None,
                 calibration_seconds: float = 0.0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if model is None or isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            from smartsession.classify.model import load_state_model

            model = load_state_model(model)
        missing = [n for n in model.feature_names if n not in FEATURE_NAMES]
        if missing:
            raise ValueError(f"the state model needs features this featurizer does not compute: {missing}")
        self.mode = mode
        self.emotions = emotions
        self.model = model
        self._columns = np.array([FEATURE_NAMES.index(n) for n in model.feature_names])
        self._classes = [str(c) for c in model.classes_]
        self._landmarker: FaceLandmarker | None = None
        self._closure = rules.EyeClosure()
        self._smoother = StateSmoother()
        self._expression_smoother = StateSmoother(window=EXPRESSION_WINDOW, min_span=EXPRESSION_MIN_SPAN)
        self._frame = 0
        self._t0: float | None = None
        self.baseline: Baseline | None = None
        self.calibration_error: str | None = None
        self._calibration: Calibration | None = None
        self._auto_calibration = calibration_seconds
        #: Milliseconds each stage took on the last frame (decode, landmarks, features, classify, smooth).
        self.stage_ms: dict[str, float] = {}
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> "Analyzer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graphs; calling it again is harmless."""
        if not self._closed:
            self._closed = True
            if self._landmarker is not None:
                self._landmarker.close()

    @property
    def landmarker(self) -> FaceLandmarker:
        """The MediaPipe landmarker for pictures, made on first use."""
        if self._landmarker is None:
            self._landmarker = FaceLandmarker(static_image_mode=(self.mode == "image"))
        return self._landmarker

    def reset(self) -> None:
        """Forget the stream's history (smoothing, eye-closure timer, frame counter); keep the baseline."""
        self._closure.reset()
        self._smoother.reset()
        self._expression_smoother.reset()
        self._frame = 0
        self._t0 = None

    # -- calibration -----------------------------------------------------------------------------------------
    def start_calibration(self, seconds: float = 5.0) -> None:
        """Learn the neutral face from the next ``seconds`` of frames (the student looks at the screen)."""
        if not seconds > 0:
            raise ValueError(f"calibration needs a positive number of seconds, got {seconds}")
        self._calibration = Calibration(seconds)
        self.calibration_error = None

    @property
    def calibrating(self) -> bool:
        return self._calibration is not None

    def calibrate(self, sample: Iterable) -> Baseline:
        """Set the baseline from an explicit neutral sample: frames (arrays or JPEG/PNG bytes) or feature dicts.

        Raises :class:`CalibrationError` when fewer than three of them show a face.
        """
        rows = []
        for item in sample:
            if isinstance(item, Mapping):
                rows.append(item)
                continue
            from smartsession.vision.frames import to_rgb

            found = self.landmarker.detect(to_rgb(item, "calibration frame"))
            if found.face:
                rows.append(face_vector(found))
        self.baseline = Baseline.from_samples(rows)
        self.calibration_error = None
        return self.baseline

    def clear_calibration(self) -> None:
        self.baseline = None
        self._calibration = None

    def _calibration_step(self, t: float, vector: np.ndarray | None) -> None:
        if self._calibration is None and self._auto_calibration > 0 and self.baseline is None and self._frame == 0:
            self._calibration = Calibration(self._auto_calibration)
        if self._calibration is None or not self._calibration.add(t, vector):
            return
        try:
            self.baseline = self._calibration.baseline()
        except CalibrationError as err:
            self.calibration_error = str(err)
        self._calibration = None

    # -- the pipeline ----------------------------------------------------------------------------------------
    def _probabilities(self, vector: np.ndarray) -> dict[str, float]:
        proba = self.model.predict_proba(vector[self._columns][None, :])[0]
        return dict(zip(self._classes, (float(p) for p in proba)))

    def _shown(self, probs: dict[str, float]) -> dict[str, float]:
        """The probabilities the state is chosen from: with emotions off, happy and confused count as focused."""
        if self.emotions:
            return probs
        shown = {s: p for s, p in probs.items() if s not in EMOTION_STATES}
        shown["focused"] = shown.get("focused", 0.0) + sum(probs.get(s, 0.0) for s in EMOTION_STATES)
        return shown

    def process(self, frame, t: float | None = None, source: str = "camera",
                frame_index: int | None = None) -> Observation:
        """Analyse one frame (RGB uint8 array or JPEG/PNG bytes); raises ``FrameError`` for bad input.

        ``t`` is the media time in seconds (video position or capture clock); in stream mode it defaults to
        seconds since the first frame, in image mode to 0.
        """
        from smartsession.vision.frames import to_rgb

        self._check_open()
        start = time.perf_counter()
        t = self._media_time(t)
        rgb = to_rgb(frame, source)
        t1 = time.perf_counter()
        found = self.landmarker.detect(rgb, t if self.mode == "stream" else None)
        return self._observe(found, t, source, frame_index, start, t1)

    def process_face(self, face: FaceLandmarks, t: float | None = None, source: str = "camera",
                     frame_index: int | None = None) -> Observation:
        """Analyse a face landmarked elsewhere (the browser's FaceLandmarker), exactly as :meth:`process` would
        analyse the frame it came from; ``t`` as there. No picture, no MediaPipe."""
        self._check_open()
        start = time.perf_counter()
        return self._observe(face, self._media_time(t), source, frame_index, start, start)

    def process_faces(self, faces: list[FaceLandmarks], times: list[float | None], source: str = "camera",
                      frame_index: int | None = None) -> list[Observation]:
        """Analyse a batch of consecutive faces landmarked elsewhere, in capture order: the same observations, frame
        for frame, as :meth:`process_face` on each in turn, for less work. The features and the state model run
        once over the stacked rows (numpy's and scikit-learn's per-call overhead, not the arithmetic, is what one
        face costs); the rules, the eye-closure timer, engagement, calibration and smoothing run frame by frame in
        order, since each frame's reading depends on the frames before it."""
        self._check_open()
        if len(faces) != len(times):
            raise ValueError(f"process_faces needs one time per face, got {len(faces)} faces and {len(times)} times")
        present = [i for i, face in enumerate(faces) if face.face]
        vectors: list[np.ndarray | None] = [None] * len(faces)
        if present:
            for i, row in zip(present, face_vectors([faces[i] for i in present])):
                vectors[i] = row
        model = _BatchModel(self, vectors)
        out = []
        for i, (face, t) in enumerate(zip(faces, times)):
            start = time.perf_counter()
            index = None if frame_index is None else frame_index + i
            out.append(self._observe(face, self._media_time(t), source, index, start, start, vectors[i],
                                     lambda _relative, i=i: model.row(i)))
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Analyzer is closed; create a new one (use it in a `with` block)")

    def _media_time(self, t: float | None) -> float:
        if t is not None:
            return t
        if self.mode != "stream":
            return 0.0
        now = time.monotonic()
        self._t0 = now if self._t0 is None else self._t0
        return now - self._t0

    def _observe(self, found: FaceLandmarks, t: float, source: str, frame_index: int | None, start: float,
                 t1: float, vector: np.ndarray | None = None, probabilities=None) -> Observation:
        """One frame's observation; ``vector`` (its features) and ``probabilities`` (relative features -> the state
        model's output) when a batch computed them already."""
        wall = time.time()
        stream = self.mode == "stream"
        index = self._frame if frame_index is None else frame_index
        t2 = time.perf_counter()

        probs: dict[str, float] | None = None
        expression, expression_confidence = None, math.nan
        if not found.face:
            features = dict(_NO_FEATURES)
            verdict = rules.NO_FACE
            score = engagement_mod.absent()
            self._closure.reset()
            vector = None
            t3 = t2
        else:
            vector = face_vector(found) if vector is None else vector
            t3 = time.perf_counter()
            features = dict(zip(FEATURE_NAMES, vector.tolist()))
            relative = vector - self.baseline.offsets() if self.baseline is not None else vector
            base_ear = self.baseline.ear if self.baseline is not None else None
            closed = rules.eyes_closed(vector[_EAR], base_ear, vector[_LIP_LIFT])
            verdict = rules.quality_verdict(vector, found.score)
            drowsy = self._closure.update(t, closed) if stream else None
            if verdict is None:
                # In a stream, shut eyes are timed by the drowsy rule and the head alone says where the student
                # faces meanwhile; a single image cannot tell a blink from eyes lowered to a phone, and neither is
                # looking at the screen, so there the eyes' own reading counts.
                verdict = drowsy or rules.attention_verdict(relative, eyes_closed=closed and stream)
            readable = verdict is None or verdict.state != "uncertain"
            if readable:
                # The expression is read on every face that can be read, beside the attention verdict: a student
                # laughing at a phone is distracted, and still smiling.
                face_probs = (probabilities or self._probabilities)(relative)
                shown = self._shown(face_probs)
                expression = max(shown, key=shown.get)
                expression_confidence = shown[expression]
            if verdict is None:
                # Attending: the expression only names how. An unclear one claims nothing (focused) and never
                # turns the attention verdict into "uncertain". The score's expression credit is for attending.
                probs = face_probs
                attending = rules.attending_confidence(relative)
                if expression_confidence < rules.MIN_EXPRESSION_CONFIDENCE:
                    verdict = rules.Verdict("focused", attending, f"attending; expression unclear (best: {expression} "
                                                                  f"at {expression_confidence:.2f})")
                else:
                    verdict = rules.Verdict(expression, attending, f"attending; expression {expression} at "
                                                                   f"{expression_confidence:.2f}")
            score = engagement_mod.score(relative, probs, base_ear)
        features["detection_score"] = found.score
        t4 = time.perf_counter()

        state, confidence, value, reason = verdict.state, verdict.confidence, score.value, verdict.reason
        components = dict(score.components)
        if stream:
            self._calibration_step(t, vector)
            # Attention first: attending or not is smoothed as one state, then the expression of an attending face
            # on its own, faster smoother (a smile comes and goes while the student keeps attending).
            attends = verdict.state in ATTENDING_STATES
            state, share, value = self._smoother.update(t, "attending" if attends else verdict.state,
                                                        verdict.confidence, score.value, components)
            components = dict(self._smoother.components)
            if attends:
                shown, shown_share, _ = self._expression_smoother.update(t, verdict.state, expression_confidence, 0.0)
            else:
                shown, shown_share = self._expression_smoother.state or "focused", 1.0
            if state == "attending":
                state, share = shown, min(share, shown_share)
            if state != verdict.state:
                reason = f"held by smoothing ({share:.0%} of recent evidence); this frame: {verdict.state}, {verdict.reason}"
                confidence = share
        if not self.emotions and state in EMOTION_STATES:
            # Only reachable when emotions were switched off mid-stream while smoothing held an emotion state.
            state = "focused"
            self._expression_smoother.state = state
        end = time.perf_counter()
        self.stage_ms = {
            "decode": (t1 - start) * 1e3, "landmarks": (t2 - t1) * 1e3, "features": (t3 - t2) * 1e3,
            "classify": (t4 - t3) * 1e3, "smooth": (end - t4) * 1e3,
        }
        self._frame = index + 1
        return Observation(
            source=source, frame=index, media_time=float(t), wall_time=wall, face=found.face, faces=found.faces,
            state=state, engagement=float(value), confidence=float(confidence),
            engagement_components=components, features=features, reason=reason, expression=expression,
            expression_confidence=float(expression_confidence), ms=(end - start) * 1e3, landmarks=found.landmarks,
        )


class _BatchModel:
    """The state model's probabilities for a batch's faces, from one call over the stacked rows.

    A frame's model input is its features relative to the baseline in force at that frame, and a calibration may
    finish mid-batch: rows are computed for the baseline current when first asked, again from that row on if the
    baseline has changed since.
    """

    def __init__(self, analyzer: Analyzer, vectors: list[np.ndarray | None]) -> None:
        self.analyzer = analyzer
        self.vectors = vectors
        self.rows: dict[int, dict[str, float]] = {}
        self.baseline: object = _UNSET

    def row(self, i: int) -> dict[str, float]:
        analyzer = self.analyzer
        if analyzer.baseline is not self.baseline or i not in self.rows:
            self.baseline = analyzer.baseline
            offsets = analyzer.baseline.offsets() if analyzer.baseline is not None else None
            todo = [j for j in range(i, len(self.vectors)) if self.vectors[j] is not None]
            stacked = np.stack([self.vectors[j] for j in todo])
            relative = stacked - offsets if offsets is not None else stacked
            proba = analyzer.model.predict_proba(relative[:, analyzer._columns])
            self.rows = {j: dict(zip(analyzer._classes, (float(p) for p in row))) for j, row in zip(todo, proba)}
        return self.rows[i]


_UNSET = object()
