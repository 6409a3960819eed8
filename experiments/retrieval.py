"""Audio-to-preset retrieval (the DX7 benchmark's, docs/paper.md): a trained model's prediction of
each test sound of a synth ranks a gallery of presets (the sounds' own, then fresh random ones up to
``--gallery``); prints and writes recall@1/5/10 against chance.

    python experiments/retrieval.py saved_models/vae_multi_64_paper --test-dir npy_heldout_dx7 \\
        --out results/retrieval.json
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse

from asp.cli import ArgumentParser, nonnegative_int, positive_int, run_cli
from asp.evaluation.retrieval import GALLERY, run_retrieval


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a trained run folder with a head for --synth")
    p.add_argument("--test-dir", required=True, help="the dataset whose --split holds the query sounds")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--synth", default="dx7", help="the synth whose sounds and presets are retrieved (default dx7)")
    p.add_argument("--gallery", type=positive_int, default=GALLERY, help=f"presets ranked (default {GALLERY})")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the gallery's random presets")
    p.add_argument("--out", required=True, help="the result, a .json file (an earlier result is replaced)")
    args = p.parse_args()
    result = run_retrieval(
        args.run_dir, args.test_dir, args.out, synth=args.synth, split=args.split, size=args.gallery, seed=args.seed
    )
    print(
        f"{result['queries']} {args.synth} sounds ({result['distinct_query_presets']} presets), "
        f"gallery of {args.gallery}:"
    )
    rows = [("all", result["recall_at"])] + [(k, v["recall_at"]) for k, v in result["by_source"].items()]
    for label, recall in rows:
        print(f"  {label:<7} " + "  ".join(f"recall@{k} {100 * v:5.1f}%" for k, v in recall.items()))
    print("  chance  " + "  ".join(f"recall@{k} {100 * v:5.1f}%" for k, v in result["chance"].items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
