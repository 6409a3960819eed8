"""Running rendering work on worker processes: one engine per worker, one thread each.

Workers die with the process that started them, even when it is killed with ``kill -9`` (Linux:
the kernel sends them SIGTERM), so an interrupted run leaves no worker rendering on.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from threadpoolctl import threadpool_limits

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
# a worker's heap keeps up to this much freed memory instead of handing it back to the kernel
WORKER_HEAP_SLACK = 256 * 1024 * 1024


def _die_with_parent(parent: int) -> None:
    """Asks the kernel to send this process SIGTERM when its parent dies (Linux; elsewhere a
    no-op), and exits now if the parent is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _steady_heap() -> None:
    """Makes glibc keep a worker's freed arrays for reuse (Linux; elsewhere a no-op).

    A worker allocates and frees the same few MB per task (a render, its spectra). glibc gave
    arrays that large their own mappings and returned them on free, so every task paid page
    faults on fresh memory: one fm render and its search score took 30.7 + 12.6 ms, and 26.6 +
    8.3 ms with the heap kept (one process, 80 renders); ``bench/search.py`` and the 30 s
    searches (docs/notes/search-tuning.md) show what it gives a search. The cost is memory held at the worker's peak, up
    to ``WORKER_HEAP_SLACK`` more. C libraries without ``mallopt`` (not glibc) are left alone.
    """
    libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, WORKER_HEAP_SLACK)
        libc.mallopt(_M_TRIM_THRESHOLD, WORKER_HEAP_SLACK)


def _init_worker(parent: int, initializer: Callable[[], None] | None) -> None:
    _die_with_parent(parent)
    _steady_heap()
    if initializer is not None:
        initializer()


def _worker_initializer(initializer: Callable[[], None] | None) -> Callable[[], None]:
    """The initializer of a spawned worker: die with this process (see ``_die_with_parent``),
    then run ``initializer``.

    The kernel's "parent" is the thread that spawned the worker: the pools here spawn their
    workers from the calling thread, which must outlive them (the main thread does).
    """
    return functools.partial(_init_worker, os.getpid(), initializer)


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
    with _one_thread_workers(), _spawn_pool(workers, initializer) as pool:
        futures = [pool.submit(function, *task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


@contextlib.contextmanager
def _one_thread_workers() -> Iterator[None]:
    """Sets the BLAS/FFT thread variables to 1 for the processes spawned inside, then restores them."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})  # inherited by the spawned workers
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _spawn_pool(workers: int, initializer: Callable[[], None] | None) -> ProcessPoolExecutor:
    """A pool of freshly spawned workers that die with this process and run ``initializer``."""
    ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_initializer(initializer))


class WorkerPool:
    """Persistent worker processes for many small batches of work (a search's generations).

    Like ``run_tasks``, each worker is a freshly spawned process limited to one BLAS/FFT thread,
    and ``initializer`` runs here first, then in every worker; unlike it, the workers live until
    ``close`` and keep what they build (engines, compiled synths) between calls to ``map``.
    ``workers`` <= 1 runs everything in this process, limited to one thread.
    """

    def __init__(self, workers: int, *, initializer: Callable[[], None] | None = None):
        self.workers = max(1, int(workers))
        if initializer is not None:
            initializer()
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            with _one_thread_workers():
                self._pool = _spawn_pool(self.workers, initializer)
                # the executor spawns its workers on demand: start them all while the limits are set
                for f in [self._pool.submit(os.getpid) for _ in range(self.workers)]:
                    f.result()

    def map(self, function: Callable, tasks: Iterable[tuple]) -> list:
        """``[function(*task) for task in tasks]``, the tasks spread over the workers."""
        tasks = list(tasks)
        if self._pool is None:
            with threadpool_limits(1):
                return [function(*task) for task in tasks]
        futures = [self._pool.submit(function, *task) for task in tasks]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
