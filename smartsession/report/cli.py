"""``smartsession report SESSION``: the after-lesson report of a stored session, as HTML and tables.

Imports pandas/plotly only when the command runs, so ``smartsession --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="after-lesson report of a session: HTML (works offline) plus CSV/Parquet tables",
        description=(
            "Build the report of one stored session: class engagement over time with lecture segments, "
            "segments ranked by drop below the session baseline, the moments engagement fell, per-student "
            "timelines (anonymised). SESSION is a session id in the store, 'latest', or a session export "
            "file (.csv/.parquet/.json)."
        ),
    )
    p.add_argument("session", metavar="SESSION", help="session id, 'latest', or a session export file")
    p.add_argument("--data-dir", default=None, help="the hub's data directory (default: the hub's default)")
    p.add_argument("--store", default=None, metavar="URL",
                   help="the shared store of a scale-out deployment (postgresql://...), instead of --data-dir")
    p.add_argument("--out", default=None, help="output directory (default: ./report-<SESSION>)")
    p.add_argument(
        "--format", default="html,csv", help="comma-separated: html, csv, parquet (default: html,csv)"
    )
    p.add_argument("--names", action="store_true", help="show students' names instead of anonymised labels")
    p.add_argument("--bin", type=float, default=5.0, help="seconds per time bin of the class series (default 5)")
    p.add_argument("--window", type=float, default=60.0, help="seconds compared before/after a drop (default 60)")
    p.add_argument("--min-group", type=int, default=3, help="fewest students a segment aggregate shows (default 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smartsession.report.analysis import ReportSettings
    from smartsession.report.build import EXPORT_FORMATS, build_report

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad or not formats:
        print(f"smartsession report: --format takes {', '.join(EXPORT_FORMATS)}, got {args.format!r}", file=sys.stderr)
        return 2
    path = Path(args.session)
    if path.suffix.lower() in (".csv", ".parquet", ".json") and path.exists():
        source, session_id = path, None
    elif args.store:
        source, session_id = args.store, None if args.session == "latest" else args.session
    else:
        source = Path(args.data_dir).expanduser() if args.data_dir else _default_data_dir()
        session_id = None if args.session == "latest" else args.session
    try:
        settings = ReportSettings(bin_s=args.bin, window_s=args.window, min_group=args.min_group)
        report = build_report(source, session_id, settings=settings, names=args.names)
    except (LookupError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"smartsession report: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out or f"report-{report.session_id or 'session'}")
    for written in report.write(out, formats):
        print(written)
    print(
        f"{report.n_students} students, {report.minutes:.0f} min of data, {len(report.segments)} "
        f"{'windows' if report.windows else 'segments'}, {len(report.drops)} drop(s)"
    )
    return 0


def _default_data_dir() -> Path:
    from smartsession.hub.config import HubConfig

    return Path(HubConfig().data_dir).expanduser()
