"""Many sounds searched at once, one whole search per worker task: how an evaluation refines its
sounds on a Ray cluster (``asp.cluster``), where fanning out each search's batches of renders
over the network would cost more than the renders.

A worker keeps its ``Searcher`` (one process, ``workers=1``) and its exact renderer between
tasks. With a budget in renders a task finds what a ``Searcher`` with any number of workers finds
for the same seed; a budget in seconds is spent on one core here.
"""

from __future__ import annotations

import numpy as np

from asp.search.result import SearchResult
from asp.search.run import Searcher, _warm_up
from asp.search.space import Budget
from data_generation.render import Renderer
from data_generation.spec import SynthSpec

_WORKER: dict = {}


def warm_up() -> None:
    """Compiles what a search runs, once per worker process (see ``asp.parallel.run_tasks``)."""
    _warm_up()


def search_sound(
    spec: SynthSpec, preset: np.ndarray, note: int, starts: dict[str, np.ndarray], budget: Budget, seed: int, key
) -> tuple[object, SearchResult]:
    """Worker task: renders ``preset`` (the target) exactly, as every output is rendered, and
    searches it from ``starts`` with this worker's searcher; returns ``(key, result)``."""
    if not _WORKER:
        _WORKER["searcher"], _WORKER["renderer"] = Searcher(workers=1), Renderer()
    target = _WORKER["renderer"].render(spec, preset, note=note)
    return key, _WORKER["searcher"].search(spec, target, note, starts, budget, seed=seed, progress=False)
