"""Evaluates a trained model on a split: predicts every sample's preset, renders it with its synth
(parallel workers, one engine each), computes every metric, writes one CSV row per sample and
method, and summaries (per synth, per HPSS bin, per parameter group) as markdown, each cell a mean
with its 95% confidence interval.

Baselines in the same table: ``mean`` (the synth's training-mean preset: the mean of its encoded
training vectors, so each categorical parameter takes its most frequent class: a model that
collapsed to one output does no better), ``random`` (a random preset from the synth's sample
ranges) and ``nearest`` (the training sample of the same synth with the closest mel, its preset
re-rendered: how users pick presets today, so a model must beat it). ``mean`` and ``nearest``
always use the training split of ``-d/--data-dir``; ``--test-dir`` takes the sounds from a
separately generated dataset (held out from the training data).

    python experiments/evaluate.py saved_models/vae_multi_64_paper -d npy_data --out results/multi
    python experiments/evaluate.py saved_models/vae_multi_64_paper -d npy_data --test-dir npy_heldout --out results/h

Besides the tables, ``<out>/report/index.html`` shows them with plots and every sample's LSD per
method, and plays the target and each method's render of ``--report-samples`` samples (the best,
the median and the worst by the model's LSD), rendered again from the presets kept in
``presets.npz``.
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse

from asp import cluster
from asp.cli import ArgumentParser, add_overwrite_flag, nonnegative_int, positive_int, run_cli
from asp.config import DATA_DIR
from asp.errors import ASPError
from asp.evaluation.run import run_evaluation
from asp.evaluation.summary import BASELINES
from asp.parallel import cap_workers
from asp.report import REPORT_SAMPLES
from asp.search import NEAREST_STARTS, Budget


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="a trained run folder (omit with --baselines-only)")
    p.add_argument("-d", "--data-dir", default=DATA_DIR)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument(
        "--test-dir",
        help="take the sounds from this dataset's --split (held out); mean and nearest still use -d's training split",
    )
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated: mean, random, nearest, or none")
    p.add_argument("--synths", nargs="+", help="evaluate these synths' sounds (out of domain if the model lacks one)")
    p.add_argument("--max-samples", type=positive_int, default=None)
    p.add_argument("--workers", type=positive_int, default=None)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument(
        "--refine",
        type=float,
        metavar="SECONDS",
        help="add <model>+search rows: search with the synth for this long per sound (see asp/search/)",
    )
    p.add_argument(
        "--refine-renders",
        type=int,
        metavar="N",
        help="... or for this many renders per sound (reproducible); with --refine, whichever ends first",
    )
    p.add_argument(
        "--refine-starts",
        type=nonnegative_int,
        default=NEAREST_STARTS,
        help=f"nearest training presets the search also starts from (default {NEAREST_STARTS})",
    )
    p.add_argument(
        "--report-samples",
        type=nonnegative_int,
        default=REPORT_SAMPLES,
        metavar="N",
        help=f"render N samples again for report/index.html: the best, median and worst by the model's LSD and "
        f"others between (default {REPORT_SAMPLES}; 0: the report without audio)",
    )
    cluster.add_ray_argument(p)
    add_overwrite_flag(p)
    return p


def main() -> int:
    args = parser().parse_args()
    refine = None
    if args.refine is not None or args.refine_renders is not None:
        refine = Budget(renders=args.refine_renders, seconds=args.refine)
    if args.refine_starts < 0:
        raise ASPError(f"--refine-starts must be 0 or more, got {args.refine_starts}")
    baselines = tuple(b for b in args.baselines.split(",") if b and b != "none")
    if any(b not in BASELINES for b in baselines):
        raise ASPError(f"--baselines takes {', '.join(BASELINES)} (comma-separated) or none")
    if args.run_dir is None and not baselines:
        raise ASPError("give a run folder, or baselines to evaluate")
    with cluster.session_from_args(args):  # each sound a task on a Ray cluster (--ray)
        run_evaluation(
            args.run_dir,
            args.data_dir,
            args.out,
            split=args.split,
            test_dir=args.test_dir,
            baselines=baselines,
            synths=args.synths,
            max_samples=args.max_samples,
            workers=cap_workers(args.workers),
            seed=args.seed,
            refine=refine,
            refine_starts=args.refine_starts,
            report_samples=args.report_samples,
            overwrite=args.overwrite,
        )
    return 0


if __name__ == "__main__":
    run_cli(main)
