"""The worker server ends with the process that started it, at once, and leaves no process
behind: neither itself nor the workers forked from it."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


class PidTask:
    """Returns the process that ran it (a worker's, once the workers run)."""

    def __init__(self, label):
        self.label = label

    def estimated_seconds(self):
        return 1.0

    def run(self):
        time.sleep(0.05)
        return os.getpid()

    def failed(self, error):
        return repr(error)


SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from multiprocessing import forkserver
    from jacverify.check import parallel, worker_server
    from tests.check.test_worker_server_end import PidTask

    if __name__ == "__main__":
        parallel.WORKER_START_SECONDS = -1.0  # workers start with the first task
        assert worker_server.start_worker_server()
        while not worker_server.server_ready():
            time.sleep(0.05)
        server = forkserver._forkserver._forkserver_pid
        pids = parallel.run_tasks([PidTask(f"t{i}") for i in range(12)], jobs=2)
        workers = sorted(set(pids) - {os.getpid()})
        start = time.perf_counter()
        worker_server.stop_worker_server()
        stop = time.perf_counter() - start
        print(json.dumps({"server": server, "workers": workers, "stop_seconds": stop}))
""")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "(zombie)" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_server_and_its_workers_end_at_once_with_the_process(tmp_path):
    if "forkserver" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("this platform has no forkserver")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPOSITORY), os.environ.get("PYTHONPATH", "")]), "KERAS_BACKEND": "torch"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, cwd=REPOSITORY, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["workers"], "no task ran in a worker"
    # ended by a signal: no second spent clearing the modules the server loaded (it took
    # 1 s on an idle machine, 3.5 s on a busy one, when the server was asked to exit)
    assert facts["stop_seconds"] < 1.0, facts
    left = [pid for pid in [facts["server"], *facts["workers"]] if _alive(pid)]
    assert left == [], f"processes left behind: {left}"
