"""Running rendering work on worker processes: one engine per worker, one thread each.

Workers die with the process that started them, even when it is killed with ``kill -9`` (Linux:
the kernel sends them SIGTERM), so an interrupted run leaves no worker rendering on.

Every command's ``--workers`` goes through ``cap_workers``: no more workers than the machine's
cores, nor than its free memory holds at ``WORKER_MEMORY`` each.
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
from pathlib import Path

from threadpoolctl import threadpool_limits

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
# a worker's heap keeps up to this much freed memory instead of handing it back to the kernel
WORKER_HEAP_SLACK = 256 * 1024 * 1024
# what one worker process takes at its peak: Python, numpy, librosa, an engine and a synth (a search
# worker measured ~340 MB), with some room
WORKER_MEMORY = 400 * 1024 * 1024


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the platform tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory free for new processes: the kernel's MemAvailable, within this control
    group's limit where there is one (a container); None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return max(0, min(found))


def cap_workers(requested: int | None, *, flag: str = "--workers") -> int:
    """The number of worker processes to start for ``requested`` (None: one per core): at most
    one per usable core, and no more than free memory holds at ``WORKER_MEMORY`` each (at least
    one). When that is fewer than asked, says so in one line on stdout."""
    cores = usable_cores()
    memory = available_memory()
    fits = cores if memory is None else max(1, memory // WORKER_MEMORY)
    limit = max(1, min(cores, fits))
    wanted = cores if requested is None else max(1, int(requested))
    if wanted <= limit:
        return wanted
    free = "" if memory is None else f", {memory / 1e9:.1f} GB free"
    asked = f"{flag} {requested}" if requested is not None else f"{flag} (default: one per core)"
    print(f"{asked}: using {limit} ({cores} cores{free}, ~{WORKER_MEMORY // 2**20} MB per worker)", flush=True)
    return limit


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
