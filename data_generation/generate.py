"""Generates a dataset in the published npy_data layout: presets -> rendered notes -> mels + labels.

Resumable: stop it at any moment (Ctrl-C, kill -9) and run the same command again to continue.
A run holds its --out folder (the file .lock in it): a second run on the same folder fails at
once, naming the first one's pid and start time.

Examples:
    python data_generation/generate.py --synths va fm modal --n 1000 --out npy_data
    python data_generation/generate.py --synths amsynth --presets human,mutate --n 5000 --notes 60-71
    python data_generation/generate.py --synths amsynth calf_monosynth va \\
        --presets amsynth=human,mutate --presets random --n 2000
    python data_generation/generate.py --synths va fm modal --presets random --n 120 --seed 77 \\
        --split-all test --out npy_heldout      # a fresh held-out test folder
    python data_generation/generate.py --synths va fm modal --n 400000 --notes 36-84 --one-note \\
        --layout sharded --mel-dtype float16 --out npy_big   # larger than memory (docs/datasets.md)
    python data_generation/generate.py --synths va fm modal --n 100000 --out /shared/npy_big \\
        --ray 10.0.0.1:6379                     # shards as tasks of a Ray cluster (docs/scaling.md)
"""

from __future__ import annotations

import argparse

import asp
from asp import cluster
from asp.builder import SHARDED_ABOVE
from asp.cli import ArgumentParser, nonnegative_int, positive_int, run_cli
from asp.config import DATA_DIR
from asp.parallel import cap_workers
from data.dataset import SPLITS


def arguments() -> ArgumentParser:
    """The command line (``main`` runs it)."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synths", nargs="+", required=True, help="synth names or spec paths")
    parser.add_argument(
        "--presets",
        action="append",
        metavar="[SYNTH=]SOURCES",
        help="preset sources, comma-separated among human, mutate, random, holdout "
        "(default human,mutate,random: all human presets, the rest half mutations "
        "of them, half random; holdout: the human presets a spec holds out of training, for a "
        "test set); SYNTH=SOURCES sets one synth's",
    )
    parser.add_argument("--n", type=positive_int, required=True, help="presets per synth")
    parser.add_argument("--notes", default="60", help="MIDI notes per preset: 60, 60-71 (the paper's) or 48,60,72")
    parser.add_argument(
        "--one-note",
        action="store_true",
        help="render each preset at one note drawn from --notes (seeded) instead of at every note: "
        "pitch variety without multiplying the renders",
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--out", default=DATA_DIR, help=f"output folder (default {DATA_DIR})")
    parser.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--no-hpss", action="store_true", help="skip the HPSS label (hpss files hold 0)")
    parser.add_argument(
        "--split-all",
        choices=SPLITS,
        default=None,
        help="put every preset into this split, the others get 0 rows "
        "(e.g. test, with another --seed, for a fresh held-out folder); default: 80/10/10 by group",
    )
    parser.add_argument("--force", action="store_true", help="replace a dataset made with other arguments")
    parser.add_argument(
        "--max-shards",
        type=positive_int,
        default=None,
        help="render at most this many shards, then stop (run again to continue)",
    )
    parser.add_argument(
        "--layout",
        choices=("auto", "assembled", "sharded"),
        default="auto",
        help="assembled: one mel file per split (the published layout); sharded: the mels stay in the "
        "shard files, read in place, with a lookup index (datasets larger than memory); "
        f"auto (default): sharded above {SHARDED_ABOVE / 2**30:g} GiB of mels",
    )
    parser.add_argument(
        "--mel-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="how the mels are stored: float16 takes half the disk (read back as float32)",
    )
    cluster.add_ray_argument(parser)
    return parser


def main() -> int:
    args = arguments().parse_args()
    with cluster.session_from_args(args, shared=args.out):
        summary = asp.generate(
            args.synths,
            args.n,
            out=args.out,
            presets=args.presets,
            notes=args.notes,
            seed=args.seed,
            hpss=not args.no_hpss,
            split_all=args.split_all,
            one_note=args.one_note,
            layout=args.layout,
            mel_dtype=args.mel_dtype,
            workers=cap_workers(args.workers),
            force=args.force,
            max_shards=args.max_shards,
        )
    if summary.already:
        print(f"{args.out} already holds this dataset (same arguments); nothing to do")
    elif not summary.complete:
        print(f"stopped after {args.max_shards} shards; run the same command again to continue")
        for line in summary.lines()[-1:]:
            print(line)
        return 3
    else:
        print(f"dataset written to {args.out}")
    for line in summary.lines() if summary.complete else []:
        print(line)
    return 0


if __name__ == "__main__":
    run_cli(main)
