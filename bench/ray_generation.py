"""Benchmark of dataset generation on a Ray cluster against the local pool, on this machine: a
two-node Ray cluster on the loopback (asp.localcluster, one CPU per node) and the local pool with
as many workers as the cluster has CPUs, the same dataset made alternately by each, end to end
(a driver connecting and its workers starting included, as the pool's spawning is). Run by hand;
prints figures, asserts nothing.

    .venv/bin/python -m bench ray_generation                    # 3 rounds of 1,200 Faust sounds
    .venv/bin/python -m bench ray_generation --n 1000 --rounds 5 --hpss

Two figures per run: samples/s of wall time, and samples per CPU-second of every process involved
(the driver, the workers, and with Ray its own daemons: GCS, raylets, agents), which is what Ray's
overhead costs whatever else the machine runs. On a machine other jobs share, Linux's autogroup
scheduler gives each session a fair share of the CPU, and every Ray worker runs in a session of
its own: so that the wall-time figure compares like with like, the pool's workers here also start
a session each (``_own_session``; the toolkit's pool does not).
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

import asp.builder.run
from asp import cluster
from asp.builder import Settings, generate
from asp.builder.shards import _warm_up
from asp.localcluster import LocalCluster, _children, _cmdline, descendants
from bench import common

FAUST = ("va", "fm", "modal")
TICK = os.sysconf("SC_CLK_TCK")


def _own_session() -> None:
    """The pool's worker initializer here: a session of its own (as a Ray worker has), then the
    builder's warm-up."""
    if os.environ.get("BENCH_DRIVER") != str(os.getpid()):  # (it runs in the driver too)
        with contextlib.suppress(PermissionError):  # a Ray worker leads its session already
            os.setsid()
    _warm_up()


class Sampler:
    """Every 0.2 s: the CPU seconds each process of ``pids(children)`` has used (its own, not its
    children's), and the largest resident memory of any process of ``workers(children)``
    (``children``: one scan of /proc per sample). ``own``: the CPU seconds this sampling took in
    the driver (its thread), which ``run`` takes off the driver's."""

    def __init__(self, pids, workers):
        self.pids, self.workers, self.cpu, self.base, self.peak = pids, workers, {}, {}, 0
        self.own = 0.0
        self.seen: set[int] = set()  # every pid ``workers()`` named
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        children = _children()
        for pid in self.pids(children):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        for pid in self.workers(children):
            self.seen.add(pid)
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            rss = [x for x in status.splitlines() if x.startswith("VmRSS:")]  # none: a zombie
            if rss:
                self.peak = max(self.peak, int(rss[0].split()[1]) * 1024)

    def _run(self):
        while not self._stop.wait(0.2):
            self._sample()
        self.own = time.thread_time()  # this thread's CPU since it started

    def used(self, *, workers: bool | None = None) -> float:
        """CPU seconds since the start: of every process, or of the workers only, or of the others."""
        return sum(
            v - self.base.get(pid, 0.0)
            for pid, v in self.cpu.items()
            if workers is None or (pid in self.seen) == workers
        )

    def __enter__(self):
        self._sample()
        self.base = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pool_workers(children) -> list[int]:
    return [p for p in descendants(os.getpid(), children) if "multiprocessing" in _cmdline(p)]


def run(settings: Settings, workers: int, ray_cluster: LocalCluster | None):
    """One dataset made end to end: (summary, wall seconds, CPU seconds of the driver, the workers
    and with Ray every process of the cluster's nodes, peak worker RSS)."""
    with tempfile.TemporaryDirectory() as tmp:  # a folder both nodes see: this machine's disk
        out = Path(tmp) / "data"
        cpu0, start = self_cpu(), time.perf_counter()
        if ray_cluster is None:
            with Sampler(pool_workers, pool_workers) as sampler:
                summary = generate(settings, out, workers=workers, progress=False)
        else:

            def everything(children):
                return [p for n in ray_cluster.nodes for p in [n.process.pid, *descendants(n.process.pid, children)]]

            def task_workers(children):  # Ray workers running a task of the toolkit's now
                return [p for p in everything(children) if _cmdline(p).startswith("ray::_run_task")]

            with Sampler(everything, task_workers) as sampler, cluster.ray_session(ray_cluster.address, shared=out):
                summary = generate(settings, out, progress=False)
        seconds = time.perf_counter() - start
        driver = self_cpu() - cpu0 - sampler.own  # the sampling is the bench's, not the run's
        cpu = driver + sampler.used()
    print(
        f"        CPU-s: driver {driver:.1f}, workers {sampler.used(workers=True):.1f}, "
        f"other processes (Ray's daemons) {sampler.used(workers=False):.1f}"
    )
    return summary, seconds, cpu, sampler.peak


def line(label: str, summary, seconds: float, cpu: float, peak: int) -> tuple[float, float]:
    rate, per_cpu = summary.rendered / seconds, summary.rendered / cpu
    print(
        f"  {label:<5} {rate:5.1f} samples/s end to end ({summary.rendered / summary.loop_seconds:5.1f} while "
        f"rendering) | {per_cpu:5.1f} samples per CPU-second ({1000 / per_cpu:5.1f} CPU ms per sample, every process "
        f"counted) | outside the render loop {seconds - summary.loop_seconds:4.1f} s | worker peak RSS "
        f"{peak / 2**20:.0f} MiB"
    )
    return rate, per_cpu


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--n", type=int, default=400, help="presets per Faust synth (x3 sounds)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hpss", action="store_true", help="with HPSS labels (default: --no-hpss, as make data)")
    args = parser.parse_args()
    nodes, cpus = 2, 1
    settings = Settings(
        synths=FAUST, presets={s: ("random",) for s in FAUST}, n=args.n, notes=(60,), seed=0, hpss=args.hpss
    )
    print(f"machine: {os.cpu_count()} cores; {len(FAUST) * args.n} sounds per run, hpss {args.hpss}")
    run(Settings(synths=("va",), presets={"va": ("random",)}, n=2, notes=(60,), seed=0), 1, None)  # numba caches
    os.environ["BENCH_DRIVER"] = str(os.getpid())
    asp.builder.run._warm_up = _own_session  # the pool's workers in sessions of their own, as Ray's
    with LocalCluster(nodes=nodes, cpus_per_node=cpus, object_store_mb=200) as ray_cluster:
        os.environ.update(ray_cluster.env)  # this process is the driver, on the loopback
        print(f"Ray {ray_cluster.address}: {nodes} nodes x {cpus} CPU; local pool: {nodes * cpus} workers")
        pool, ray = [], []
        for k in range(args.rounds):
            print(f"round {k + 1}")
            pool.append(line("pool", *run(settings, nodes * cpus, None)))
            ray.append(line("ray", *run(settings, nodes * cpus, ray_cluster)))
    for k, what in enumerate(("end to end (samples/s)", "per CPU-second (samples)")):
        p, r = statistics.median(x[k] for x in pool), statistics.median(x[k] for x in ray)
        rounds = ", ".join(f"{100 * b[k] / a[k]:.0f}%" for a, b in zip(pool, ray))
        print(f"median {what}: pool {p:.1f}, ray {r:.1f}: ray = {100 * r / p:.0f}% of the pool (rounds: {rounds})")
    print(f"driver peak RSS (this process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
