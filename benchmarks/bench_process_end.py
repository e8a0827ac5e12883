"""Benchmark: what the end of a process costs once checks ran with several jobs.

Each run is a fresh process (timed from outside, medians over ``--repeats`` runs):

- ``registry``: a script checking two registered rules (``check_registry(classes=["ReLU",
  "Dense"], jobs=2, seed=0)``): its wall time, and its *tail*, the seconds between its last
  line and the end of the process (exit handlers, the worker server's end, then Python
  clearing torch and Keras from memory: the last part is Python's own, in any script that
  imported them);
- ``server end``: a script that starts the worker server, waits until it is ready, runs the
  same check, then times :func:`jacverify.check.worker_server.stop_worker_server` (what the
  exit handler does).

Run: .venv/bin/python benchmarks/bench_process_end.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REGISTRY = textwrap.dedent("""
    import sys, time
    from jacverify import check_registry
    if __name__ == "__main__":
        check_registry(classes=["ReLU", "Dense"], jobs=2, seed=0)
        sys.stderr.write(f"LAST_LINE {time.time():.4f}\\n")
""")
SERVER_END = textwrap.dedent("""
    import time
    from jacverify import check_registry
    from jacverify.check import worker_server
    if __name__ == "__main__":
        worker_server.start_worker_server()
        while not worker_server.server_ready():
            time.sleep(0.05)
        check_registry(classes=["ReLU", "Dense"], jobs=2, seed=0)
        start = time.perf_counter()
        worker_server.stop_worker_server()
        print(f"{time.perf_counter() - start:.4f}")
""")


def _run(script: Path) -> tuple[float, float, str]:
    """``(wall seconds, seconds after the last line, stdout)`` of one run."""
    start = time.time()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=True)
    end = time.time()
    marks = [line for line in done.stderr.splitlines() if line.startswith("LAST_LINE")]
    tail = end - float(marks[-1].split()[1]) if marks else float("nan")
    return end - start, tail, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        registry, server = Path(directory) / "registry.py", Path(directory) / "server.py"
        registry.write_text(REGISTRY, encoding="utf-8")
        server.write_text(SERVER_END, encoding="utf-8")
        runs = [_run(registry) for _ in range(args.repeats)]
        walls, tails = [r[0] for r in runs], [r[1] for r in runs]
        print(f"registry script: wall {statistics.median(walls):.2f} s, tail after its last "
              f"line {statistics.median(tails):.2f} s (medians of {args.repeats})")
        stops = [float(_run(server)[2].splitlines()[-1]) for _ in range(args.repeats)]
        print(f"stop_worker_server on a ready server: {statistics.median(stops):.3f} s "
              f"(median of {args.repeats}; each: {', '.join(f'{s:.3f}' for s in stops)})")


if __name__ == "__main__":
    main()
