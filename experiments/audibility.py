"""Which parameters a sound reveals: for each sound of a split, every learned parameter of its
preset is swept over its sampling range (continuous: the range's low end, middle and high end;
categorical: every class in range) with the others at their true values, each variant is
rendered, and the largest log spectral distance from the true sound is kept.

A parameter whose sweep stays under ``--threshold`` (LSD) is inaudible in that preset: no method
can read it from the sound (a filter's resonance with the filter open, an LFO's rate at depth 0),
so its best guess is the mean of the presets it was drawn from. The error those guesses leave is
the **inaudible floor** of the parameter MSE: no model, however much data it trains on, is
expected to score below it. With ``-d`` it is written as a multiple of the training-mean preset's
error, the same ratio ``evaluate.py`` reports for a model (its parameter-MSE row over the mean
baseline's), so the two compare directly.

    python experiments/audibility.py npy_heldout --split test -d npy_data --max-samples 150 --out results/audibility

Writes ``<out>/sweeps.csv`` (one row per sound and parameter: its largest LSD) and
``<out>/summary.md`` (per synth: the inaudible share and the floor; per parameter: how often it
is audible). The floor is an estimate, not a proof, and errs both ways: a parameter that is audible in a preset can
still be hard to read (it trades off against another), which raises the true floor; the LSD
averages over the whole 5 s, so it barely registers a change confined to the onset (a short
attack or decay time), which a model reading the mel may still learn, so such parameters count as
inaudible more often than a listener would say (a lower ``--threshold`` counts fewer); and the
mean of the split's own presets stands in for the mean of the distribution they came from.
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
from pathlib import Path

from asp import cluster
from asp.cli import ArgumentParser, add_overwrite_flag, nonnegative_int, positive_float, positive_int, run_cli
from asp.evaluation.audibility import THRESHOLD, audibility
from asp.parallel import cap_workers


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
