"""Predicts presets with a trained model for a test sample or any sound, renders them with every
synth, and says which synth gets closest.

    python run_inference.py                                  # a random test sample, multi model
    python run_inference.py -md saved_models -dd npy_data -m multi -s 12 -l 64 -a
    python run_inference.py -m single --synth fm --hpss 80   # a random fm test sample, 80% harmonic
    python run_inference.py --input my_sound.wav             # any wav (any rate, mono or stereo)
    python run_inference.py --input sounds/ --out matches/   # every wav in a folder
    python run_inference.py --input my_sound.wav --refine 60 --refine-synths 3   # search longer, more synths
    python run_inference.py -s 12 --refine-renders 1000      # refine a test sample's match (reproducible)

A sound file's closest matches are refined by searching with the synth in the loop (asp/search/),
200 renders per synth by default (a few seconds; --no-refine for the network alone); a test
sample's only with --refine or --refine-renders. Each output folder has a report.html to open in a
browser (the target and every match, playable), and an --input folder's --out has an index.html
linking them. A sound's folder is named after its file (tone.wav -> tone/); files of one name
(tone.wav, tone.flac) get tone-wav/ and tone-flac/.
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
import sys
import time
from pathlib import Path

import asp
from asp.cli import ArgumentParser, nonnegative_int, parse_plugin_paths, positive_int, run_cli
from asp.config import DATA_DIR, MODEL_DIR
from asp.errors import ASPError
from asp.parallel import cap_workers
from asp.search import BEST_OF_K, INPUT_REFINE_RENDERS, INPUT_REFINE_SECONDS, NEAREST_STARTS, Budget
from data_generation.lv2 import install_lines


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-md", "--model-dir", default=MODEL_DIR, help=f"trained runs (default {MODEL_DIR})")
    p.add_argument("-dd", "--data-dir", default=DATA_DIR, help=f"dataset whose test split is used (default {DATA_DIR})")
    p.add_argument(
        "-m",
        "--model",
        default="multi",
        help="multi, single, or a synth with a trained baseline (serum, diva, tyrell, va, ...)",
    )
    p.add_argument("-s", "--sample", type=int, default=-1, help="test sample index (default -1: a random one)")
    p.add_argument(
        "-l",
        "--latent-size",
        type=positive_int,
        default=None,
        help="latent size of the model (default: its only one, or 64)",
    )
    p.add_argument("--encoder", default=None, help="encoder of the model (default: its only one, or the default)")
    p.add_argument("--synth", help="pick the random test sample among this synth's")
    p.add_argument("--hpss", type=int, choices=(20, 40, 60, 80, 100), help="... and this harmonic-percentage bin")
    p.add_argument("--seed", type=nonnegative_int, default=None, help="seed for the random test sample")
    p.add_argument("-a", "--all-outputs", action="store_true", help="predict a preset for every synth head")
    p.add_argument("--input", help="a sound file, or a folder of .wav files, to match instead of a test sample")
    p.add_argument("--note", type=int, default=None, help="MIDI note to render at (default: estimated with pyin)")
    p.add_argument(
        "--out", default=None, help="output folder (default inference_out/<name>/; --out . writes ./<name>/)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip compare.png")
    p.add_argument("--plugin", action="append", metavar="NAME=PATH", help="plugin path of a synth")
    p.add_argument(
        "--refine",
        type=float,
        metavar="SECONDS",
        help=f"search with the synth for this long per refined synth (default for --input: {INPUT_REFINE_RENDERS} "
        f"renders or {INPUT_REFINE_SECONDS:g} s, whichever ends first)",
    )
    p.add_argument(
        "--refine-renders",
        type=int,
        metavar="N",
        help="... or for this many renders (reproducible for a --seed); with --refine, whichever ends first",
    )
    p.add_argument("--no-refine", action="store_true", help="the network's presets only, no search")
    p.add_argument(
        "--refine-synths",
        nargs="+",
        metavar="N|SYNTH",
        help="how many of the closest one-shot synths to refine (default 2), or their names",
    )
    p.add_argument(
        "--refine-starts",
        type=nonnegative_int,
        default=NEAREST_STARTS,
        help=f"nearest training presets (of -dd) the search also starts from (default {NEAREST_STARTS})",
    )
    p.add_argument(
        "--start-from",
        action="append",
        metavar="[SYNTH=]FILE",
        help="a preset file the search also starts from, every preset in it (a DX7 .syx needs no SYNTH=); repeatable",
    )
    p.add_argument(
        "--best-of",
        type=nonnegative_int,
        default=None,
        metavar="K",
        help=f"presets drawn per synth from the model's generative heads, rendered with the network's and the "
        f"nearest, the closest kept and searched from (default {BEST_OF_K} for a model with the heads; 0: off)",
    )
    p.add_argument("--workers", type=positive_int, default=None, help="search render processes (default: all cores)")
    return p


def main() -> int:
    start = time.perf_counter()
    args = parser().parse_args()
    if args.note is not None and not 0 <= args.note <= 127:
        raise ASPError(f"--note must be a MIDI note 0-127, got {args.note}")
    if args.sample < -1:
        raise ASPError(f"--sample must be a test sample index >= 0, or -1 for a random one; got {args.sample}")
    refine, refine_synths = refine_settings(args)
    found = asp.match(
        args.input if args.input else args.sample,
        model=args.model,
        model_dir=args.model_dir,
        latent_size=args.latent_size,
        encoder=args.encoder,
        data_dir=args.data_dir,
        out=args.out,
        note=args.note,
        all_outputs=args.all_outputs,
        synth=args.synth,
        hpss=args.hpss,
        seed=args.seed,
        refine=refine,
        refine_synths=refine_synths,
        refine_starts=args.refine_starts,
        best_of=args.best_of,
        workers=cap_workers(args.workers) if refine or args.best_of != 0 else 1,
        plot=not args.no_plot,
        plugin_paths=parse_plugin_paths(args.plugin),
        on_load=lambda matcher, run_dir: (print_loaded(matcher, run_dir), matcher.add_starts(args.start_from or [])),
        on_match=print_match,
    )
    if found.index is not None:
        print(f"index of the reports: {found.index}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    if found.failed:
        print(f"error: {len(found.failed)} of {found.sounds} files could not be matched (see above)", file=sys.stderr)
        return 2
    return 0


def print_loaded(matcher, run_dir) -> None:
    shipped = (
        f", the shipped pretrained model ({matcher.config['train_samples']:,} training sounds; "
        "a run of your own in saved_models takes its place)"
        if "export" in matcher.config
        else ""
    )
    print(
        f"model {run_dir} ({matcher.config['approach']}, latent {matcher.config['latent_size']}{shipped}) loaded in "
        f"{matcher.load_seconds:.1f} s"
    )


def print_match(target, result: dict) -> None:
    """One sound's lines: its note (and true synth), each synth's distances, closest first."""
    head = f"{target.name}: note {target.note}"
    if target.synth:
        label = f", hpss {target.info['hpss']}" if target.info["hpss"] else ""  # 0: made with --no-hpss
        head += f", true synth {target.synth} (preset {target.info['preset']}{label})"
    print(f"{head}; model step {1000 * result['model_seconds']:.0f} ms -> {result['out']}")
    for rank, row in enumerate(result["results"], 1):
        if "error" in row:
            print(f"     {row['synth']:<16} not rendered: {row['error']}")
        else:
            print(f"  {rank}. {row['synth']:<16} LSD {row['lsd']:8.2f}   MRSD {row['mrsd']:8.2f}")
        if "best_lsd" in row:
            c = row["candidates"]
            print(
                f"     {'best of ' + str(c['count']):<16} LSD {row['best_lsd']:8.2f}   MRSD {row['best_mrsd']:8.2f}   "
                f"(search distance {c['distance']['min']:.3f}, median {c['distance']['median']:.3f}, from "
                f"{c['winner']}, {c['seconds']:.1f} s)"
            )
        if "refined_lsd" in row:
            print(
                f"     {'refined':<16} LSD {row['refined_lsd']:8.2f}   MRSD {row['refined_mrsd']:8.2f}   "
                f"(search distance {row['search_distance_start']:.3f} -> {row['search_distance']:.3f} from "
                f"{row['search_start']}, {row['search_renders']} renders, {row['search_seconds']:.1f} s)"
            )
    best = next((r for r in result["results"] if "lsd" in r), None)
    if best and len(result["results"]) > 1:
        print(f"  closest: {best['synth']}")
    print(f"  report: {result['out'] / 'report.html'}")
    for cartridge in sorted(Path(result["out"]).glob("*.cartridge.syx")):  # DX7 voices, for Dexed or a DX7
        print(f"  DX7 cartridge: {cartridge} (load it in Dexed or send it to a DX7; each voice alone: *.syx)")
    for line in install_lines(result["out"]):  # the LV2 presets, and how to use them in a DAW
        print(f"  {line}")


def refine_settings(args) -> tuple:
    """The search budget (None: no search) and which synths to refine (a count or names)."""
    if args.workers is not None and args.workers < 1:
        raise ASPError(f"--workers must be at least 1, got {args.workers}")
    if args.refine_starts < 0:
        raise ASPError(f"--refine-starts must be 0 or more, got {args.refine_starts}")
    asked = args.refine is not None or args.refine_renders is not None
    if args.no_refine and asked:
        raise ASPError("--no-refine cannot go with --refine or --refine-renders; drop one")
    budget = None
    if asked:
        budget = Budget(renders=args.refine_renders, seconds=args.refine)
    elif args.input and not args.no_refine:
        budget = Budget(renders=INPUT_REFINE_RENDERS, seconds=INPUT_REFINE_SECONDS)
    synths: int | list[str] = 2
    if args.refine_synths:
        if len(args.refine_synths) == 1 and args.refine_synths[0].lstrip("-").isdigit():
            synths = int(args.refine_synths[0])
            if synths < 1:
                raise ASPError(f"--refine-synths must be at least 1 or synth names, got {synths}")
        else:
            synths = list(args.refine_synths)
    return budget, synths


if __name__ == "__main__":
    run_cli(main)
