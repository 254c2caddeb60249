"""Where a browser-mode student's CPU goes: a few real student kernels behind ``smartsession serve``, each fed
5 packed real faces a second (the page's capture rate, CAMERA_FPS) by a client that speaks to its kernel as the
page does (capacity.py's students), and per student-second: CPU of serve (Jupyter's relay, Voila, the embedded
hub) and of the kernels, the CPU an idle pool kernel burns on its own, and every kernel message each way by
kind (face batches, acks, status busy/idle, widget updates...).

``--baseline TREE`` runs a second serve from another source tree (e.g. ``git archive main | tar -x -C TREE``),
its students speaking that tree's ``tests/testkit/pageclient.py`` (which must count messages by kind), at the
same time as this tree's, so the two are compared in one run on the same machine, as ratios.

Run: ``.venv/bin/python benchmarks/student_cost.py [--students 8] [--seconds 20] [--baseline TREE]`` (about
3 minutes; no browser). Last line: ``BENCH {...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "browser"))
sys.path.append(str(ROOT / "tests"))

from capacity import Students, face_frames, landmarked, recorded_frames, stop_on_signals  # noqa: E402
from e2e import wait_warm  # noqa: E402
from floor import cpu_seconds  # noqa: E402

from testkit import memory  # noqa: E402
from testkit.serving import running_server  # noqa: E402


def start(stack: ExitStack, tmp: Path, tree: str | None, students: int):
    """A serve for ``students`` (from ``tree``'s sources when given) with its pool warm, and its students open."""
    tmp.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("PYTHONPATH")
    if tree:
        os.environ["PYTHONPATH"] = str(Path(tree).resolve())
    try:
        server = stack.enter_context(running_server(tmp, pool_size=min(20, students + 2), timeout=300,
                                                    refill_quiet=1, max_students=students + 4,
                                                    analysis="browser"))
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return server


def _tree_module(tree: str, path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"baseline_{Path(path).stem}", Path(tree) / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def cpu_of(pids) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def busiest(kernels: list[int], seconds: float = 2.0) -> int:
    """The kernel that used the most CPU over the next ``seconds``: the one worth watching or profiling."""
    first = cpu_of(kernels)
    time.sleep(seconds)
    return max(kernels, key=lambda p: cpu_seconds(p) - first[p])


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of ``pid``, with its OS name (zmq names its I/O threads; Python's keep the
    process's name)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return found


def python_threads(py_spy: str | None, pid: int) -> dict[int, str]:
    """Python's names of the threads of ``pid`` (py-spy dump), when py-spy is given."""
    if not py_spy:
        return {}
    import re
    import subprocess

    text = subprocess.run([py_spy, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=60).stdout
    return {int(tid): name for tid, name in re.findall(r'Thread (\d+) \(\w+\): "([^"]+)"', text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window")
    parser.add_argument("--baseline", help="another source tree to run the same students against, side by side")
    parser.add_argument("--batch-seconds", type=float, help="the pages' Camera.batch_seconds (default: the camera's)")
    parser.add_argument("--py-spy", help="a py-spy executable: record serve and a kernel, quiet and streaming "
                                          "(collapsed stacks in the run's temporary folder, printed at the end)")
    parser.add_argument("--threads", action="store_true",
                        help="CPU of each thread of serve and of the busiest kernel during the window")
    parser.add_argument("--timeout", type=float, default=15.0, help="minutes; then everything started is stopped")
    args = parser.parse_args()
    stop_on_signals(args.timeout)
    faces = landmarked(recorded_frames(60))
    message = face_frames(faces)
    trees = {"this": None, **({"baseline": args.baseline} if args.baseline else {})}
    result: dict = {"students": args.students, "seconds": args.seconds}
    tmp = Path(tempfile.mkdtemp(prefix="smartsession-cost-"))
    with ExitStack() as stack:
        runs = {}
        for name, tree in trees.items():
            server = start(stack, tmp / name, tree, args.students)
            wait_warm(server, timeout=600)
            students = Students(server, message, camera_mode="browser")
            if tree:  # that tree's pages speak to its kernels as its camera.js does
                students.page_class = _tree_module(tree, "tests/testkit/pageclient.py").PageClient
            stack.callback(students.close)
            students.open(args.students)
            if students.failed:
                sys.exit(f"{name}: pages failed: {students.failed[:3]}")
            wait_warm(server, timeout=600)
            runs[name] = (server, students)
            print(f"== {name}: serve pid {server.process.pid}, {args.students} students open", flush=True)
        # What the server and the kernels cost with every page open, its camera on, and nothing streaming.
        quiet = {name: (server.process.pid, list(memory.kernels_of(server.process.pid)))
                 for name, (server, _s) in runs.items()}
        for _server, students in runs.values():
            students.reset()
        first = {name: cpu_of([serve, *kernels]) for name, (serve, kernels) in quiet.items()}
        if args.py_spy:
            import subprocess

            for name, (serve, kernels) in quiet.items():
                for what, pid in (("serve-quiet", serve), ("kernel-quiet", kernels[-1])):
                    subprocess.Popen([args.py_spy, "record", "-p", str(pid), "-d", str(int(args.seconds / 2)), "-r",
                                      "200", "--threads", "--format", "raw", "-o",
                                      str(tmp / f"py-spy-{name}-{what}.txt")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.seconds / 2)
        for name, (serve, kernels) in quiet.items():
            used = {pid: cpu_seconds(pid) - first[name][pid] for pid in first[name]}
            result.setdefault(name, {})["quiet_serve_ms_per_student_s"] = round(
                1000 * used[serve] / (args.seconds / 2) / args.students, 2)
            result[name]["quiet_kernel_ms_per_s"] = round(
                1000 * sum(v for p, v in used.items() if p != serve) / (args.seconds / 2) / max(1, len(kernels)), 2)
            server, students = runs[name]
            kinds = students.run(_all_kinds(students))
            result[name]["quiet_kinds_per_student_s"] = {k: round(v / (args.seconds / 2) / args.students, 3)
                                                         for k, v in sorted(kinds.items())}
            print(f"== {name}, nothing streaming: serve {result[name]['quiet_serve_ms_per_student_s']} ms a page a "
                  f"second, a kernel {result[name]['quiet_kernel_ms_per_s']} ms a second; messages a page a second: "
                  f"{result[name]['quiet_kinds_per_student_s']}", flush=True)
        for server, students in runs.values():
            students.stream(args.students, args.batch_seconds)
        time.sleep(5)
        pids = {name: (server.process.pid, list(memory.kernels_of(server.process.pid)))
                for name, (server, _s) in runs.items()}
        for _server, students in runs.values():
            students.reset()
        spies = []
        if args.py_spy:
            import subprocess

            for name, (serve, kernels) in pids.items():
                for what, pid in (("serve", serve), ("kernel", busiest(kernels))):
                    out = tmp / f"py-spy-{name}-{what}.txt"
                    spies.append(subprocess.Popen([args.py_spy, "record", "-p", str(pid), "-d", str(int(args.seconds)),
                                                   "-r", "200", "--threads", "--format", "raw", "-o", str(out)],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        watched = {}
        if args.threads:
            for name, (serve, kernels) in pids.items():
                for what, pid in (("serve", serve), ("kernel", busiest(kernels))):
                    watched[(name, what)] = (pid, thread_cpu(pid), python_threads(args.py_spy, pid))
        before = {name: cpu_of([serve, *kernels]) for name, (serve, kernels) in pids.items()}
        own = cpu_seconds(os.getpid())
        t0 = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        # The simulated pages of both trees run in this process: what a student costs the load generator (on the
        # machine that runs capacity.py, beside the server), shared alike.
        result["client_ms_per_student_s"] = round(
            1000 * (cpu_seconds(os.getpid()) - own) / elapsed / (args.students * len(runs)), 2)
        print(f"== the simulated pages (this process): {result['client_ms_per_student_s']} ms a student a second")
        for spy in spies:
            spy.wait(60)
        for (name, what), (pid, first, names) in watched.items():
            now = thread_cpu(pid)
            print(f"== {name} {what} (pid {pid}) threads, ms of CPU a second:")
            for tid, (comm, cpu) in sorted(now.items(), key=lambda kv: kv[1][1] - first.get(kv[0], ("", 0.0))[1],
                                           reverse=True)[:12]:
                used = 1000 * (cpu - first.get(tid, ("", 0.0))[1]) / elapsed
                print(f"     {used:7.2f}  {tid} {comm} {names.get(tid, '')}")
        after = {name: cpu_of([serve, *kernels]) for name, (serve, kernels) in pids.items()}
        for name, (server, students) in runs.items():
            serve, kernels = pids[name]
            used = {pid: after[name][pid] - before[name][pid] for pid in after[name]}
            ranked = sorted(kernels, key=lambda p: used[p], reverse=True)
            busy, idle = ranked[:args.students], ranked[args.students:]
            n = args.students
            kinds = students.run(_kinds(students))
            span = students.run(_span(students))
            figures = students.figures()
            per = {k: round(v / span, 3) for k, v in sorted(kinds.items())}
            out = {
                "serve_ms_per_student_s": round(1000 * used[serve] / elapsed / n, 2),
                "kernel_ms_per_student_s": round(1000 * sum(used[p] for p in busy) / elapsed / n, 2),
                "idle_kernel_ms_per_s": round(1000 * sum(used[p] for p in idle) / elapsed / max(1, len(idle)), 2),
                "idle_kernels": len(idle),
                "messages_up_per_student_s": round(sum(v for k, v in per.items() if k.startswith("up ")), 2),
                "messages_down_per_student_s": round(sum(v for k, v in per.items() if k.startswith("down ")), 2),
                "feedback_p90_ms": figures["feedback_p90_ms"], "teacher_p95_ms": figures["teacher_p95_ms"],
                "lost": figures["lost"], "kinds_per_student_s": per,
            }
            out["cpu_ms_per_student_s"] = round(out["serve_ms_per_student_s"] + out["kernel_ms_per_student_s"], 2)
            result[name].update(out)
            print(f"== {name}: CPU a student a second: serve {out['serve_ms_per_student_s']} ms + kernel "
                  f"{out['kernel_ms_per_student_s']} ms = {out['cpu_ms_per_student_s']} ms; an idle kernel "
                  f"{out['idle_kernel_ms_per_s']} ms/s; messages a student a second {out['messages_up_per_student_s']}"
                  f" up, {out['messages_down_per_student_s']} down; feedback p90 {out['feedback_p90_ms']} ms, "
                  f"teacher p95 {out['teacher_p95_ms']} ms, lost {out['lost']}")
            for kind, rate in per.items():
                print(f"     {rate:7.3f}  {kind}")
        if "baseline" in result:
            result["ratio_to_baseline"] = {
                k: round(result["this"][k] / result["baseline"][k], 3) if result["baseline"][k] else None
                for k in ("serve_ms_per_student_s", "kernel_ms_per_student_s", "cpu_ms_per_student_s",
                          "idle_kernel_ms_per_s", "messages_up_per_student_s", "messages_down_per_student_s",
                          "quiet_serve_ms_per_student_s", "quiet_kernel_ms_per_s")}
            print("== ratio this/baseline:", result["ratio_to_baseline"])
    if args.py_spy:
        print(f"== py-spy stacks: {tmp}/py-spy-*.txt")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print("BENCH " + json.dumps(result))


async def _kinds(students):
    total: dict[str, int] = {}
    for i in students._streams:
        for k, v in students.pages[i].frames.kinds.items():
            total[k] = total.get(k, 0) + v
    return total


async def _all_kinds(students):
    total: dict[str, int] = {}
    for page in students.pages:
        for k, v in page.frames.kinds.items():
            total[k] = total.get(k, 0) + v
    return total


async def _span(students):
    return sum(time.monotonic() - students.pages[i].frames.since for i in students._streams)


if __name__ == "__main__":
    main()
