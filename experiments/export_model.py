"""Exports a trained run for shipping: the weights inference needs, and the search's start index.

    python experiments/export_model.py saved_models/vae_multi_64_paper -d npy_data --out saved_models/pretrained

Writes to ``--out`` (a new folder, written whole or not at all):
    config.json          the run's config, plus ``export``: the data fingerprint, the dtype, the
                         command and git revision that made it
    inference.weights.npz the encoder's and the parameter heads' variables in build order
                         (``encoder/<i>``, ``head_<synth>/<i>``), float16 or float32; no optimizer
                         state and no spectrogram decoder (inference uses neither)
    index.npz            per synth of the training split: ``params_<synth>`` (n, encoded size) and
                         ``z_<synth>`` (n, latent) the network's z_mean of each training sound, and
                         ``note_<synth>`` (n,): the search's nearest starts without the dataset
                         (compressed; --index-dtype uint8 stores 8-bit codes, asp.training.export)
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
import sys
from pathlib import Path

from asp.checkpoints import read_config
from asp.cli import ArgumentParser, run_cli
from asp.config import DATA_DIR
from asp.training.export import DTYPES, INDEX_DTYPES, export


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a trained run folder")
    p.add_argument("-d", "--data-dir", default=DATA_DIR, help="the dataset it was trained on (for the index)")
    p.add_argument("--out", required=True, help="a new folder")
    p.add_argument("--dtype", default="float16", choices=DTYPES, help="the weights' (default float16)")
    p.add_argument(
        "--index-dtype",
        choices=INDEX_DTYPES,
        help="the start index's (default: --dtype; uint8: 8-bit codes, a quarter of float32's bytes)",
    )
    p.add_argument("--command", default="", help="the command that made the run, recorded in config.json")
    args = p.parse_args()
    read_config(Path(args.run_dir))
    out = export(
        args.run_dir,
        args.data_dir,
        args.out,
        dtype=args.dtype,
        index_dtype=args.index_dtype,
        command=args.command or " ".join(sys.argv),
    )
    print(f"exported {args.run_dir} to {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
