"""Does a process pool that ends right after it starts hang under the CLI's SIGTERM handler?

``python -m benchmarks.pool_end_race [--pools 300] [--plain]``: creates and ends ``--pools``
two-worker pools inside :func:`sareval.cli.sigterm_as_interrupt`, with
:func:`sareval.preprocess.pipeline.worker_pool`, or with ``--plain`` the plain
``with multiprocessing.Pool(2) as pool: pass`` it replaced. Prints the time taken; a hang is
the finding (run it under ``timeout 120``: the plain pool hung within 300 pools on the 2-core
development VM, ``worker_pool`` ran 300 in 2.3 s).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import signal
import time

from sareval.cli import sigterm_as_interrupt
from sareval.preprocess.pipeline import worker_pool


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pools", type=int, default=300)
    p.add_argument("--plain", action="store_true", help="multiprocessing.Pool's own exit")
    args = p.parse_args()
    t0 = time.perf_counter()
    with sigterm_as_interrupt():
        for _ in range(args.pools):
            if args.plain:
                with mp.get_context("fork").Pool(2, initializer=_ignore_sigint):
                    pass
            else:
                with worker_pool(2):
                    pass
    kind = "plain Pool" if args.plain else "worker_pool"
    print(f"{kind}: {args.pools} pools in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
