"""What a search found for one synth (``SearchResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SearchResult:
    """What a search found for one synth.

    Attributes:
        preset: (n_params,) the best preset (normalized).
        distance: its ``SearchObjective`` distance, rendered exactly (``history`` holds the
            distances of the fast renders the search made).
        start: the label of the best start, and ``start_distance`` its distance.
        starts: {label: distance} of every start.
        renders: renders used, starts included (not the two exact re-renders at the end);
            ``seconds`` the wall time.
        history: (renders so far, best distance so far) after each batch.
        runs: each CMA-ES run: its start, population size, generations and why it stopped
            (empty: the budget ended it; "classes changed": a sweep found a better point).
        snapshots: {render count: the best preset once that many renders were spent} for the
            counts asked for (taken after the batch that crossed the count).
    """

    preset: np.ndarray
    distance: float
    start: str
    start_distance: float
    start_preset: np.ndarray
    starts: dict[str, float]
    renders: int
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
