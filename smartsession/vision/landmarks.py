"""Landmarks: MediaPipe FaceLandmarker (478 points, 52 blendshapes, head pose matrix) on an RGB frame.

Second arrow of the pipeline: frame -> :class:`FaceLandmarks` of the largest face plus how many faces are in view.
Small or far faces, which the landmarker's short-range detector misses, are found by running that same detector
on overlapping tiles of the frame and the landmarker on an enlarged crop around what it finds.
"""

from __future__ import annotations

import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smartsession.vision.native_stderr import quiet_stderr

# MediaPipe's C++ runtime logs with absl before anyone initialised absl's logging, so every INFO and WARNING
# line it writes goes straight to file descriptor 2, and no environment variable or Python API turns them off
# (GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL are not read; measured with mediapipe 1.2). The runtime's calls
# below therefore run inside quiet_stderr(); its errors still reach us, as exceptions from its C API.

N_LANDMARKS = 478
#: The 52 blendshapes in the order FaceLandmarker returns them (ARKit names; "Left" is the person's left).
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
N_BLENDSHAPES = len(BLENDSHAPE_NAMES)

#: Images may hold several faces; the largest is analysed, the others are counted.
MAX_FACES = 5
#: A detector box is enlarged by this factor before the landmarker runs on the crop, so the whole head is in it.
CROP_SCALE = 2.2
#: Crops smaller than this are upscaled first: the landmarker's detector wants a face of usual size.
CROP_MIN_SIDE = 256
#: Tiles for the small-face search, as shares of the frame's shorter side; neighbours overlap by half a tile,
#: so a face up to a quarter of the tile lies whole inside one. The detector finds faces down to about a fifth
#: of its input, so half-side tiles reach faces about a tenth of the shorter side, quarter-side tiles a
#: twentieth. Images try both; streams only the first, since a student that far away is too small to read anyway.
TILE_SHARES = (0.5, 0.25)
#: In stream mode the frame is searched tile by tile at most this often (seconds) while no face is tracked,
#: and faces are counted on the whole frame at most this often: both change rarely, and each costs a detector run.
SEARCH_INTERVAL = 0.5
COUNT_INTERVAL = 1.0
#: The small-face search keeps only detections at least this confident: scanning dozens of tiles gives the
#: detector dozens of chances to see a face in a pattern (an animated title card scored 0.59).
SEARCH_MIN_SCORE = 0.7
#: Detector boxes that overlap more than this (intersection over union) are the same face seen in two tiles.
SAME_FACE_IOU = 0.3


def head_pose(matrices: np.ndarray) -> np.ndarray:
    """(n, 3) yaw, pitch, roll in degrees from (n, 4, 4) facial transformation matrices.

    The matrix maps MediaPipe's canonical face (x towards the image's right on a frontal face, y up, z out of
    the face) into camera space (x right, y up, z towards the viewer); its third column is where the face points.
    yaw > 0: the face turns towards the image's right; pitch > 0: up; roll > 0: clockwise in the image.
    """
    r = np.asarray(matrices, dtype=np.float64)[:, :3, :3]
    fwd, right = r[:, :, 2], r[:, :, 0]
    yaw = np.degrees(np.arctan2(fwd[:, 0], fwd[:, 2]))
    pitch = np.degrees(np.arctan2(fwd[:, 1], np.hypot(fwd[:, 0], fwd[:, 2])))
    roll = np.degrees(np.arctan2(-right[:, 1], right[:, 0]))
    return np.stack([yaw, pitch, roll], axis=1)


@dataclass
class FaceLandmarks:
    """The largest face in a frame: landmarks, blendshapes and pose matrix, and how many faces were seen."""

    landmarks: np.ndarray | None  # (478, 3): x / width, y / height, z / width; None when no face
    faces: int
    image_size: tuple[int, int]  # (width, height) in pixels
    blendshapes: np.ndarray | None = None  # (52,) in BLENDSHAPE_NAMES order, each 0-1
    matrix: np.ndarray | None = None  # (4, 4) facial transformation matrix (canonical face -> camera, cm)
    score: float = math.nan  # detector confidence when the small-face search found the face
    via: str = "none"  # "landmarker", "search" (landmarker on an enlarged detector crop) or "none"

    @property
    def face(self) -> bool:
        return self.landmarks is not None

    @property
    def head_pose(self) -> tuple[float, float, float] | None:
        """(yaw, pitch, roll) in degrees from the pose matrix; None without a face."""
        if self.matrix is None:
            return None
        yaw, pitch, roll = head_pose(self.matrix[None])[0]
        return float(yaw), float(pitch), float(roll)


def _landmarks_array(points) -> np.ndarray:
    out = np.empty((len(points), 3))
    for i, p in enumerate(points):
        out[i, 0], out[i, 1], out[i, 2] = p.x, p.y, p.z
    return out


def _bbox_area(lm: np.ndarray) -> float:
    return float(np.ptp(lm[:, 0]) * np.ptp(lm[:, 1]))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax1, bx1) - max(a[0], b[0])), max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def tiles(width: int, height: int, share: float = TILE_SHARES[0]) -> list[tuple[int, int, int]]:
    """Square tiles (x0, y0, side) covering the frame, neighbours overlapping by half a tile."""
    side = max(16, int(min(width, height) * share))
    step = side // 2

    def starts(extent: int) -> list[int]:
        if extent <= side:
            return [0]
        out = list(range(0, extent - side, step))
        return out + [extent - side]

    return [(x, y, side) for y in starts(height) for x in starts(width)]


class FaceLandmarker:
    """Owns MediaPipe's FaceLandmarker (and its face detector); ``detect(rgb)`` -> :class:`FaceLandmarks`.

    ``static_image_mode=False`` (streams) runs the landmarker in VIDEO mode, which tracks the face from frame to
    frame instead of detecting it every time; ``True`` (independent images) runs IMAGE mode and counts faces on
    every image. ``search`` finds faces too small for the landmarker's detector (see the module docstring).
    ``model_path`` defaults to the cached, checksummed model (fetched on first use).
    """

    def __init__(self, static_image_mode: bool = False, search: bool = True, model_path: str | Path | None = None,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        from smartsession.vision import model_file

        path = Path(model_path) if model_path is not None else model_file.ensure()
        try:
            detector_model = zipfile.ZipFile(path).read("face_detector.tflite")
        except (zipfile.BadZipFile, KeyError) as err:
            raise model_file.ModelMissingError(f"{path} is not a FaceLandmarker task bundle: {err}") from err
        self._mp = mp
        self.static_image_mode = static_image_mode
        self.search = search
        mode = vision.RunningMode.IMAGE if static_image_mode else vision.RunningMode.VIDEO

        def landmarker(running_mode, faces):
            return vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(path)), running_mode=running_mode, num_faces=faces,
                min_face_detection_confidence=min_detection_confidence,
                min_face_presence_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
                output_face_blendshapes=True, output_facial_transformation_matrixes=True,
            ))

        with quiet_stderr():
            # Streams follow one face (the student); images may hold several, the largest is kept.
            self._main = landmarker(mode, 1 if not static_image_mode else MAX_FACES)
            self._detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=detector_model), running_mode=vision.RunningMode.IMAGE,
                min_detection_confidence=min_detection_confidence,
            ))
            # Their threads log set-up lines on the first frames; a blank frame through each, while stderr is quiet.
            blank = self._image(np.zeros((64, 64, 3), np.uint8))
            self._main.detect(blank) if static_image_mode else self._main.detect_for_video(blank, 0)
            self._detector.detect(blank)
        # The landmarker for crops of small faces costs ~20 MB: made on the first small face, not before.
        self._crop = None
        self._new_crop_landmarker = lambda: landmarker(vision.RunningMode.IMAGE, 1)
        self._last_ms = 0
        self._closed = False
        self._last_count_t: float | None = None
        self._last_search_t: float | None = None
        self._count = 0
        self._roi: tuple[float, float, float, float, float] | None = None  # last small face found by the search

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe tasks; calling it again is harmless."""
        if self._closed:
            return
        self._closed = True
        with quiet_stderr():  # the runtime logs each accelerator it tears down
            for task in (self._main, self._crop, self._detector):
                if task is not None:
                    task.close()

    def _image(self, rgb: np.ndarray):
        return self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))

    def _detections(self, rgb: np.ndarray, x0: int = 0, y0: int = 0, w: int | None = None, h: int | None = None):
        """Detector boxes as (xmin, ymin, width, height, score), normalised to the whole frame of size (w, h)."""
        fh, fw = rgb.shape[:2]
        w, h = w or fw, h or fh
        boxes = []
        for det in self._detector.detect(self._image(rgb)).detections:
            b = det.bounding_box
            boxes.append(((b.origin_x + x0) / w, (b.origin_y + y0) / h, b.width / w, b.height / h,
                          float(det.categories[0].score)))
        return boxes

    def _search(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """Faces anywhere in the frame, the small ones included: whole frame, then overlapping tiles; largest first."""
        h, w = rgb.shape[:2]
        boxes = self._detections(rgb)
        for share in TILE_SHARES if self.static_image_mode else TILE_SHARES[:1]:
            if boxes and share != TILE_SHARES[0]:
                break  # the finer tiles only look for faces when the coarser ones found none
            for x, y, side in tiles(w, h, share):
                for box in self._detections(rgb[y:y + side, x:x + side], x, y, w, h):
                    if box[4] >= SEARCH_MIN_SCORE and all(_iou(box, b) < SAME_FACE_IOU for b in boxes):
                        boxes.append(box)
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes

    def _on_crop(self, rgb: np.ndarray, box: tuple[float, ...]):
        """The landmarker on a square crop around ``box``; landmarks mapped back to the whole frame."""
        import cv2

        h, w = rgb.shape[:2]
        cx, cy = (box[0] + box[2] / 2) * w, (box[1] + box[3] / 2) * h
        s = max(2, int(round(max(box[2] * w, box[3] * h) * CROP_SCALE)))
        x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + s), min(h, y0 + s)
        if sx1 <= sx0 or sy1 <= sy0:
            return None
        # Padded where the square leaves the frame, so the face stays centred and unstretched.
        crop = np.zeros((s, s, 3), np.uint8)
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        if s < CROP_MIN_SIDE:
            crop = cv2.resize(crop, (CROP_MIN_SIDE, CROP_MIN_SIDE), interpolation=cv2.INTER_CUBIC)
        if self._crop is None:  # made on the first small face, inside detect's quiet_stderr like every call here
            self._crop = self._new_crop_landmarker()
        result = self._crop.detect(self._image(crop))
        if not result.face_landmarks:
            return None
        lm = _landmarks_array(result.face_landmarks[0])
        out = np.empty_like(lm)
        out[:, 0] = (lm[:, 0] * s + x0) / w
        out[:, 1] = (lm[:, 1] * s + y0) / h
        out[:, 2] = lm[:, 2] * s / w
        return out, result, 0

    def _timestamp(self, t: float) -> int:
        # VIDEO mode needs strictly increasing integer milliseconds, whatever clock the caller uses.
        ms = max(self._last_ms + 1, int(t * 1000))
        self._last_ms = ms
        return ms

    def detect(self, rgb: np.ndarray, t: float | None = None) -> FaceLandmarks:
        """Landmarks of the largest face in an RGB uint8 frame.

        ``t`` (seconds, default: the clock) is the frame's time in stream mode: it drives tracking and paces the
        face count and the small-face search.
        """
        if self._closed:
            raise RuntimeError("this FaceLandmarker is closed; create a new one (use it in a `with` block)")
        # The runtime's notes come on any frame, not only the first: LiteRT says once per process, on the first
        # inference whose input tensor MediaPipe happened to allocate off its 64-byte alignment, that it copies
        # it ("Input tensor memory is not aligned ... Reallocating memory and copying data"), and the crop
        # landmarker, made on the first small face, logs its set-up on its first frames.
        with quiet_stderr():
            return self._detect(rgb, t)

    def _detect(self, rgb: np.ndarray, t: float | None) -> FaceLandmarks:
        h, w = rgb.shape[:2]
        t = time.monotonic() if t is None else t
        image = self._image(rgb)
        if self.static_image_mode:
            result = self._main.detect(image)
        else:
            result = self._main.detect_for_video(image, self._timestamp(t))
        faces = [(_landmarks_array(points), result, i) for i, points in enumerate(result.face_landmarks)]
        boxes: list = []
        if self.static_image_mode:
            # An image is analysed once: worth the whole search, which also counts faces too small to mesh.
            boxes = self._search(rgb) if self.search else self._detections(rgb)
            count = max(len(faces), len(boxes))
        elif faces:
            self._roi = None
            if self._last_count_t is None or not 0 <= t - self._last_count_t < COUNT_INTERVAL:
                self._last_count_t, self._count = t, len(self._detections(rgb))
            count = max(1, self._count)
        else:
            count = 0
            if self.search:
                if self._roi is not None:
                    found = self._on_crop(rgb, self._roi)
                    if found is not None:
                        return self._result(found, (w, h), max(1, self._count), self._roi[4], "search", True)
                    self._roi = None
                if self._last_search_t is None or not 0 <= t - self._last_search_t < SEARCH_INTERVAL:
                    self._last_search_t = t
                    boxes = self._search(rgb)
                    self._count = count = len(boxes)
        if faces:
            best = max(faces, key=lambda f: _bbox_area(f[0]))
            return self._result(best, (w, h), count, math.nan, "landmarker")
        for box in boxes:
            found = self._on_crop(rgb, box)
            if found is not None:
                if not self.static_image_mode:
                    self._roi = box
                return self._result(found, (w, h), max(count, 1), box[4], "search", not self.static_image_mode)
        return FaceLandmarks(None, count, (w, h))

    def _result(self, found, size, count, score, via, track: bool = False) -> FaceLandmarks:
        lm, result, i = found
        if track:
            # Follow the small face: the next frame's crop is centred on where its landmarks are now.
            (w, h), (bw, bh) = size, np.ptp(lm[:, :2], axis=0)
            cx, cy = lm[:, 0].min() + bw / 2, lm[:, 1].min() + bh / 2
            side = max(bw * w, bh * h)  # pixels, like a detector box around the face
            self._roi = (cx - side / w / 2, cy - side / h / 2, side / w, side / h, score)
        # Both are asked for; should a model ever leave them out, NaN features make the quality rule say so.
        shapes = np.full(N_BLENDSHAPES, np.nan)
        if result.face_blendshapes and len(result.face_blendshapes[i]) == N_BLENDSHAPES:
            shapes = np.array([c.score for c in result.face_blendshapes[i]])
        matrix = np.full((4, 4), np.nan)
        if result.facial_transformation_matrixes:
            matrix = np.asarray(result.facial_transformation_matrixes[i], dtype=np.float64).reshape(4, 4)
        return FaceLandmarks(lm, count, size, blendshapes=shapes, matrix=matrix, score=score, via=via)
