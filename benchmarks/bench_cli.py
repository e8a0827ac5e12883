"""Benchmark: how long the command line takes, from the shell's point of view.

Runs each command as a fresh process (as a user or CI does) and prints, per command, the
median wall time over repeats, with the median CPU time (user + system) of the process
beside it: on a busy machine the wall time grows with the load, the CPU time much less.

- ``jacverify --help``;
- ``jacverify check missing.keras``: a bad path (exit status 2);
- ``jacverify check mlp.keras --seed 0``: a saved 3-layer model (``Input(8) -> Dense(16,
  relu) -> Dense(8, tanh) -> Dense(2)``), checked with the default examples and jobs (the
  machine's cores: on 2 cores, a worker forked from the worker server shares the checks);
  the model is saved first, in a temporary directory;
- the same with ``--jobs 1`` (every check in the command's process, no worker server);
- ``jacverify example``: the bundled example (three checks, JSON and HTML reports).

The first run of each command is a warm-up (not counted) unless ``--no-warmup``: it fills
Python's bytecode cache and jacverify's Hypothesis cache, as any earlier run on the machine
would.

The CPU time counts the command's process and every process it waited for: its worker
server and the workers forked from it.

Run: .venv/bin/python benchmarks/bench_cli.py [--repeats 3] [--skip-example] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: A 3-layer model, saved by a subprocess (so this process never imports Keras).
SAVE_MODEL = """
import keras
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)], name="mlp")
model.save("mlp.keras")
"""


@dataclass
class Timing:
    """One command's median wall and CPU seconds over its runs, and its exit status."""

    name: str
    command: list[str]
    wall: float
    cpu: float
    status: int
    runs: int


def _environment() -> dict:
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "torch")
    return env


def run_once(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of one run of ``command``, and its exit status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=_environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, completed.returncode


def measure(name: str, command: list[str], cwd: Path, repeats: int, warmup: bool) -> Timing:
    """Median wall and CPU time of ``repeats`` runs (after one warm-up run)."""
    if warmup:
        run_once(command, cwd)
    runs = [run_once(command, cwd) for _ in range(repeats)]
    return Timing(
        name=name, command=command,
        wall=statistics.median(r[0] for r in runs),
        cpu=statistics.median(r[1] for r in runs),
        status=runs[-1][2], runs=repeats,
    )


def commands(python: str, workdir: Path, skip_example: bool) -> list[tuple[str, list[str]]]:
    """The benchmarked commands (name, argv)."""
    cli = [python, "-m", "jacverify.cli"]
    found = [
        ("--help", [*cli, "--help"]),
        ("bad path", [*cli, "check", "missing.keras"]),
        ("check, 3-layer model", [*cli, "check", "mlp.keras", "--seed", "0", "--progress",
                                  "none"]),
        ("check, 3-layer model, --jobs 1", [*cli, "check", "mlp.keras", "--seed", "0",
                                            "--progress", "none", "--jobs", "1"]),
    ]
    if not skip_example:
        found.append(("example", [*cli, "example", "--output", str(workdir / "example")]))
    return found


def print_table(timings: list[Timing], markdown: bool) -> None:
    """One row per command: median wall and CPU seconds, exit status, runs."""
    header = ("command", "wall (s)", "CPU (s)", "exit", "runs")
    rows = [(t.name, f"{t.wall:.2f}", f"{t.cpu:.2f}", str(t.status), str(t.runs))
            for t in timings]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per command")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that has jacverify (default: this one)")
    parser.add_argument("--skip-example", action="store_true", help="leave out 'example'")
    parser.add_argument("--no-warmup", action="store_true",
                        help="count the first run too (cold caches)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jacverify-bench-cli-") as tmp:
        workdir = Path(tmp)
        subprocess.run([args.python, "-c", SAVE_MODEL], cwd=workdir, env=_environment(),
                       check=True)
        timings = [measure(name, command, workdir, args.repeats, not args.no_warmup)
                   for name, command in commands(args.python, workdir, args.skip_example)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.2f}; median of {args.repeats} runs")
    print_table(timings, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
