"""Benchmark of the search with the synth in the loop (asp/search/). Run by hand; prints figures,
asserts nothing.

1. Throughput: renders per second of the renderer alone (1 process, and 2 processes rendering
   side by side: "the renderer's own rate on 2 cores"), and of the search loop (render + score +
   CMA-ES) with 1 and 2 workers.
2. Quality against budget: mean LSD of the best preset after 50, 100, 300, 1000, 3000 renders,
   on fresh random presets (seed 9, another seed than any dataset), searching from the nearest
   training presets of ``--data-dir`` when it has the synth, else from a random preset.

    .venv/bin/python -m bench search                               # va fm modal amsynth
    .venv/bin/python -m bench search --synths va --sounds 2 --max-renders 1000
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import time

import numpy as np

from asp.cli import positive_int
from asp.config import DATA_DIR
from asp.errors import ASPError
from asp.metrics import log_spectral_distance
from asp.parallel import WorkerPool, cap_workers
from asp.search import NEAREST_STARTS, Budget, Searcher
from bench import common
from data.dataset import load_split
from data.encoding import Codec
from data.features import mel_spectrogram
from data.lookup import nearest_rows
from data_generation.presets import random_presets
from data_generation.render import Renderer
from data_generation.spec import load_spec

BUDGETS = (50, 100, 300, 1000, 3000)


def _render_only(spec, presets, note):
    """Worker task: renders presets with a reused engine (as the search does); returns seconds."""
    renderer = Renderer(exact=False)
    renderer.render(spec, presets[0], note=note)  # compile / load the plugin first
    start = time.perf_counter()
    for preset in presets:
        renderer.render(spec, preset, note=note)
    return time.perf_counter() - start


def throughput(spec, n: int) -> None:
    presets = random_presets(spec, n, np.random.default_rng(1))
    note = spec.render.note
    one = n / _render_only(spec, presets, note)
    with WorkerPool(2) as pool:
        seconds = pool.map(_render_only, [(spec, presets, note), (spec, presets, note)])
    two = 2 * n / max(seconds)
    target = Renderer().render(spec, random_presets(spec, 1, np.random.default_rng(2))[0], note=note)
    start = {"random": Codec(spec).encode(presets[0])}
    rates = {}
    for workers in (1, 2):
        with Searcher(workers=workers) as searcher:
            searcher.search(spec, target, note, start, Budget(renders=20), progress=False)  # warm the workers
            found = searcher.search(spec, target, note, start, Budget(renders=n), progress=False)
        rates[workers] = found.renders / found.seconds
    print(
        f"{spec.name:<8} renderer {one:6.1f}/s on 1 core, {two:6.1f}/s on 2 | search loop {rates[1]:6.1f}/s with 1 "
        f"worker ({rates[1] / one:.0%}), {rates[2]:6.1f}/s with 2 ({rates[2] / two:.0%} of the renderer on 2 cores)"
    )


def quality(spec, sounds: int, budgets: tuple[int, ...], data_dir: str | None, workers: int) -> None:
    rng = np.random.default_rng(9)
    targets = random_presets(spec, sounds, rng)
    codec, renderer = Codec(spec), Renderer()
    train = None
    if data_dir:
        try:
            train = load_split(data_dir, "train")
        except ASPError:
            train = None
    if train is not None and spec.name not in train.synths:
        train = None
    curves = {b: [] for b in budgets}
    starts_lsd, seconds = [], []
    with Searcher(workers=workers) as searcher:
        for k, preset in enumerate(targets):
            note = spec.render.note
            audio = renderer.render(spec, preset, note=note)
            if train is not None:
                rows = nearest_rows(train, mel_spectrogram(audio)[None], spec.name, k=NEAREST_STARTS)[0]
                starts = {f"nearest {i}": np.asarray(train.params[spec.name][r]) for i, r in enumerate(rows)}
            else:
                starts = {"random": codec.encode(random_presets(spec, 1, rng)[0])}
            found = searcher.search(
                spec, audio, note, starts, Budget(renders=max(budgets)), seed=k, snapshot_at=budgets, progress=True
            )
            seconds.append(found.seconds)
            starts_lsd.append(float(log_spectral_distance(audio, renderer.render(spec, found.start_preset, note=note))))
            for b in budgets:
                best = found.snapshots.get(b, found.preset)
                curves[b].append(float(log_spectral_distance(audio, renderer.render(spec, best, note=note))))
    cells = "  ".join(f"{b}: {np.mean(curves[b]):5.2f}" for b in budgets)
    origin = "nearest training presets" if train is not None else "a random preset"
    print(
        f"{spec.name:<8} mean LSD over {sounds} sounds, from {origin} ({np.mean(starts_lsd):.2f}) -> after N renders  "
        f"{cells}   ({np.mean(seconds) / max(budgets) * 1000:.0f} ms per render with {workers} workers)"
    )


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--synths", nargs="+", default=["va", "fm", "modal", "amsynth"])
    p.add_argument("--renders", type=int, default=200, help="renders per throughput figure (default 200)")
    p.add_argument("--sounds", type=int, default=3, help="target sounds per synth for the curve (default 3)")
    p.add_argument("--max-renders", type=int, default=max(BUDGETS), help="cut the curve at this budget")
    p.add_argument("-d", "--data-dir", default=DATA_DIR, help=f"training presets to start from (default {DATA_DIR})")
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args()
    budgets = tuple(b for b in BUDGETS if b <= args.max_renders) or (args.max_renders,)
    specs = []
    for name in args.synths:
        spec = load_spec(name)
        try:
            Renderer().render(spec, spec.defaults)
        except ASPError as err:
            print(f"{name:<8} skipped: {err}")
            continue
        specs.append(spec)
    if not args.skip_throughput:
        for spec in specs:
            throughput(spec, args.renders)
    if not args.skip_quality:
        for spec in specs:
            quality(spec, args.sounds, budgets, args.data_dir, cap_workers(args.workers))


if __name__ == "__main__":
    main()
