"""``smartsession labels``: labelled rows from stored classroom sessions (check-in answers, research use only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "labels",
        help="labelled rows from stored sessions: check-in answers with the states before them (research use only)",
        description=(
            "Turn stored sessions into labelled rows: each check-in answer joined with the answering student's "
            "states, engagement and named scalars in the seconds before it (never frames). Only check-ins the "
            "teacher sent with 'use answers for research' and answers of students who agreed on their consent "
            "screen. Students appear under a per-session pseudonym."
        ),
    )
    p.add_argument("--data-dir", default=None, help="the hub's data directory (default: the hub's default)")
    p.add_argument("--store", default=None, metavar="URL", help="a shared store (postgresql://...) instead")
    p.add_argument("--class", dest="class_id", default=None, help="only this class's sessions")
    p.add_argument("--window", type=float, default=30.0, help="seconds of states before each answer (default 30)")
    p.add_argument("--out", default="classroom_labels.csv", help="output .csv or .parquet (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smartsession.dataset.classroom import attention_agreement, labelled_rows
    from smartsession.hub.pgstore import open_store

    if args.store:
        target = args.store
    else:
        from smartsession.hub.config import HubConfig

        target = str(Path(args.data_dir or HubConfig().data_dir).expanduser())
        if not (Path(target) / "smartsession.sqlite3").exists():
            print(f"smartsession labels: no session store in {target}: pass the hub's --data-dir", file=sys.stderr)
            return 1
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        print("smartsession labels: --out must end in .csv or .parquet", file=sys.stderr)
        return 2
    try:
        with open_store(target) as store:
            rows = labelled_rows(store, args.class_id, args.window)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"smartsession labels: {exc}", file=sys.stderr)
        return 1
    rows.to_csv(out, index=False) if out.suffix.lower() == ".csv" else rows.to_parquet(out, index=False)
    agree = attention_agreement(rows)
    share = "-" if agree["agreement"] is None else f"{100 * agree['agreement']:.0f}%"
    print(f"{out}: {len(rows)} labelled rows from {rows['session_id'].nunique() if len(rows) else 0} session(s); "
          f"'Where was your mind' vs camera attention: {agree['n']} pairs, agreement {share}")
    return 0
