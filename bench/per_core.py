"""Benchmark of what each fan-out step costs on one core, the figures docs/scaling.md projects
from: one process, one BLAS/FFT thread, as one local worker or one Ray task runs. Run by hand;
prints figures, asserts nothing.

    .venv/bin/python -m bench per_core                 # 100 presets per Faust synth
    .venv/bin/python -m bench per_core --n 300 --search-renders 300

1. Generation (``asp.builder.generate``, one worker, no HPSS as ``make data``; and with HPSS, as
   held-out sets): sounds/s while rendering (render, mel, write), and the disk each sound takes
   in the published layout (float32 mels and the labels) and in the shards the workers write.
2. Evaluation (``score_sample``, the task ``evaluate.py`` fans out): a sound rendered with its true
   preset and three predicted presets, all four scored: sounds/s and renders/s.
3. Refinement (``search_sound``, the task ``evaluate.py --refine-renders`` fans out on Ray): a
   whole search of ``--search-renders`` renders per sound on one core: renders/s.
4. The driver's memory while it generates a dataset with 2 workers (what the machine that
   assembles needs), at two sizes: its anonymous resident memory (the pages of the memory-mapped
   output are the page cache's, given back under pressure).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from asp.builder import WORK_DIR, Settings, generate, make_plan
from asp.evaluation.results import score_sample
from asp.evaluation.results import warm_up as evaluation_warm_up
from asp.search import Budget
from asp.search.fanout import search_sound
from asp.search.fanout import warm_up as search_warm_up
from bench import common
from data.encoding import Codec
from data_generation.presets import random_presets
from data_generation.spec import load_spec

FAUST = ("va", "fm", "modal")


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def generation(n: int, hpss: bool) -> None:
    settings = Settings(synths=FAUST, presets={s: ("random",) for s in FAUST}, n=n, notes=(60,), seed=0, hpss=hpss)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        cpu = time.process_time()
        summary = generate(settings, out, workers=1, progress=False)
        cpu = time.process_time() - cpu
        kept = sum(summary.kept.values())
        published = folder_bytes(out, "*.npy")
        mels = folder_bytes(out, "*mels*.npy")
        line = (
            f"generation, hpss {hpss}: {summary.rendered / cpu:5.1f} sounds per CPU-second end to end (wall: "
            f"{summary.rendered / summary.loop_seconds:5.1f}/s while rendering, "
            f"{summary.rendered / summary.seconds:5.1f}/s end to end; {summary.rendered} sounds; outside the render "
            f"loop (plan, assembly) {summary.seconds - summary.loop_seconds:.1f} s); disk per "
            f"sound: {published / kept / 1e3:.1f} kB published ({mels / kept / 1e3:.1f} kB of it mels)"
        )
        if not hpss:  # the shards as the workers leave them: all but the last one, not assembled
            part = Path(tmp) / "part"
            generate(settings, part, workers=1, progress=False, max_shards=len(make_plan(settings).shards) - 1)
            shards = sorted((part / WORK_DIR).glob("*.npz"))
            kept_in_shards = 0
            for path in shards:
                with np.load(path, allow_pickle=False) as z:
                    kept_in_shards += int(z["kept"].sum())
            line += f", {sum(p.stat().st_size for p in shards) / kept_in_shards / 1e3:.1f} kB in shards"
    print(line)


def anon_mb() -> float:
    """This process's anonymous resident memory (not the file pages of its memory maps), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def driver_memory(sizes: tuple[int, int]) -> None:
    """The driver's peak anonymous memory while it plans, hands out and assembles a dataset, the
    shards rendered by 2 worker processes: at two sizes, and what each 1,000 sounds add."""
    peaks = []
    for n in sizes:
        settings = Settings(synths=FAUST, presets={s: ("random",) for s in FAUST}, n=n, notes=(60,), seed=0, hpss=False)
        peak, stop = [anon_mb()], threading.Event()

        def watch(peak=peak, stop=stop):
            while not stop.wait(0.05):
                peak[0] = max(peak[0], anon_mb())

        thread = threading.Thread(target=watch, daemon=True)
        base = anon_mb()
        thread.start()
        with tempfile.TemporaryDirectory() as tmp:
            generate(settings, Path(tmp) / "data", workers=2, progress=False)
        stop.set()
        thread.join()
        peaks.append((3 * n, peak[0] - base))
    (n0, m0), (n1, m1) = peaks
    print(
        "driver memory (anonymous, above the process's own): "
        + ", ".join(f"{m:.0f} MB at {k} sounds" for k, m in peaks)
        + f": {1000 * (m1 - m0) / (n1 - n0):.1f} MB per 1,000 sounds"
    )


def evaluation(sounds: int) -> None:
    evaluation_warm_up()
    rng = np.random.default_rng(5)
    tasks = []
    for k in range(sounds):
        spec = load_spec(FAUST[k % 3])
        presets = random_presets(spec, 4, rng)
        plans = [(f"m{j}", str(spec.path), presets[j]) for j in (1, 2, 3)]
        tasks.append((str(spec.path), spec.render.note, presets[0], plans, k))
    score_sample(*tasks[0])  # each synth compiled once, as a worker does before its first task
    score_sample(*tasks[1])
    score_sample(*tasks[2])
    start, cpu = time.perf_counter(), time.process_time()
    for task in tasks:
        score_sample(*task)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"evaluation: {sounds / cpu:5.1f} sounds, {4 * sounds / cpu:5.1f} renders per CPU-second (wall: "
        f"{4 * sounds / seconds:5.1f} renders/s; a true preset and 3 predictions per sound, each scored)"
    )


def search(sounds: int, renders: int) -> None:
    search_warm_up()
    rng = np.random.default_rng(6)
    done, seconds, cpu = 0, 0.0, 0.0
    for k in range(sounds + 3):
        spec = load_spec(FAUST[k % 3])
        target, start = random_presets(spec, 2, rng)
        t0, c0 = time.perf_counter(), time.process_time()
        _, found = search_sound(
            spec, target, spec.render.note, {"random": Codec(spec).encode(start)}, Budget(renders=renders), 0, k
        )
        if k >= 3:  # after each synth's first search (compiling its vectorized build)
            done, seconds = done + found.renders, seconds + time.perf_counter() - t0
            cpu += time.process_time() - c0
    print(
        f"refinement: {done / cpu:5.1f} renders per CPU-second (wall: {done / seconds:5.1f}/s; {sounds} searches "
        f"of {renders} renders)"
    )


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--n", type=int, default=100, help="presets per Faust synth for generation (default 100)")
    p.add_argument("--sounds", type=int, default=30, help="sounds for evaluation and refinement (default 30)")
    p.add_argument("--search-renders", type=int, default=200)
    p.add_argument(
        "--memory-sizes", type=int, nargs=2, default=(100, 1000), help="presets per synth (default 100 1000)"
    )
    p.add_argument("--skip-memory", action="store_true", help="skip the driver's memory (2 workers, ~3,300 sounds)")
    args = p.parse_args()
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, load average {load:.2f} at the start (one process; per CPU-second: "
        "the process's CPU time, what one core does when nothing else competes for it)"
    )
    with threadpool_limits(1):
        generation(args.n, hpss=False)
        generation(args.n, hpss=True)
        evaluation(args.sounds)
        search(args.sounds, args.search_renders)
    if not args.skip_memory:
        driver_memory(tuple(args.memory_sizes))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
