"""Landmarks: MediaPipe FaceMesh (478 points with irises) on an RGB frame, with a full-range detector fallback.

Second arrow of the pipeline: frame -> :class:`FaceLandmarks` of the largest face plus how many faces are in view.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from smartsession.vision.native_stderr import quiet_stderr

# MediaPipe's C++ logging goes straight to file descriptor 2; these keep the routine INFO/WARNING lines out.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

N_LANDMARKS = 478
#: The detector box is enlarged by this factor before running the mesh on the crop, so the whole head
#: (forehead to chin, both ears) is inside it and the mesh's own detector sees a face of usual size.
CROP_SCALE = 2.2
#: Crops smaller than this are upscaled before the mesh runs; FaceMesh's detector misses tiny faces.
CROP_MIN_SIDE = 320
#: In stream mode the full-range detector counts faces at most this often (seconds); counting on every
#: frame would double the cost of the live loop for a number that changes rarely.
COUNT_INTERVAL = 1.0


@dataclass
class FaceLandmarks:
    """The largest face in a frame, as normalised landmarks, and how many faces were seen."""

    landmarks: np.ndarray | None  # (478, 3): x / width, y / height, z / width; None when no face
    faces: int
    image_size: tuple[int, int]  # (width, height) in pixels
    score: float = math.nan  # detector confidence when the full-range detector found the face
    via: str = "none"  # "mesh", "detector" (mesh on an enlarged detector crop) or "none"

    @property
    def face(self) -> bool:
        return self.landmarks is not None


# A NormalizedLandmark holding only x, y, z serialises as 17 bytes: field tag, length, then three
# (tag, float32) pairs. Reading the serialised list with this dtype is ~100x faster than a Python loop over
# 478 protobuf objects, which matters on every live frame.
_WIRE = np.dtype([("tag", "u1"), ("len", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
                  ("tz", "u1"), ("z", "<f4")])
_WIRE_TAGS = (0x0A, 15, 0x0D, 0x15, 0x1D)


def _to_array(landmark_list) -> np.ndarray:
    """(n, 3) float array from a MediaPipe NormalizedLandmarkList."""
    data = landmark_list.SerializeToString()
    if len(data) % _WIRE.itemsize == 0:
        rec = np.frombuffer(data, dtype=_WIRE)
        if all((rec[f] == v).all() for f, v in zip(("tag", "len", "tx", "ty", "tz"), _WIRE_TAGS)):
            out = np.empty((len(rec), 3))
            out[:, 0], out[:, 1], out[:, 2] = rec["x"], rec["y"], rec["z"]
            return out
    # Visibility/presence fields or a future layout: the slow, always-correct path.
    return np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], dtype=np.float64)


def _bbox_area(lm: np.ndarray) -> float:
    return float(np.ptp(lm[:, 0]) * np.ptp(lm[:, 1]))


class FaceLandmarker:
    """Owns FaceMesh and the full-range face detector; ``detect(rgb)`` -> :class:`FaceLandmarks`.

    ``static_image_mode=False`` (streams) uses FaceMesh tracking, which is several times cheaper per frame than
    detection; ``True`` (independent images) detects every time and counts faces on every image.
    ``fallback`` runs ``face_detection`` (``model_selection=1``, full range) where FaceMesh finds no face and
    meshes an enlarged crop around the detected box, so small or distant faces are still found.
    """

    def __init__(self, static_image_mode: bool = False, fallback: bool = True,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        import mediapipe as mp

        self.static_image_mode = static_image_mode
        self.fallback = fallback
        with quiet_stderr():
            # Streams track one face (the student); images may hold several, we keep the largest.
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static_image_mode,
                max_num_faces=1 if not static_image_mode else 5,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
            self._crop_mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
            )
            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=min_detection_confidence
            )
            # Their worker threads log start-up warnings shortly after construction; one blank frame through
            # each graph waits for that while stderr is still silenced.
            blank = np.zeros((64, 64, 3), np.uint8)
            for graph in (self._mesh, self._crop_mesh, self._detector):
                graph.process(blank)
        self._closed = False
        self._warm: set[int] = set()
        self._last_count_t: float | None = None
        self._count = 0

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graphs; calling it again is harmless."""
        if self._closed:
            return
        self._closed = True
        for graph in (self._mesh, self._crop_mesh, self._detector):
            graph.close()

    def _run(self, graph, rgb: np.ndarray):
        # Some warnings only come with the first face a graph finds (landmark projection set-up), so stderr
        # stays quiet around a graph's calls until it has found one.
        if id(graph) in self._warm:
            return graph.process(rgb)
        with quiet_stderr():
            result = graph.process(rgb)
        if getattr(result, "multi_face_landmarks", None) or getattr(result, "detections", None):
            self._warm.add(id(graph))
        return result

    def _detections(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """Full-range detector boxes as (xmin, ymin, width, height, score), normalised, largest first."""
        result = self._run(self._detector, rgb)
        boxes = []
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            boxes.append((b.xmin, b.ymin, b.width, b.height, float(det.score[0])))
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes

    def _mesh_on_crop(self, rgb: np.ndarray, box: tuple[float, float, float, float, float]) -> np.ndarray | None:
        import cv2

        h, w = rgb.shape[:2]
        cx, cy = (box[0] + box[2] / 2) * w, (box[1] + box[3] / 2) * h
        side = max(box[2] * w, box[3] * h) * CROP_SCALE
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        s = max(2, int(round(side)))
        # Pad where the square crop leaves the image, so the face stays centred and unstretched.
        crop = np.zeros((s, s, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + s), min(h, y0 + s)
        if sx1 <= sx0 or sy1 <= sy0:
            return None
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        zoom = 1.0
        if s < CROP_MIN_SIDE:
            zoom = CROP_MIN_SIDE / s
            crop = cv2.resize(crop, (CROP_MIN_SIDE, CROP_MIN_SIDE), interpolation=cv2.INTER_CUBIC)
        result = self._run(self._crop_mesh, crop)
        if not result.multi_face_landmarks:
            return None
        lm = _to_array(result.multi_face_landmarks[0])
        side_px = crop.shape[0] / zoom
        out = np.empty_like(lm)
        out[:, 0] = (lm[:, 0] * side_px + x0) / w
        out[:, 1] = (lm[:, 1] * side_px + y0) / h
        out[:, 2] = lm[:, 2] * side_px / w
        return out

    def detect(self, rgb: np.ndarray, t: float | None = None) -> FaceLandmarks:
        """Landmarks of the largest face in an RGB uint8 frame.

        ``t`` (seconds, default: the clock) paces the once-a-second face count in stream mode.
        """
        if self._closed:
            raise RuntimeError("this FaceLandmarker is closed; create a new one (use it in a `with` block)")
        h, w = rgb.shape[:2]
        t = time.monotonic() if t is None else t
        result = self._run(self._mesh, rgb)
        meshes = [_to_array(face) for face in (result.multi_face_landmarks or [])]
        boxes = None
        if self.static_image_mode:
            boxes = self._detections(rgb)
            count = max(len(meshes), len(boxes))
        elif not meshes:
            boxes = self._detections(rgb) if self.fallback else []
            count = len(boxes)
            self._last_count_t, self._count = t, count
        elif self._last_count_t is None or not 0 <= t - self._last_count_t < COUNT_INTERVAL:
            boxes = self._detections(rgb)
            self._last_count_t, self._count = t, max(1, len(boxes))
            count = self._count
        else:
            count = max(1, self._count)
        if meshes:
            lm = max(meshes, key=_bbox_area)
            return FaceLandmarks(lm, count, (w, h), via="mesh")
        if self.fallback and boxes:
            for box in boxes:
                lm = self._mesh_on_crop(rgb, box)
                if lm is not None:
                    return FaceLandmarks(lm, max(count, 1), (w, h), score=box[4], via="detector")
        return FaceLandmarks(None, count, (w, h))
