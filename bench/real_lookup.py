"""Benchmark of the real-sound evaluation's lookup (``asp.evaluation.real.nearest_any``): the
nearest training sound of any synth for a batch of query mels, streamed over a dataset's whole
training split. Prints the time, the rate and this process's peak resident memory; asserts nothing.

    .venv/bin/python -m bench real_lookup -d npy_pretrained                # 76 queries, as the real-sound set
    .venv/bin/python -m bench real_lookup -d /data/d63k --queries 12 --chunk 1024
"""

from __future__ import annotations

import resource
import time

import numpy as np

from asp.evaluation.real import LOOKUP_CHUNK, nearest_any
from bench import common
from data.dataset import load_split


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("-d", "--data-dir", required=True, help="a dataset folder (its training split is searched)")
    p.add_argument("--queries", type=int, default=76, help="query mels (default 76: the real-sound set)")
    p.add_argument("--chunk", type=int, default=LOOKUP_CHUNK, help=f"mels per block (default {LOOKUP_CHUNK})")
    args = p.parse_args()
    train = load_split(args.data_dir, "train")
    queries = np.random.default_rng(0).uniform(0, 1, (args.queries, *train.mels.shape[1:])).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    nearest_any(train, queries, chunk=args.chunk)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gb = len(train) * train.mels[0].nbytes / 1e9
    print(
        f"{len(train):,} training mels ({gb:.1f} GB), {args.queries} queries, blocks of {args.chunk}: "
        f"{seconds:.1f} s ({len(train) / seconds:,.0f} mels/s); peak memory {peak:.2f} GB "
        f"({before:.2f} GB before the lookup)"
    )


if __name__ == "__main__":
    main()
