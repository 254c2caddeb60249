"""Benchmark: the whole analysis pipeline per frame next to a bare MediaPipe FaceLandmarker loop, same frames, same run.

The bare loop is what anyone would write with MediaPipe's Tasks API: VIDEO mode, blendshapes and the pose matrix
on, results read into Python. Prints median/p90 per stage and for both, and their ratio (target <= 1.3);
last line ``BENCH {json}`` with ``pipeline_ms_p50``, ``landmarker_ms_p50`` and ``ratio``.
Usage: python benchmarks/pipeline.py [--frames N] [--model FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import cv2
import numpy as np

from smartsession.analysis import Analyzer
from smartsession.dataset.media import pyfeat_file
from smartsession.vision.native_stderr import quiet_stderr

VIDEO = "WolfgangLanger_Pexels.mp4"  # a real face, sad to laughing, 640x360 at 24 fps
SIZE = (640, 480)


def frames_640x480(limit: int) -> list[np.ndarray]:
    """The video's frames letterboxed (not stretched) to 640x480 RGB, so face geometry stays true."""
    cap = cv2.VideoCapture(str(pyfeat_file(VIDEO)))
    out = []
    while len(out) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        scale = min(SIZE[0] / w, SIZE[1] / h)
        small = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        y0, x0 = (SIZE[1] - small.shape[0]) // 2, (SIZE[0] - small.shape[1]) // 2
        canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        out.append(np.ascontiguousarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)))
    cap.release()
    return out


def stats(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=472, help="frames of the video to use (default: all 472)")
    parser.add_argument("--model", default=None, help="state model file (default: the packaged one)")
    args = parser.parse_args()

    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from smartsession.vision import model_file

    frames = frames_640x480(args.frames)
    fps = 24.0
    with quiet_stderr():
        bare = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_file.ensure())), running_mode=vision.RunningMode.VIDEO,
            num_faces=1, output_face_blendshapes=True, output_facial_transformation_matrixes=True))
        bare.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=frames[0]), 0)

    def bare_landmarks(frame, timestamp_ms):
        result = bare.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame), timestamp_ms)
        for face, shapes, matrix in zip(result.face_landmarks, result.face_blendshapes,
                                        result.facial_transformation_matrixes):
            return (np.array([(p.x, p.y, p.z) for p in face]), np.array([c.score for c in shapes]),
                    np.asarray(matrix))
        return None

    bare_ms: list[float] = []
    total_ms: list[float] = []
    stages: dict[str, list[float]] = {}
    with bare, Analyzer(mode="stream", model=args.model) as analyzer:
        analyzer.process(frames[0], t=0.0)  # warm-up for both graphs, not measured
        for i, frame in enumerate(frames):
            t = (i + 1) / fps
            # Alternate which runs first so neither always gets the warmer caches.
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for which in order:
                start = time.perf_counter()
                if which == 0:
                    bare_landmarks(frame, int(t * 1000))
                    bare_ms.append((time.perf_counter() - start) * 1e3)
                else:
                    analyzer.process(frame, t=t)
                    total_ms.append((time.perf_counter() - start) * 1e3)
                    for name, ms in analyzer.stage_ms.items():
                        stages.setdefault(name, []).append(ms)

    # Live pages receive JPEG bytes from the browser: decoding them is measured here, outside the ratio.
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
             for f in frames[:100]]
    from smartsession.vision.frames import decode

    decode_ms = []
    for data in jpegs:
        start = time.perf_counter()
        decode(data)
        decode_ms.append((time.perf_counter() - start) * 1e3)

    print(f"machine: {platform.machine()}, {platform.processor() or platform.system()}, "
          f"python {platform.python_version()}, mediapipe {mp.__version__}")
    print(f"video: {VIDEO}, {len(frames)} frames letterboxed to {SIZE[0]}x{SIZE[1]}")
    print(f"{'stage':28} {'p50 ms':>8} {'p90 ms':>8}")
    for name, ms in stages.items():
        print(f"  {name:26} {stats(ms)[0]:8.3f} {stats(ms)[1]:8.3f}")
    p50, p90 = stats(total_ms)
    b50, b90 = stats(bare_ms)
    print(f"{'whole pipeline':28} {p50:8.3f} {p90:8.3f}")
    print(f"{'bare FaceLandmarker (VIDEO)':28} {b50:8.3f} {b90:8.3f}")
    print(f"{'JPEG decode (live pages)':28} {stats(decode_ms)[0]:8.3f} {stats(decode_ms)[1]:8.3f}")
    ratio = p50 / b50
    print(f"ratio pipeline / FaceLandmarker (p50): {ratio:.3f}  (target <= 1.3)")
    print("BENCH " + json.dumps({
        "pipeline_ms_p50": round(p50, 3), "landmarker_ms_p50": round(b50, 3), "ratio": round(ratio, 3),
        "pipeline_ms_p90": round(p90, 3), "landmarker_ms_p90": round(b90, 3), "frames": len(frames),
    }))


if __name__ == "__main__":
    main()
