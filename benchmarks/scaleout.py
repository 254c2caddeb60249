"""The scale-out deployment under a district's load: N hub nodes on one PostgreSQL and one Redis behind nginx.

Run: ``python benchmarks/scaleout.py`` (loopback only; needs postgresql, nginx and redis-server installed, as
.ci/run installs them). Last line: ``BENCH {"nodes", "students", "delivered_ratio", "p99_ms", "stored_ratio",
"report_s"}``.

Every server is the real one, started as the tests start them (tests/testkit/processes.py): ``smartsession hub`` nodes
with ``--store postgresql://...`` and ``--redis-url``, nginx with deploy/nginx/smartsession.conf. Students
(30 per class) connect through nginx, which sends each class to one node; each class's teacher connects
straight to a node chosen round-robin, so most teachers watch a class held by another node and see it
through Redis. The load generator is benchmarks/hub.py's (same message, same capture-to-teacher latency on
one clock, same niceness rules).

- ``delivered_ratio``: states the teachers received / states sent in the measured window.
- ``p99_ms``: teacher latency p99 (capture time to the teacher's receipt).
- ``stored_ratio``: per student, the acknowledged states (seq 1 .. the highest ack) found in PostgreSQL,
  over all acknowledged states; 1.0 means nothing acknowledged is missing (the unique index rules out twice).
- ``report_s``: ``build_report`` + ``to_html`` of a 60-minute, 30-student lesson at 5 Hz read from
  PostgreSQL (median of three), as benchmarks/report.py measures it on SQLite.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import secrets
import statistics
import tempfile
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # testkit: test and benchmark support

from smartsession.hub.pgstore import PostgresStore
from testkit.processes import HubProcess, Nginx, PostgresServer, RedisServer
from smartsession.report.build import build_report

HERE = Path(__file__).resolve().parent
SITE = HERE.parent / "deploy" / "nginx" / "smartsession.conf"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hub_bench = _module("hub")


def tree(root: int) -> list[int]:
    """``root`` and all its descendants (nginx and postgres run under runuser, with workers below)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return found


def usage(pids: list[int]) -> tuple[float, float]:
    """(CPU seconds so far, resident MB now) of these processes together."""
    cpu = rss = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / hub_bench.TICKS
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        except (OSError, IndexError, ValueError):
            pass
    return cpu, rss


def stored_of_acked(url: str, acked: dict[str, int]) -> tuple[int, int, int]:
    """(acknowledged states, those of them in the database, all states in the database)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT student_id, seq FROM states").fetchall()
    found = sum(1 for student_id, seq in rows if seq <= acked.get(student_id, -1))
    return sum(max(0, a) for a in acked.values()), found, len(rows)


def report_time(url: str) -> tuple[float, int]:
    report_bench = _module("report")
    with PostgresStore(url, batch_seconds=0.2) as store:
        tic = time.perf_counter()
        session_id, rows = report_bench.fill_store(store, 30, 60, 5.0)
        print(f"  stored a 60-minute lesson ({rows:,} states) in PostgreSQL in {time.perf_counter() - tic:.0f} s "
              "(not part of the report time)", flush=True)
        runs = []
        for _ in range(3):
            tic = time.perf_counter()
            build_report(store, session_id).to_html()
            runs.append(time.perf_counter() - tic)
    return statistics.median(runs), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=3, help="load processes")
    parser.add_argument("--no-report", action="store_true", help="skip the 60-minute report case")
    args = parser.parse_args()
    secret = secrets.token_hex(32)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.nodes} nodes, "
          f"{args.students} students at {args.rate:g} Hz", flush=True)
    with ExitStack() as stack:
        pg = stack.enter_context(PostgresServer())
        redis = stack.enter_context(RedisServer())
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="smartsession-scaleout-"))
        nodes = [stack.enter_context(HubProcess(Path(tmp) / f"node{i}", redis_url=redis.url, secret=secret,
                                                store_url=pg.url)) for i in range(args.nodes)]
        for node in nodes:
            hub_bench.prioritise(node.proc.pid, hub_bench.SERVER_NICE)
        lb = stack.enter_context(Nginx(SITE, [f"127.0.0.1:{n.port}" for n in nodes]))
        classes = hub_bench.layout("hub", args.students, secret)
        for i, c in enumerate(classes):
            c["teacher_url"] = f"ws://127.0.0.1:{nodes[i % len(nodes)].port}"
        ctx = mp.get_context("fork")
        ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Value("d", 0.0)
        shares = [share for share in (classes[i::args.workers] for i in range(args.workers)) if share]
        procs = [ctx.Process(target=hub_bench.load_process,
                             args=(f"ws://127.0.0.1:{lb.port}", share, args.rate, ready, go, out), daemon=True)
                 for share in shares]
        for p in procs:
            p.start()
        connected = sum(ready.get(timeout=600) for _ in procs)
        assert connected == args.students, (connected, args.students)
        per_node = [n.health()["students"] for n in nodes]
        postmaster = int((pg.dir / "data" / "postmaster.pid").read_text().split()[0])
        groups = {"hub nodes": [n.proc.pid for n in nodes], "postgresql": tree(postmaster),
                  "redis": [redis.proc.pid], "nginx": tree(lb.proc.pid)}
        start_at = time.time() + 0.5
        go.value = start_at
        time.sleep(max(0.0, start_at + hub_bench.WARM - time.time()))
        before = {k: usage(v)[0] for k, v in groups.items()}
        time.sleep(max(0.0, start_at + hub_bench.WARM + hub_bench.MEASURE - time.time()))
        after = {k: usage(v) for k, v in groups.items()}
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        time.sleep(1.0)  # the last commits' rows are in; acks were counted up to the load's end
        acked: dict[str, int] = {}
        for r in results:
            acked.update(r["acked"])
        acknowledged, found, in_db = stored_of_acked(pg.url, acked)
        dead = sum((Path(tmp) / f"node{i}" / "hub.log").read_text().count("closing a dead") for i in range(len(nodes)))
        sent = sum(r["sent"] for r in results)
        lat = sorted(x for r in results for x in r["latencies"])
        p99 = statistics.quantiles(lat, n=100)[98] * 1000 if len(lat) > 1 else float("nan")
        lags = sorted(x for r in results for x in r["lags"])
        print(f"  students per node: {per_node}; sent {sent} in the window, teachers got {len(lat)}; "
              f"generator tick lag p99 {lags[int(0.99 * (len(lags) - 1))] * 1000:.1f} ms; "
              f"clients closed as dead: {dead}", flush=True)
        print(f"  acknowledged {acknowledged} states, {found} of them in PostgreSQL ({in_db} states stored in all: "
              "the rest were committed after the load stopped counting acks)", flush=True)
        for k, (cpu, rss) in after.items():
            cores = (cpu - before[k]) / hub_bench.MEASURE
            print(f"  {k:10} {cores:5.2f} cores ({1000 * cores / args.students:.2f} millicores per student), "
                  f"{rss:7.0f} MB resident ({1024 * rss / args.students:.0f} kB per student)", flush=True)
        report_s = rows = None
        if not args.no_report:
            report_s, rows = report_time(pg.url.rsplit("/", 1)[0] + "/" + _fresh_db(pg.url))
            print(f"  report of a 60-minute lesson ({rows:,} states) from PostgreSQL: {report_s:.2f} s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)
    print("BENCH " + json.dumps({
        "nodes": args.nodes, "students": args.students,
        "delivered_ratio": round(len(lat) / sent, 4) if sent else 0.0,
        "p99_ms": round(p99, 1), "stored_ratio": round(found / acknowledged, 4) if acknowledged else 0.0,
        "report_s": round(report_s, 2) if report_s is not None else None,
    }))


def _fresh_db(url: str) -> str:
    """A database of its own for the report lesson, so its rows do not mix with the load's."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE report_lesson")
    return "report_lesson"


if __name__ == "__main__":
    sys.exit(main())
