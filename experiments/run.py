"""Runs experiment configs: the command of ``asp.experiments``, whose docstring (the config format) is its --help."""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
from pathlib import Path

import asp.experiments
from asp.cli import ArgumentParser, positive_int, run_cli
from asp.experiments import run_config
from asp.parallel import cap_workers


def main() -> int:
    p = ArgumentParser(description=asp.experiments.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
