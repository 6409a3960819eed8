"""Search with the synth in the loop: from a network's guess (and other starts) to the closest
preset the synth can make.

Continuous and categorical parameters are searched apart, each in its own terms. Separable
CMA-ES (the ``cma`` library) moves the continuous ones, one coordinate in [0, 1] each, with the
categorical ones held at the classes of the point the run starts from. Categorical parameters
move as classes, never as a rounded number: before each CMA-ES run the search tries every other
class of every categorical parameter of the best preset so far (one batch: 19 renders for va, 51
for fm), then all the changes that helped together; a wrong waveform or operator ratio is the
error a network makes most. Sweeps also run every ``SWEEP_EVERY`` CMA-ES generations: when one
helps, CMA-ES starts again from the new best point with the step size it had reached. (A budget
of 1,100 renders is one CMA-ES run on va; with a sweep only before it, a class that pays only
once the continuous parameters have moved was never found: mean LSD 1.22 against 1.11 with the
periodic sweeps, 17 held-out va sounds. Searching each class as a CMA-ES coordinate, one score
per class, gave CMA-ES 85 coordinates instead of 29 on fm, and worse matches for the same
renders: mean LSD 1.93 against 1.83 on fm, 0.83 against 0.80 on va, 8 held-out sounds each at
1,100 renders.) Fixed parameters (the spec's ``fixed``) and the ones a caller holds stay as they
are.

Every candidate is rendered with the real synth and scored by ``SearchObjective``: L1 distances of
log mel spectra at three resolutions plus the log magnitude spectrum, loudness kept (no
normalization), frames weighted towards the note's start. It is none of the evaluation metrics,
so an evaluation of the result is not scored by what was optimized. Candidates are rendered on
worker processes (one engine per worker), each batch at once. A search with a budget in renders
is reproducible for a seed, whatever the number of workers; a budget in seconds stops at the
first batch past it.

A fast LFO's rate is a needle: from the true va preset of a 3.3 Hz LFO, 0.002 off in
``lfo_rate`` (1.2% in Hz) took the search distance from 0 to 0.25, and no step size finds it. So
for a parameter whose spec declares ``rate_hz``, the search reads the target's modulation rates
(``modulation_rates``), tries each on the best starts (one batch) and runs CMA-ES first from the
best of those with that coordinate's step size 30x smaller, so the other parameters fit around
the rate before it moves. (17 held-out va sounds at 1,100 renders, CMA-ES seeds 0 / 1: mean LSD
0.951 -> 0.906 / 1.035 -> 0.969, search distance 0.474 -> 0.443 / 0.506 -> 0.483; the 3.3 Hz
sound 1.62 -> 0.78 / 1.51 -> 0.78.)

The result is never worse than the best start: the starts are scored first and the best of
everything rendered wins. Candidates render fast, not bit-exactly (Faust synths compiled
vectorized, 25-35% faster; plugins with one reused instance), so the winner and the best start
are then re-rendered exactly and the better of the two is returned, with its exact distance.
"""

from asp.search.objective import SearchObjective, modulation_rates
from asp.search.result import SearchResult
from asp.search.run import (
    BEST_OF_K,
    DEFAULT_STARTS_KEPT,
    INPUT_REFINE_RENDERS,
    INPUT_REFINE_SECONDS,
    NEAREST_STARTS,
    Search,
    Searcher,
)
from asp.search.space import Budget, SearchSpace

__all__ = [
    "BEST_OF_K",
    "DEFAULT_STARTS_KEPT",
    "INPUT_REFINE_RENDERS",
    "INPUT_REFINE_SECONDS",
    "NEAREST_STARTS",
    "Budget",
    "Search",
    "SearchObjective",
    "SearchResult",
    "SearchSpace",
    "Searcher",
    "modulation_rates",
]
