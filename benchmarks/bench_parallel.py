"""Benchmark: a registry check serially and in worker processes, and whether they agree.

Runs ``check_registry(seed=S, configs=C, examples=E, jobs=J)`` for each ``J`` of ``--jobs``
(1: every check in this process; J > 1: this process and J - 1 worker processes, one torch
thread each) and prints, per ``J``, the wall time, the speed-up over ``J = 1``, the CPU time
of this process and its workers together, the verdict counts, and whether the result equals
the ``J = 1`` run apart from timings (it must; the checks that differ are listed on standard
error). Worker start-up (each worker imports torch and Keras) is part of both times, and so is
the worker server's (each J > 1 run starts its own).
On a busy machine the wall times say little: compare the CPU times, whose difference is what
the workers cost.

Checks start longest first, by the durations jacverify remembers from earlier runs (in its
cache directory: ``$JACVERIFY_CACHE_DIR``, default ``~/.cache/jacverify``), else by an
estimate from the configuration: the ``J = 1`` run gives the ``J = 2`` run the durations of
every check. ``--forget`` runs with an empty cache directory of its own (estimates only).

Run: .venv/bin/python benchmarks/bench_parallel.py [--jobs 1,2] [--seed 0] [--configs 3]
     [--examples 30] [--classes Dense,ReLU,...] [--forget] [--markdown]
     [--save-timings PATH]
     .venv/bin/python benchmarks/bench_parallel.py --worker-start
     .venv/bin/python benchmarks/bench_parallel.py --simulate PATH
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("KERAS_BACKEND", "torch")

from jacverify import check_registry  # noqa: E402
from jacverify.check.task_cost import estimate_class_seconds  # noqa: E402
from jacverify.check.worker_server import (  # noqa: E402
    server_ready,
    start_worker_server,
    stop_worker_server,
    worker_context,
)


def _without_timings(data):
    if isinstance(data, dict):
        return {k: _without_timings(v) for k, v in data.items() if k != "duration_s"}
    if isinstance(data, list):
        return [_without_timings(v) for v in data]
    return data


def _comparable(result) -> dict:
    """The result's data without timings and drawn layers' names (Keras numbers them by the
    layers made before in the process)."""
    data = _without_timings(result.to_dict())
    for check in data["checks"]:
        check["check"].pop("layer_name", None)
    return data


def differing_checks(data: dict, reference: dict) -> list[str]:
    """One line per check whose data differs from the reference run's: its position, class,
    input shape and the two verdicts and error-to-tolerance ratios."""
    lines = []
    for index, (got, expected) in enumerate(zip(data["checks"], reference["checks"],
                                                strict=True)):
        if got == expected:
            continue
        mine, theirs = got["check"], expected["check"]
        lines.append(
            f"check {index} {got['keras_class'].rsplit('.', 1)[-1]} {got['input_shape']}: "
            f"{mine['verdict']} ({mine.get('error_to_tolerance')}) where jobs=1 gave "
            f"{theirs['verdict']} ({theirs.get('error_to_tolerance')})"
        )
    return lines


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that ended."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def save_timings(result, path: str) -> None:
    """Write each check's seconds, forward class, input shape and examples, in run order."""
    rows = [{"seconds": c.check.duration_s, "class": c.keras_class.rsplit(".", 1)[-1],
             "input_shape": c.input_shape, "examples": c.check.examples} for c in result.checks]
    with open(path, "w", encoding="utf-8") as file:
        json.dump(rows, file)


def makespan(seconds: list[float], order: list[int], ready: float, holds_two: bool = False
             ) -> float:
    """When the last of two processes ends: this one from 0 s, a worker from ``ready``,
    the tasks taken in ``order``. A worker gets a task as soon as it is free, unless
    ``holds_two``: the former scheme, where this process handed out tasks only between its
    own, two at a time."""
    if not holds_two:
        free = [0.0, ready]
        for index in order:
            first = free.index(min(free))
            free[first] += seconds[index]
        return max(free)
    todo, here, worker, queued = list(order), 0.0, ready, []
    while todo:
        queued = [t for t in queued if t > here]
        while here >= ready and len(queued) < 2 and todo:
            worker = max(worker, here) + seconds[todo.pop(0)]
            queued.append(worker)
        if todo:
            here += seconds[todo.pop(0)]
    return max(here, worker)


def simulate(path: str, ready_values=(0.5, 5.0)) -> list[tuple]:
    """Makespans on two processes of a serial run's checks (``--save-timings``): in the run's
    order, longest first by estimate, longest first by the measured seconds (as the next
    run, with remembered durations), each with a worker ready after ``ready`` seconds."""
    with open(path, encoding="utf-8") as file:
        rows = json.load(file)
    seconds = [float(r["seconds"]) for r in rows]
    guessed = [estimate_class_seconds(r["class"], [tuple(s) for s in r["input_shape"]]
               if r["input_shape"] and isinstance(r["input_shape"][0], list)
               else tuple(r["input_shape"] or ()), r["examples"]) for r in rows]
    orders = {
        "run order": list(range(len(rows))),
        "longest first (estimates)": sorted(range(len(rows)), key=lambda i: -guessed[i]),
        "longest first (remembered)": sorted(range(len(rows)), key=lambda i: -seconds[i]),
    }
    found = []
    for ready in ready_values:
        bound = (sum(seconds) + ready) / 2
        for name, order in orders.items():
            found.append((ready, name, makespan(seconds, order, ready),
                          makespan(seconds, order, ready, holds_two=True), bound))
    return found


def _first_result(context) -> float:
    """Seconds from a new one-worker pool to the result of a task that loads the checker."""
    start = time.perf_counter()
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        pool.submit(_load_checker).result()
    return time.perf_counter() - start


def _load_checker() -> bool:
    import jacverify.check.model_check  # noqa: F401 - what a check task's unpickling loads

    return True


def worker_start(repeats: int = 3) -> list[tuple[str, float, float]]:
    """Wall and CPU seconds until a new worker returns its first task (the checker loaded):
    a fresh ``spawn`` worker, the worker server's start (wall: to ready; CPU: its own and its
    forked workers'), a worker forked from it (its CPU counts in the server's)."""
    import multiprocessing

    rows = []
    for _ in range(repeats):
        cpu = _cpu_seconds()
        wall = _first_result(multiprocessing.get_context("spawn"))
        rows.append(("fresh worker (spawn)", wall, _cpu_seconds() - cpu))
    cpu, start = _cpu_seconds(), time.perf_counter()
    start_worker_server()
    while not server_ready():
        time.sleep(0.01)
    ready = time.perf_counter() - start
    forks = [_first_result(worker_context()) for _ in range(repeats)]
    stop_worker_server()
    rows.append((f"worker server (+{repeats} forks)", ready, _cpu_seconds() - cpu))
    rows += [("worker forked from the server", wall, float("nan")) for wall in forks]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1,2", help="comma-separated jobs values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=30)
    parser.add_argument("--classes", default=None,
                        help="comma-separated forward class names (default: every rule)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--forget", action="store_true",
                        help="start without remembered durations (a fresh cache directory)")
    parser.add_argument("--worker-start", action="store_true",
                        help="only measure what starting a worker costs, fresh and forked "
                        "from the worker server")
    parser.add_argument("--save-timings", metavar="PATH",
                        help="write the jobs=1 run's per-check seconds to PATH (JSON)")
    parser.add_argument("--simulate", metavar="PATH",
                        help="only compute two-process makespans of a --save-timings file")
    args = parser.parse_args(argv)
    if args.simulate:
        print("worker ready at | order | makespan s | former scheme s | lower bound s")
        for ready, name, span, former, bound in simulate(args.simulate):
            print(f"{ready:.1f} s | {name} | {span:.1f} | {former:.1f} | {bound:.1f}")
        return
    if args.worker_start:
        for what, wall, cpu in worker_start():
            print(f"{what:32s} wall {wall:6.2f} s  CPU {cpu:6.2f} s")
        return
    if args.forget:
        os.environ["JACVERIFY_CACHE_DIR"] = tempfile.mkdtemp(prefix="jacverify-bench-")
    classes = args.classes.split(",") if args.classes else None
    rows, reference = [], None
    for jobs in [int(j) for j in args.jobs.split(",")]:
        start, cpu = time.perf_counter(), _cpu_seconds()
        result = check_registry(classes, configs=args.configs, examples=args.examples,
                                seed=args.seed, jobs=jobs)
        wall = time.perf_counter() - start
        stop_worker_server()  # its CPU time, and its workers', then counts as a child's
        cpu = _cpu_seconds() - cpu
        data = _comparable(result)
        if jobs == 1 and args.save_timings:
            save_timings(result, args.save_timings)
        reference = reference or (wall, data)
        for line in differing_checks(data, reference[1]):
            print(f"jobs {jobs}: {line}", file=sys.stderr)
        counts = ", ".join(f"{n} {v}" for v, n in sorted(result.counts().items()))
        rows.append((jobs, wall, reference[0] / wall, cpu, len(result.checks), counts,
                     data == reference[1]))
    header = ("jobs", "wall s", "speed-up", "CPU s", "checks", "verdicts", "equals jobs=1")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for jobs, wall, speed, cpu, n, counts, same in rows:
            print(f"| {jobs} | {wall:.1f} | {speed:.2f}x | {cpu:.1f} | {n} | {counts} | {same} |")
        return
    for jobs, wall, speed, cpu, n, counts, same in rows:
        print(f"jobs {jobs}: {wall:7.1f} s  speed-up {speed:4.2f}x  CPU {cpu:7.1f} s  {n} checks "
              f"({counts})  equal to jobs=1: {same}")


if __name__ == "__main__":
    main()
