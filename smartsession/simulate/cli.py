"""``smartsession simulate``: the mock classroom from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json

from smartsession.simulate.scenario import SCENARIOS, ScenarioError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="a mock classroom: N synthetic students publishing through the real hub protocol",
        description=(
            "Join N synthetic students to a class and publish plausible states (a Markov chain per student "
            "with personalities; scripted segments, engagement drops, late arrivals). With --teacher-token "
            "the simulator also starts the scenario's lecture segments. Built-in scenarios: "
            + ", ".join(SCENARIOS)
            + "; or a JSON file (docs/REPORT.md describes the format)."
        ),
    )
    p.add_argument("--url", default=None, help="hub URL, e.g. http://127.0.0.1:8866 (default: $SMARTSESSION_HUB_URL)")
    p.add_argument("--class", dest="class_id", required=True, help="class id")
    p.add_argument("--join", dest="join_code", required=True, help="the class's join code")
    p.add_argument("--students", type=int, default=10, help="number of students (default 10)")
    p.add_argument("--rate", type=float, default=5.0, help="states per student per second (default 5)")
    p.add_argument("--duration", type=float, default=None, help="seconds of lesson (default: scenario's, else 300)")
    p.add_argument("--scenario", default=None, help=f"{' | '.join(SCENARIOS)} | FILE.json (default lecture)")
    p.add_argument("--teacher-token", default=None, help="teacher token: also drive the scenario's segments")
    p.add_argument(
        "--speed", type=float, default=1.0,
        help="time compression: 10 plays a 10-minute lesson in one minute, with capture times on the "
             "simulated timeline (ending now); rate x speed must stay under the hub's 20 messages/s",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same lesson)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    url = args.url or os.environ.get("SMARTSESSION_HUB_URL")
    if not url:
        print("smartsession simulate: give --url (e.g. http://127.0.0.1:8866) or set SMARTSESSION_HUB_URL", file=sys.stderr)
        return 2
    from smartsession.hub.client import HubError
    from smartsession.simulate.runner import run_simulation

    try:
        result = asyncio.run(
            run_simulation(
                url, args.class_id, args.join_code, args.students, args.rate, args.duration,
                scenario=args.scenario, teacher_token=args.teacher_token, seed=args.seed, speed=args.speed,
                progress=lambda line: print(line, flush=True),
            )
        )
    except (ScenarioError, ValueError, HubError, OSError) as exc:
        print(f"smartsession simulate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result.summary()))
    return 0
