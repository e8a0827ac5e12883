"""A check's result depends only on its task: the same whether it runs here, after a trip to
a worker (pickled as a worker receives it), or in a worker forked from a process whose torch
already ran with several threads."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import Executor, Future

import pytest

from jacverify import check_registry


def _registry_data(result):
    """A registry check's JSON data without what depends on the clock or on the layers made
    before in the process (the drawn layers' automatic names)."""

    def strip(data):
        if isinstance(data, dict):
            return {k: strip(v) for k, v in data.items() if k not in ("duration_s", "layer_name")}
        if isinstance(data, list):
            return [strip(v) for v in data]
        return data

    return strip(result.to_dict())


class _HereExecutor(Executor):
    """Runs each submitted call at once in this process: a task then reaches the check as
    a worker receives it (its pickle), without the cost of a process."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - the future carries it
            future.set_exception(error)
        return future


def test_a_recurrent_check_that_travels_equals_the_check_run_here():
    # The second RNN configuration at seed 0 (a stack of two LSTM cells) came out `boundary`
    # in a worker and `pass` here: its float64 clone lost the inner cells' dtype on the way.
    here = check_registry(["RNN"], configs=2, seed=0)
    travelled = check_registry(["RNN"], configs=2, seed=0, executor=_HereExecutor())
    assert [c.check.verdict for c in here.checks] == ["pass", "pass"]
    assert _registry_data(travelled) == _registry_data(here)


_FORKED_RUN = textwrap.dedent("""
    import json, multiprocessing, os
    from concurrent.futures import ProcessPoolExecutor
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import torch
    from jacverify import check_registry

    torch.set_num_threads(2)  # torch's OpenMP threads run in this process, even on one core
    options = dict(configs=3, examples=4, seed=0)
    here = check_registry(["LSTM"], **options)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        forked = check_registry(["LSTM"], executor=pool, **options)
    def data(result):
        return [(c.check.verdict, c.check.max_abs_error, c.check.examples)
                for c in result.checks]
    print(json.dumps({"here": data(here), "forked": data(forked),
                      "threads": torch.get_num_threads()}))
""")

#: Seconds the forked run may take (22 to 42 s measured on 2 cores loaded 10 times over; it
#: hung before).
FORKED_RUN_TIMEOUT = 240


def _run_with_timeout(code: str, seconds: float) -> subprocess.CompletedProcess | None:
    """``python -c code`` in a session of its own; ``None`` when it did not end in
    ``seconds`` (the session, its forked workers included, is then killed)."""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "KERAS_BACKEND": "torch"})
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="the platform has no fork start method")
def test_a_fork_context_pool_does_not_hang_and_equals_the_run_here():
    # Workers forked from a process whose torch ran OpenMP threads hung in their first
    # multi-threaded operation (the Orthogonal initializer's QR while unpickling an LSTM).
    finished = _run_with_timeout(_FORKED_RUN, FORKED_RUN_TIMEOUT)
    if finished is None:
        pytest.fail(f"check_registry on a fork-context pool hung ({FORKED_RUN_TIMEOUT} s)")
    assert finished.returncode == 0, finished.stderr[-2000:]
    found = json.loads(finished.stdout.strip().splitlines()[-1])
    assert found["forked"] == found["here"]
    assert len(found["here"]) == 3
    assert found["threads"] == 2  # the calling process keeps its torch threads
