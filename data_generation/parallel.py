"""Running rendering work on worker processes: one engine per worker, one thread each."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from threadpoolctl import threadpool_limits

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def run_tasks(
    function: Callable,
    tasks: Iterable[tuple],
    *,
    workers: int,
    initializer: Callable[[], None] | None = None,
) -> Iterator:
    """Yields ``function(*task)`` for every task, in completion order.

    ``workers`` <= 1 runs in this process (limited to one thread, like one worker); otherwise on
    freshly spawned processes (no engine state inherited from this one) whose BLAS/FFT pools are
    limited to one thread, since a pool per worker would fight over the cores.

    ``initializer`` runs here once first, then in every worker: it should call what the tasks
    call, so that librosa's numba code is compiled and cached by one process. Workers compiling
    the same functions at once on a fresh install wrote a corrupt numba cache that later
    segfaulted every process using it.
    """
    tasks = list(tasks)
    if initializer is not None:
        initializer()
    if workers <= 1:
        with threadpool_limits(1):
            for task in tasks:
                yield function(*task)
        return
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})  # inherited by the spawned workers
    try:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=initializer) as pool:
            futures = [pool.submit(function, *task) for task in tasks]
            try:
                for future in as_completed(futures):
                    yield future.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
