"""Benchmark of the nearest-mel lookup's index against the exact scan: for every valid and test
sound of a sharded dataset (queries the index never saw), the training sound of the same synth
with the closest mel, found by the exact scan and by the index (its ``RERANK`` shortlist re-ranked
by the exact distance; shortlists of 1 show the PCA coordinates alone). Prints recall@1 (the share
of queries where the index finds the exact scan's row), how much farther a miss is, and the time
per query. Run by hand; prints figures, asserts nothing.

    .venv/bin/python -m bench lookup                  # generates 3 x 1,000 sounds (sharded) first
    .venv/bin/python -m bench lookup -d npy_big
"""

from __future__ import annotations

import time

import numpy as np

from bench import common
from data import lookup
from data.dataset import load_split
from data.lookup import nearest_rows

ONE_BY_ONE = 20  # queries timed one at a time through the exact scan


def distances(train, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The exact distance of each query to its row."""
    flat = queries.reshape(len(queries), -1)
    return np.array(
        [lookup.squared_distances(q[None], train.mels[[r]].reshape(1, -1))[0, 0] for q, r in zip(flat, rows)]
    )


def main() -> None:
    parser = common.parser(__doc__)
    common.add_dataset(parser, layout="sharded", n=1000)
    parser.add_argument("--shortlists", type=int, nargs="+", default=[1, 8, 64], help="RERANK values to measure")
    args = parser.parse_args()
    with common.dataset(args, "sharded") as data:
        train = load_split(data, "train")
        if train.lookup_index is None:
            raise SystemExit(f"{data} has no lookup index (generate it with --layout sharded)")
        held = [load_split(data, split) for split in ("valid", "test")]
        dims = train.lookup_index.arrays()["_components"].shape[0]
        print(common.machine_line(f"{data}: {len(train)} training sounds"))
        print(f"index: {dims} PCA components fitted on {min(len(train), lookup.FIT_SAMPLES)} training mels\n")
        print(
            "| synth | candidates | queries | method | recall@1 | a miss's distance / the exact nearest's | ms/query |"
        )
        print("|---|---|---|---|---|---|---|")
        lookup.EXACT_MAX = 0  # the index whatever the size
        totals: dict[str, list] = {}
        for synth in train.synths:
            queries = np.concatenate([np.asarray(s.mels[np.flatnonzero(s.synth == synth)]) for s in held])
            candidates = int((train.synth == synth).sum())
            start = time.perf_counter()
            exact = nearest_rows(train, queries, synth, index=False)[:, 0]
            exact_ms = 1000 * (time.perf_counter() - start) / len(queries)
            start = time.perf_counter()
            for q in queries[:ONE_BY_ONE]:
                nearest_rows(train, q[None], synth, index=False)
            one_ms = 1000 * (time.perf_counter() - start) / len(queries[:ONE_BY_ONE])
            row = f"| {synth} | {candidates} | {len(queries)} |"
            print(f"{row} exact scan, all queries in one pass | 1 | - | {exact_ms:.1f} |")
            print(f"{row} exact scan, one query at a time (as the search's starts) | 1 | - | {one_ms:.1f} |")
            exact_d = distances(train, queries, exact)
            for shortlist in args.shortlists:
                lookup.RERANK = shortlist
                start = time.perf_counter()
                found = np.concatenate([nearest_rows(train, q[None], synth)[:, 0] for q in queries])
                ms = 1000 * (time.perf_counter() - start) / len(queries)
                hit = found == exact
                ratio = np.sqrt(distances(train, queries[~hit], found[~hit]) / exact_d[~hit]) if (~hit).any() else []
                totals.setdefault(f"index, shortlist {shortlist}", []).append(hit)
                worse = f"{np.mean(ratio):.3f} (mean of {len(ratio)})" if len(ratio) else "-"
                print(f"{row} index, shortlist {shortlist} | {hit.mean():.3f} | {worse} | {ms:.1f} |", flush=True)
        for method, hits in totals.items():
            print(f"all synths, {method}: recall@1 {np.concatenate(hits).mean():.3f}")


if __name__ == "__main__":
    main()
