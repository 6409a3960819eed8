"""Best of K: the presets a synth's match is chosen from, and what the report says about them.

The candidates of a synth are the regression head's preset (``network``), K presets drawn from
its generative head (``sample i``) and the run's index's nearest presets (``nearest i (...)``).
They are all rendered and ranked by the search's own distance (``asp.search.SearchObjective``);
the closest is the best-of-K match and the first start of a search.
"""

from __future__ import annotations

import numpy as np

SOURCES = ("network", "sample", "nearest")


def source(label: str) -> str:
    """The source of a candidate's label: network, sample or nearest."""
    return next((s for s in SOURCES if label.startswith(s)), "other")


def candidates(network: np.ndarray, samples: np.ndarray, nearest: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{label: encoded vector} of one synth's candidates, the network's first.

    Args:
        network: (size,) the regression head's vector; samples: (k, size) drawn vectors (k may be 0);
        nearest: {label: (size,)} the index's nearest presets.
    """
    out = {"network": np.asarray(network, np.float32)}
    out.update({f"sample {i + 1}": np.asarray(v, np.float32) for i, v in enumerate(samples)})
    out.update({label: np.asarray(v, np.float32) for label, v in nearest.items()})
    return out


def summarize(distances: dict[str, float]) -> dict:
    """What a match records of its candidates: how many of each source, the spread of their
    distances and the winner (the lowest distance; the first of equals).

    Args:
        distances: {label: the search's distance of its render}, at least one.
    """
    labels = list(distances)
    values = np.array([distances[k] for k in labels], dtype=np.float64)
    winner = labels[int(np.argmin(values))]
    counts = {s: sum(source(k) == s for k in labels) for s in SOURCES}
    best_of = {}
    for s in SOURCES:
        mine = [distances[k] for k in labels if source(k) == s]
        if mine:
            best_of[s] = round(float(min(mine)), 4)
    return {
        "count": len(labels),
        "by_source": counts,
        "winner": winner,
        "winner_source": source(winner),
        "distance": {
            "min": round(float(values.min()), 4),
            "median": round(float(np.median(values)), 4),
            "max": round(float(values.max()), 4),
        },
        "best_by_source": best_of,
    }
