"""The train scripts' shared command line: a flag per setting of ``asp.config.TrainConfig``."""

from __future__ import annotations

import argparse

from asp.cli import ArgumentParser
from asp.config import PAPER_LOSS, PAPER_MODEL, add_arguments, from_arguments
from asp.training.fit import train
from models import ENCODERS, GENERATIVE_HEADS, SPEC_DECODERS


def parser(description: str, *, approach: str, synth: str | None = None) -> argparse.ArgumentParser:
    """The shared command line of the train scripts: a flag per setting of ``asp.config.TrainConfig``."""
    p = ArgumentParser(description=description)
    skip = ["synth"] if approach != "synth" or synth is not None else []
    if approach == "synth":
        skip.append("synths")
    choices = {"encoder": sorted(ENCODERS), "spec_decoder": sorted(SPEC_DECODERS)}
    add_arguments(p, choices={**choices, "generative_head": sorted(GENERATIVE_HEADS)}, skip=skip)
    p.add_argument(
        "--paper-loss",
        action="store_true",
        help="the paper's loss settings: --beta 1 --free-bits 0 --kl-warmup-epochs 100 --param-weight 1 "
        "(they collapse the latent)",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="every setting as the paper has it: --paper-loss plus --encoder paper --param-loss mse --lr 1e-4",
    )
    return p


def main(description: str, *, approach: str, synth: str | None = None) -> int:
    args = parser(description, approach=approach, synth=synth).parse_args()
    fixed = {"approach": approach}
    if synth is not None:
        fixed["synth"] = synth
    if args.paper_loss or args.paper:
        fixed.update(PAPER_LOSS)
    if args.paper:
        fixed.update(PAPER_MODEL)
    train(from_arguments(args, **fixed))
    return 0
