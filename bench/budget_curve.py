"""Benchmark of the search budget: quality against renders and seconds, read from the matches of
a real-sound run (each refined synth's ``search_history`` in its ``match.json``). Run by hand;
prints a markdown table, asserts nothing.

For each sound, the closest of its refined synths at each render count (the best search distance
any of them had reached by then), as a share of where the searches started (their best start:
the best of K's or the network's and nearest presets); the mean over the sounds with a 95% CI,
and the seconds those renders took (each search's own seconds per render). The default budget of
``run_inference.py --input`` comes from where this curve flattens (docs/inference.md).

    .venv/bin/python experiments/run.py experiments/configs/real_sounds.json --profile curve
    .venv/bin/python -m bench budget_curve results/real_sounds
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asp.stats import mean_ci
from bench import common

MARKS = (25, 50, 100, 200, 300, 400, 600)


def at(history: list[list[float]], renders: int) -> float:
    """The best distance once ``renders`` were spent (the last batch at or before them)."""
    reached = [d for r, d in history if r <= renders]
    return reached[-1] if reached else history[0][1]


def curves(folder: Path) -> tuple[dict[int, list[float]], list[float], int]:
    """({render count: each sound's share of its start distance}, seconds per render of each
    search, sounds read) from the match.json files under ``folder``."""
    shares: dict[int, list[float]] = {m: [] for m in MARKS}
    per_render, sounds = [], 0
    for match in sorted(folder.glob("sounds/*/match.json")):
        refined = [r for r in json.loads(match.read_text())["results"] if r.get("search_history")]
        if not refined:
            continue
        sounds += 1
        start = min(r["search_distance_start"] for r in refined)
        for mark in MARKS:
            shares[mark].append(min(at(r["search_history"], mark) for r in refined) / start)
        per_render += [r["search_seconds"] / max(r["search_renders"], 1) for r in refined]
    return shares, per_render, sounds


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("results", help="a real-sound run's results folder (its sounds/*/match.json)")
    args = p.parse_args()
    shares, per_render, sounds = curves(Path(args.results))
    if not sounds:
        p.error(f"no match.json with a search_history under {args.results}/sounds; run a real-sound profile first")
    seconds = float(np.mean(per_render))
    refined = len(per_render) / sounds
    print(f"{common.machine_line()}; {sounds} sounds, {refined:.1f} refined synths each, ", end="")
    print(f"{1000 * seconds:.0f} ms a render\n")
    print("| renders per synth | search seconds a sound | distance / start distance | improvement reached |")
    print("|---|---|---|---|")
    final = float(np.mean(shares[MARKS[-1]]))
    for mark in MARKS:
        mean, half = mean_ci(np.array(shares[mark]))
        reached = (1 - mean) / (1 - final) if final < 1 else 1.0
        print(f"| {mark} | {mark * seconds * refined:.1f} | {mean:.3f} ± {half:.3f} | {100 * reached:.0f}% |")


if __name__ == "__main__":
    main()
