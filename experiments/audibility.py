"""Which parameters a sound reveals (the inaudible floor): the command of ``asp.evaluation.audibility``,
whose docstring is its --help."""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
from pathlib import Path

import asp.evaluation.audibility
from asp import cluster
from asp.cli import ArgumentParser, add_overwrite_flag, nonnegative_int, positive_float, positive_int, run_cli
from asp.evaluation.audibility import THRESHOLD, audibility
from asp.parallel import cap_workers


def main() -> int:
    p = ArgumentParser(
        description=asp.evaluation.audibility.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data_dir", help="the dataset whose --split holds the sounds (e.g. npy_heldout)")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument(
        "-d", "--train-dir", help="a training dataset: give the floor as a multiple of its mean preset's error"
    )
    p.add_argument("--synths", nargs="+", help="only these synths' sounds")
    p.add_argument("--max-samples", type=positive_int, default=None)
    p.add_argument(
        "--threshold",
        type=positive_float,
        default=THRESHOLD,
        help=f"LSD under which a parameter is inaudible (default {THRESHOLD})",
    )
    p.add_argument("--workers", type=positive_int, default=None)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    cluster.add_ray_argument(p)
    add_overwrite_flag(p)
    args = p.parse_args()
    with cluster.session_from_args(args):  # each sound a task on a Ray cluster (--ray)
        audibility(
            args.data_dir,
            args.out,
            split=args.split,
            train_dir=args.train_dir,
            synths=args.synths,
            max_samples=args.max_samples,
            threshold=args.threshold,
            workers=cap_workers(args.workers),
            seed=args.seed,
            overwrite=args.overwrite,
        )
    print((Path(args.out) / "summary.md").read_text().split("\n## ")[0])
    print(f"per sound and parameter: {Path(args.out) / 'sweeps.csv'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
