"""Runs experiment configs: trains what is missing (or reuses checkpoints trained with the same
settings), evaluates, and writes results/<config>/ with CSVs, a markdown table and plots.

    python experiments/run.py experiments/configs/paper_table.json --profile small
    python experiments/run.py experiments/configs/*.json --profile paper     # a GPU machine

A config is a JSON file; ``"include": "base.json"`` merges a base config under it. Each entry of
``rows`` is one row of the table: ``approach`` (multi, single, synth; ``synth`` rows are trained
once per synth of the dataset and reported as one row), ``label``, ``train_synths`` (train on
these synths only), ``eval_synths`` (evaluate these synths' sounds: out of domain when the model
never saw them), and any training setting: every field of ``asp.config.TrainConfig`` by its name
(``encoder``, ``latent_size``, ``param_loss``, ``lr``, ``beta``, ``kl_warmup_epochs``, ...), which
a config may also set for all its rows; what neither sets takes TrainConfig's default.
``test_dir`` (a setting) takes the
sounds of every row and baseline from that dataset's test split, held out from ``data_dir``,
whose training split the mean and nearest baselines still use. ``profiles`` holds what a profile
overrides (epochs, patience, max_samples, eval_max_samples, data_dir, test_dir). ``refine_renders``
and/or ``refine_seconds`` (settings) add a ``<label>+search`` row under every model row: the
model's presets refined by searching with the synth (``asp.search``) for that budget per sound.
``report_samples`` (a setting, default 12, 0 for none) is how many sounds results/<config>/report/
index.html plays, rendered again with every row's preset: the best, the median and the worst by the
first row's LSD, and others between.

Every config is checked before anything is trained or written (unknown keys, values of the wrong
kind, missing settings, include loops, rows naming synths the dataset lacks: one line naming the
key); a run that fails later removes the empty folders it created, and keeps finished results.
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
from pathlib import Path

from asp.cli import ArgumentParser, positive_int, run_cli
from asp.experiments import run_config
from asp.parallel import cap_workers


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", help="experiment config files")
    p.add_argument("--profile", default="small", help="small (CPU, make data) or paper (the paper's settings)")
    p.add_argument("--results", default="results", help="results folder (default results)")
    p.add_argument(
        "--workers", type=positive_int, default=None, help="render workers for evaluation (default all cores)"
    )
    args = p.parse_args()
    for path in args.configs:
        run_config(path, args.profile, results=Path(args.results), workers=cap_workers(args.workers))
    return 0


if __name__ == "__main__":
    run_cli(main)
