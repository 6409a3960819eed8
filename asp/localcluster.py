"""A Ray cluster of several nodes on this machine, every address the loopback one (127.0.0.1):
for trying ``--ray`` without other machines, and for the tests and the bench.

    with LocalCluster(nodes=2, cpus_per_node=1) as cluster:
        os.environ.update(cluster.env)      # what a driver on the loopback needs (a subprocess: env=)
        ... --ray cluster.address ...
        cluster.kill_node(1)                # a node dies: SIGKILL of all its processes
        cluster.add_node()

Each node is ``ray start --block`` in a process group of its own, started and stopped by this
object through the ids of its own processes (never ``ray stop``, which stops every Ray process of
the machine). Ray turns 127.0.0.1 into the machine's network address, so that other machines can
join; these nodes are pinned to the loopback instead (``_LAUNCHER``), and a driver must be too
(``env``). A real cluster needs none of this: ``ray start`` on each machine (docs/scaling.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 90.0  # s for a node to start
STOP_GRACE = 5.0  # s a node has to stop on SIGTERM before it is killed
# Ray's CLI with every address the loopback one: get_node_ip_address answers 127.0.0.1, and the
# check that refuses a second node when drivers resolve addresses to the loopback (ENABLE_RAY_CLUSTER,
# off through the environment below, meant for macOS and Windows) is passed
_LAUNCHER = """
import sys
import ray._private.ray_constants as ray_constants
import ray._private.services as services
ray_constants.ENABLE_RAY_CLUSTER = True
services.get_node_ip_address = lambda address=None: "127.0.0.1"
from ray.scripts.scripts import main
sys.argv[0] = "ray"
sys.exit(main())
"""
# for every process of these nodes and their drivers: resolve addresses to the loopback, no usage stats
ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    """{pid: its child pids} of every process (Linux /proc)."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """The processes below ``pid`` (children, their children, ...); ``children``: a ``_children()``
    already read (one scan of /proc for many questions)."""
    children, out, todo = children if children is not None else _children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class _Node:
    process: subprocess.Popen
    log: Path
    head: bool

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalCluster:
    """Nodes on this machine's loopback (see the module's docstring).

    Args:
        nodes: nodes to start, the head included.
        cpus_per_node: CPUs each node offers (``ray start --num-cpus``).
        object_store_mb: each node's object store (the tasks here return small results).
        root: a folder for the nodes' logs and Ray's session files (default: a fresh temp folder,
            removed by ``stop``). Keep it short: Ray's socket paths must fit in 107 bytes.
    """

    def __init__(self, nodes: int = 2, *, cpus_per_node: int = 1, object_store_mb: int = 200, root=None):
        self.count, self.cpus, self.store = nodes, cpus_per_node, object_store_mb * 1024 * 1024
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="asp-ray-", dir="/tmp"))
        self.port = _free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.nodes: list[_Node] = []
        self.env = dict(ENV)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> LocalCluster:
        try:
            self._start_node(head=True)
            for _ in range(self.count - 1):
                self.add_node()
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self) -> int:
        """Starts one more worker node; returns its index in ``nodes``."""
        self._start_node(head=False)
        return len(self.nodes) - 1

    def _start_node(self, *, head: bool) -> None:
        args = [
            "start",
            "--block",
            "--num-cpus",
            str(self.cpus),
            "--object-store-memory",
            str(self.store),
            "--temp-dir",
            str(self.root / "ray"),
            "--disable-usage-stats",
            "--include-log-monitor",  # the toolkit does not forward workers' logs to the driver:
            "false",  # its log monitor (a third of an idle node's CPU) has nothing to do
            "--dashboard-agent-listen-port",
            str(_free_port()),
        ]
        if head:
            args += ["--head", "--port", str(self.port), "--include-dashboard", "false"]
            args += ["--ray-client-server-port", str(_free_port()), "--dashboard-port", str(_free_port())]
        else:
            args += ["--address", self.address]
        log = self.root / f"node{len(self.nodes)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                env={**os.environ, **ENV},
                start_new_session=True,  # a process group of its own, stopped as one
            )
        node = _Node(process, log, head)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if not node.alive or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"a Ray node did not start (log {log}):\n{tail}")
            time.sleep(0.2)

    def kill_node(self, index: int) -> None:
        """Kills node ``index`` at once (SIGKILL of all its processes), as a machine dies, and
        drops it from ``nodes``."""
        node = self.nodes.pop(index)
        self._signal(node, signal.SIGKILL)
        node.process.wait()

    def stop(self) -> None:
        """Stops every node (worker nodes first): SIGTERM, then SIGKILL after ``STOP_GRACE`` s."""
        for node in reversed(self.nodes):
            if node.alive:
                pids = self._signal(node, signal.SIGTERM)
                try:
                    node.process.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    pass
                self._signal(node, signal.SIGKILL, extra=pids)
                node.process.wait()
        self.nodes = []
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _signal(self, node: _Node, sig: int, extra: list[int] = ()) -> list[int]:
        """Signals a node's process group and every process below its ``ray start`` (Ray's
        workers run in sessions of their own); returns the pids signalled."""
        pids = sorted(set(descendants(node.process.pid)) | set(extra))
        for kill in (lambda: os.killpg(node.process.pid, sig), *[lambda p=p: os.kill(p, sig) for p in pids]):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        return pids

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what runs where -----------------------------------------------------------------
    def task_workers(self, name: str = "_run_task") -> dict[int, list[int]]:
        """{node index: pids of its Ray workers running a task of function ``name`` now}."""
        out: dict[int, list[int]] = {}
        for i, node in enumerate(self.nodes):
            if node.alive:
                busy = [p for p in descendants(node.process.pid) if _cmdline(p).startswith(f"ray::{name}")]
                if busy:
                    out[i] = busy
        return out
