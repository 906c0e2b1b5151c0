"""The preprocess worker pool ends without relying on SIGTERM reaching its workers.

``multiprocessing.Pool``'s own exit terminates the workers with SIGTERM; under the CLI's SIGTERM
handler (inherited by forked workers), a SIGTERM that arrives while a worker is still being
forked is lost and ``Pool.__exit__`` waits for it forever. That hung reruns of ``sareval
preprocess`` in CI (a rerun has little left to do, so its pool ends right after it starts);
``python -m benchmarks.pool_end_race --plain`` (a plain ``with Pool(2) as pool: pass`` loop
under that handler) hung within 300 pools on the development machine; without ``--plain``
(:func:`worker_pool`) it ran 300 in 2.2 s.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from sareval.preprocess.pipeline import worker_pool

LOOP = textwrap.dedent(
    """
    from sareval.cli import sigterm_as_interrupt
    from sareval.preprocess.pipeline import worker_pool

    with sigterm_as_interrupt():
        for i in range(200):  # ended at once, half of them by an error (terminate: SIGTERM)
            try:
                with worker_pool(2) as pool:
                    if i % 2:
                        raise ValueError
            except ValueError:
                pass
    print("done")
    """
)


def test_pools_that_end_at_once_never_hang() -> None:
    done = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr


def _square(x: int) -> int:
    return x * x


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_results_come_back_and_an_error_kills_the_workers() -> None:
    with worker_pool(2) as pool:
        assert pool.map(_square, range(10)) == [x * x for x in range(10)]
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="stop"), worker_pool(2) as pool:
        workers = list(pool._pool)
        pool.apply_async(_sleep, (60,))  # a worker busy for a minute
        time.sleep(0.2)
        raise RuntimeError("stop")
    assert time.monotonic() - t0 < 20  # not the minute: the busy worker was terminated
    assert all(not w.is_alive() for w in workers)
