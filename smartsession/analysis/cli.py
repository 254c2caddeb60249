"""``smartsession analyze``: run the analysis on images, folders of images, videos or a webcam; one record per frame.

Records go to stdout (or ``-o``) as JSON lines or CSV; every bad file gets one error line on stderr and the run goes on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Show a progress bar only when there are at least this many frames to analyse.
PROGRESS_MIN_FRAMES = 50


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="analyse images, folders, videos or a webcam: one record per frame",
        description=(
            "Analyse faces in images, folders of images (searched recursively), video files or a local webcam "
            "(give its index, e.g. 0). Writes one record per image or analysed video frame: state, engagement, "
            "confidence and the named features. Bad files get one error line each; the run goes on and the "
            "exit code is 1 if any failed."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image, folder of images, video file, or webcam index")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default: jsonl)")
    p.add_argument("--fps", type=float, default=None,
                   help="analyse N frames per second of video (default: every frame)")
    p.add_argument("--no-emotions", action="store_true",
                   help="attention states only: never report happy or confused (EU AI Act art. 5(1)(f))")
    p.add_argument("--model", metavar="FILE", default=None,
                   help="a state model exported by notebooks/04 (default: the one shipped in the package)")
    p.add_argument("-o", "--output", metavar="FILE", help="write records to FILE instead of stdout")
    p.set_defaults(func=run)


def _inputs(paths: list[str], image_suffixes, video_suffixes) -> list[tuple[str, str]]:
    """(kind, path) for each input: "image", "video", "camera" or "missing"; folders expand to their images."""
    out = []
    for raw in paths:
        path = Path(raw)
        if raw.isdigit() and not path.exists():
            out.append(("camera", raw))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in image_suffixes)
            if not found:
                out.append(("empty", raw))
            out.extend(("image", str(p)) for p in found)
        elif not path.exists():
            out.append(("missing", raw))
        elif path.suffix.lower() in video_suffixes:
            out.append(("video", raw))
        else:
            out.append(("image", raw))
    return out


class _Writer:
    """JSON lines or CSV, one record at a time; CSV columns come from the first record."""

    def __init__(self, stream, fmt: str):
        self.stream, self.fmt, self._csv = stream, fmt, None

    def write(self, record: dict) -> None:
        if self.fmt == "jsonl":
            import json

            self.stream.write(json.dumps(record) + "\n")
        else:
            if self._csv is None:
                import csv

                self._csv = csv.DictWriter(self.stream, fieldnames=list(record), extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerow(record)
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from smartsession.analysis.analyzer import Analyzer
    from smartsession.classify.model import ModelError, load_state_model
    from smartsession.vision import frames
    from smartsession.vision.native_stderr import quiet_stderr

    if args.fps is not None and not args.fps > 0:
        print(f"error: --fps must be a positive number, got {args.fps}", file=sys.stderr)
        return 2
    inputs = _inputs(args.paths, frames.IMAGE_SUFFIXES, frames.VIDEO_SUFFIXES)
    try:
        model = load_state_model(args.model)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    total = 0
    for kind, path in inputs:
        if kind == "image":
            total += 1
        elif kind == "video":
            try:
                native, count = frames.video_info(path)
            except frames.FrameError:
                continue
            total += count if args.fps is None else int(count / native * args.fps) + 1
    failed = 0
    emotions = not args.no_emotions
    stream = open(args.output, "w", newline="") if args.output else sys.stdout
    writer = _Writer(stream, args.format)
    bar = tqdm(total=total or None, unit="frame", file=sys.stderr, disable=True if total < PROGRESS_MIN_FRAMES else None)

    def fail(message: str) -> None:
        nonlocal failed
        failed += 1
        bar.write(f"error: {message}", file=sys.stderr)

    # MediaPipe's runtime logs its own notes on fd 2 now and then (an input tensor it realigned, say); this
    # command's stderr is for the user's errors and progress, so each analysis runs with fd 2 quiet (one
    # thread here: nothing else is silenced).
    try:
        with Analyzer(emotions=emotions, mode="image", model=model) as images, \
                Analyzer(emotions=emotions, mode="stream", model=model) as videos:
            for kind, path in inputs:
                if kind == "missing":
                    fail(f"{path}: no such file, folder or webcam index; check the path")
                elif kind == "empty":
                    fail(f"{path}: folder holds no images ({', '.join(frames.IMAGE_SUFFIXES)})")
                elif kind == "image":
                    try:
                        rgb = frames.read_image(path)
                        with quiet_stderr():
                            obs = images.process(rgb, source=path, frame_index=0)
                        writer.write(obs.to_record())
                    except frames.FrameError as err:
                        fail(str(err))
                    except Exception as err:  # one bad file must not end the run
                        fail(f"{path}: could not analyse it ({type(err).__name__}: {err})")
                    bar.update(1)
                else:
                    videos.reset()
                    try:
                        source = (frames.read_camera(int(path), args.fps) if kind == "camera"
                                  else frames.read_video(path, args.fps))
                        analysed = 0
                        for vf in source:
                            with quiet_stderr():
                                obs = videos.process(vf.rgb, t=vf.t, source=path, frame_index=vf.index)
                            writer.write(obs.to_record())
                            analysed += 1
                            bar.update(1)
                        if analysed == 0:
                            fail(f"{path}: no frames could be read; the video is empty or corrupt")
                    except frames.FrameError as err:
                        fail(str(err))
                    except KeyboardInterrupt:
                        if kind != "camera":
                            raise
                    except Exception as err:
                        fail(f"{path}: could not analyse it ({type(err).__name__}: {err})")
    finally:
        bar.close()
        if stream is not sys.stdout:
            stream.close()
    return 1 if failed else 0
