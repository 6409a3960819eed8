"""Fan-out work on a Ray cluster: the tasks ``asp.parallel.run_tasks`` gives this machine's worker
processes, given to the workers of every node of a cluster instead.

    with ray_session("10.0.0.1:6379", shared=out):    # this process becomes the cluster's driver
        for result in run_tasks(function, tasks, workers=1, initializer=warm_up):
            ...                                        # Ray tasks, yielded in completion order

Outside a session ``run_tasks`` is ``asp.parallel.run_tasks``, the local pool: the default, which
needs no Ray. Ray is imported only when a session starts (``pip install -r requirements-ray.txt``).
The commands open a session with ``--ray [ADDRESS]`` (``add_ray_argument``, ``session_from_args``).

On the cluster:

- A task takes one CPU. A worker process runs many tasks of the session one after another, so what a
  task function keeps in module globals (a renderer, its plugin instances, compiled Faust synths)
  stays warm between tasks, as in a local worker; ``initializer`` runs once per worker process,
  before its first task, and the process's BLAS/FFT pools are limited to one thread.
- A worker process or a node that dies costs the tasks it was running: Ray runs them again on
  another worker (up to ``TASK_RETRIES`` times). An exception a task raises is not retried: it
  ends the run and is raised here (an ``ASPError`` or ``OSError`` as itself).
- Before its first task a worker process checks that its node runs the driver's toolkit
  (``code_version``: the code of ``asp``, ``data``, ``data_generation`` and ``models.py`` and the
  versions of the libraries that make the numbers), and, when the session has a ``shared``
  folder, that it sees that folder: a probe file the driver wrote there. A node that does not
  fails the run with a one-line error naming it. Tasks must pass absolute paths: a Ray worker's
  working folder is not the driver's.
- At most ``IN_FLIGHT_PER_CPU`` tasks per CPU of the cluster are submitted at a time (a million
  shards are not a million pending tasks), enough that a worker finishing one finds the next.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from asp import parallel
from asp.errors import ASPError
from asp.files import remove_stale_temps, temp_path
from asp.waits import native_wait, wait_limit

TASK_RETRIES = 3  # times Ray runs a task again after the worker or node running it died
IN_FLIGHT_PER_CPU = 2
LIMIT_REFRESH = 5.0  # s between reads of the cluster's CPU count
CONNECT_TIMEOUT = 10.0  # s to reach the head's port
PROBE_WAIT = 10.0  # s a worker waits for the driver's probe file (a network file system's attribute cache)
NO_CPU_WAIT = 120.0  # s the run waits for a cluster that lost every CPU to get one back
REQUIREMENTS = "requirements-ray.txt"
INSTALL = f"pip install -r {REQUIREMENTS} (ray, the version tested)"
CODE = ("asp", "data", "data_generation", "models")  # the toolkit's code every node must share
LIBRARIES = ("dawdreamer", "numpy", "librosa", "scipy", "ray")  # and the libraries that make its numbers
_CODE_SUFFIXES = {".py", ".json", ".dsp", ".j2"}
_PROBE = ".ray_probe"


# ---------------------------------------------------------------------------------------
# the driver's side


@dataclass
class _Session:
    ray: object  # the ray module
    address: str
    version: str
    probe: str | None  # the probe file workers must see (absolute), or None
    token: str
    remote: object  # _run_task as a Ray remote function


_SESSION: _Session | None = None


def connected() -> bool:
    """Whether this process is a Ray session's driver (``run_tasks`` goes to the cluster)."""
    return _SESSION is not None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ASPError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def resolve_address(value: str | None) -> str:
    """The cluster address ``--ray`` means: the one given, else ``$RAY_ADDRESS``, else ``auto``
    (the cluster started on this machine with ``ray start --head``).

    Raises:
        ASPError: the value is an existing file or folder (an argument after a bare ``--ray``,
            read as its address).
    """
    if not value:
        return os.environ.get("RAY_ADDRESS") or "auto"
    if os.path.exists(value):
        raise ASPError(
            f"--ray takes a cluster address (host:port, or auto), not the path {value!r}: an argument right after "
            "--ray is read as its address; write --ray=ADDRESS, or put --ray after the positional arguments"
        )
    return value


@contextlib.contextmanager
def ray_session(address: str | None = None, *, shared: str | Path | None = None) -> Iterator[None]:
    """Connects this process to a Ray cluster for the block: ``run_tasks`` runs Ray tasks inside it.

    Args:
        address: the head's ``host:port``, ``auto`` or a ``ray://`` address; None or "": as
            ``resolve_address``.
        shared: a folder the tasks write to, which every node must see at the same path (NFS, a
            mounted bucket): it is created, and each worker process checks it sees a probe file
            the driver writes there.

    Raises:
        ASPError: Ray is not installed, or the cluster cannot be reached.
    """
    global _SESSION
    if _SESSION is not None:
        raise RuntimeError("a Ray session is already open in this process")
    ray = _import_ray()
    address, named_by = _local_address(resolve_address(address))
    _check_reachable(address, named_by)
    env = {k: "1" for k in parallel.THREAD_VARS}  # one BLAS/FFT thread per task, as in the local pool
    limit = wait_limit()
    late = (
        f"the Ray cluster at {address}{named_by} did not answer within {limit:g} s (its port is open, but its GCS "
        "does not reply: a head that is half dead or still starting); restart it (`ray stop`, then `ray start "
        "--head`), or check the address (ASP_CLUSTER_WAIT sets the wait in seconds; docs/scaling.md)"
    )
    try:
        with native_wait(late, limit):  # Ray retries its GCS in native code, where SIGTERM would wait
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, runtime_env={"env_vars": env})
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ASPError(
            f"cannot connect to the Ray cluster at {address} ({first}); start one with `ray start --head` "
            "and pass its address to --ray (docs/scaling.md)"
        ) from None
    token = os.urandom(8).hex()
    probe = None
    created: list[Path] = []  # the folders made for the probe, deepest first
    try:
        if shared is not None:
            folder = Path(shared).absolute()
            created = [p for p in (folder, *folder.parents) if not p.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(folder, _PROBE)  # a killed driver's
            probe = temp_path(folder / _PROBE)
            probe.write_text(token)
        remote = ray.remote(_run_task).options(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)
        _SESSION = _Session(ray, address, code_version(), str(probe) if probe else None, token, remote)
        yield
    finally:
        _SESSION = None
        if probe is not None:
            probe.unlink(missing_ok=True)
        for made in created:  # made for the probe, and the run wrote nothing there (it failed at once)
            try:
                made.rmdir()
            except OSError:
                break
        ray.shutdown()


def _local_address(address: str) -> tuple[str, str]:
    """``auto`` as the address of the cluster ``ray start`` last started on this machine, read from
    Ray's cluster file as Ray reads it, and the words naming that file (a head killed without
    ``ray stop`` leaves it behind, and Ray would retry its address forever); any other address as
    given, with no words."""
    if address != "auto":
        return address, ""
    temp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    path = Path(temp) / "ray" / "ray_current_cluster"
    try:
        found = path.read_text().strip() if path.is_file() else ""
    except OSError:
        found = ""
    return (found, f" (named by Ray's cluster file {path})") if found else (address, "")


def _check_reachable(address: str, named_by: str = "") -> None:
    """Fails at once when nothing answers at a ``host:port`` address (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # auto, or a form Ray reads itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        stale = " (a head stopped without `ray stop` leaves that file: run `ray stop`)" if named_by else ""
        raise ASPError(
            f"nothing answers at the Ray address {address}{named_by} ({err.strerror or err}){stale}; start the "
            "cluster's head there with `ray start --head --port PORT`, or check the address (docs/scaling.md)"
        ) from None


def add_ray_argument(parser) -> None:
    """Adds ``--ray [ADDRESS]`` to a command's argument parser."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the work as tasks on a Ray cluster: ADDRESS is its head's host:port; without one, $RAY_ADDRESS, "
        "else the cluster started on this machine (auto). Output must be on a folder every node sees. "
        "See docs/scaling.md",
    )


def session_from_args(args, *, shared: str | Path | None = None) -> contextlib.AbstractContextManager:
    """The Ray session a command's ``--ray`` asks for (``ray_session``), or a no-op without it.

    Raises:
        ASPError: ``--ray`` with ``--workers`` (on a cluster the nodes' CPUs set the parallelism).
    """
    if getattr(args, "ray", None) is None:
        return contextlib.nullcontext()
    if getattr(args, "workers", None) is not None:
        raise ASPError(
            "--workers sets this machine's worker processes; with --ray the cluster's CPUs do "
            "(ray start --num-cpus N on each node)"
        )
    return ray_session(args.ray, shared=shared)


def run_tasks(
    function: Callable,
    tasks: Iterable[tuple],
    *,
    workers: int,
    initializer: Callable[[], None] | None = None,
) -> Iterator:
    """Yields ``function(*task)`` for every task, in completion order: on the cluster inside a
    ``ray_session`` (``workers`` is then unused), else ``asp.parallel.run_tasks``.

    ``function`` and ``initializer`` must be module-level functions (workers import them).
    """
    if _SESSION is None:
        yield from parallel.run_tasks(function, tasks, workers=workers, initializer=initializer)
        return
    yield from _cluster_tasks(_SESSION, function, list(tasks), initializer)


def _cluster_tasks(session: _Session, function: Callable, tasks: list[tuple], initializer) -> Iterator:
    ray = session.ray
    pending: dict = {}  # ref -> task index
    submitted = 0
    no_cpu_since = None
    limit, limit_at = 0, -float("inf")
    try:
        while submitted < len(tasks) or pending:
            if time.monotonic() - limit_at > LIMIT_REFRESH:  # nodes come and go
                limit = IN_FLIGHT_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 0)))
                limit_at = time.monotonic()
            while submitted < len(tasks) and len(pending) < limit:
                args = (session.version, session.probe, session.token, function, initializer, tasks[submitted])
                pending[session.remote.remote(*args)] = submitted
                submitted += 1
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if not done:
                no_cpu_since = _check_cpus(ray, no_cpu_since)
                continue
            no_cpu_since = None
            rest = [r for r in pending if r not in done]
            if rest:  # every other finished one too, without waiting
                done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in done:
                del pending[ref]
                yield _result(ray, ref)
    finally:
        for ref in pending:  # the run failed or was stopped: what is left is not wanted
            with contextlib.suppress(Exception):
                ray.cancel(ref)


def _check_cpus(ray, since: float | None) -> float | None:
    """When the cluster has had no CPU for ``NO_CPU_WAIT`` s (every worker node gone), raises."""
    if ray.cluster_resources().get("CPU", 0) > 0:
        return None
    now = time.monotonic()
    if since is not None and now - since > NO_CPU_WAIT:
        raise ASPError(
            f"the Ray cluster has had no CPU for {NO_CPU_WAIT:.0f} s (its nodes are gone); "
            "start nodes with `ray start --address ...` and run the same command again"
        )
    return since if since is not None else now


def _result(ray, ref):
    """A finished task's value; its exception as the run's (ASPError/OSError as themselves)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, (ASPError, OSError)):
            raise cause from None
        raise
    except ray.exceptions.TaskCancelledError:
        raise
    except ray.exceptions.RayError as err:  # lost to dead workers or nodes more often than it is retried
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ASPError(
            f"a task failed {TASK_RETRIES + 1} times on the Ray cluster ({type(err).__name__}: {first}); "
            "check the cluster (ray status) and run the same command again"
        ) from None


# ---------------------------------------------------------------------------------------
# the worker's side


_CHECKED: set[str] = set()  # session tokens this worker process has checked
_INITIALIZED: set[str] = set()  # initializers run in this worker process


def _run_task(version: str, probe: str | None, token: str, function: Callable, initializer, task: tuple):
    """A task as a Ray worker runs it (see the module's docstring)."""
    if token not in _CHECKED:
        _check_node(version, probe, token)
        if not _CHECKED:  # the first session of this process: set it up as a local worker is
            parallel._steady_heap()
            from threadpoolctl import threadpool_limits

            threadpool_limits(1)
        _CHECKED.add(token)
    if initializer is not None:
        key = f"{getattr(initializer, '__module__', '')}.{getattr(initializer, '__qualname__', repr(initializer))}"
        if key not in _INITIALIZED:
            initializer()
            _INITIALIZED.add(key)
    return function(*task)


def _node_name() -> str:
    try:
        import ray

        ip = ray.util.get_node_ip_address()
    except Exception:
        ip = "?"
    return f"{socket.gethostname()} ({ip})"


def _check_node(version: str, probe: str | None, token: str) -> None:
    mine = code_version()
    if mine != version:
        raise ASPError(
            f"node {_node_name()} runs another version of the toolkit or its libraries than the driver "
            f"(code version {mine}, the driver's {version}; see asp.cluster.code_version): install the same "
            "commit and requirements on every node"
        )
    if probe is None:
        return
    deadline = time.monotonic() + PROBE_WAIT
    while True:
        try:
            if Path(probe).read_text() == token:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ASPError(
                f"node {_node_name()} cannot see the output folder {Path(probe).parent} the driver writes "
                "(its probe file is missing there): put the output on a folder every node mounts at the same "
                "path (NFS, a mounted bucket); see docs/scaling.md"
            )
        time.sleep(0.5)


_VERSION: str | None = None


def code_version() -> str:
    """A digest of the toolkit's code (``CODE``: every .py, .json, .dsp and .j2 file) and of the
    Python and ``LIBRARIES`` versions: equal on two machines, they make the same numbers."""
    global _VERSION
    if _VERSION is None:
        h = hashlib.sha256(sys.version.encode())
        for name in LIBRARIES:
            try:
                h.update(f"{name}={importlib.metadata.version(name)}".encode())
            except importlib.metadata.PackageNotFoundError:
                h.update(f"{name}=none".encode())
        for name in CODE:
            spec = importlib.util.find_spec(name)
            if spec is None:
                continue
            if spec.submodule_search_locations:
                root = Path(list(spec.submodule_search_locations)[0])
                files = sorted(
                    p
                    for p in root.rglob("*")
                    if p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts and p.is_file()
                )
            else:
                root, files = Path(spec.origin).parent, [Path(spec.origin)]
            for p in files:
                h.update(f"{name}/{p.relative_to(root).as_posix()}".encode() + b"\0" + p.read_bytes())
        _VERSION = h.hexdigest()[:16]
    return _VERSION
