"""Benchmark of float16 mel storage (``generate.py --mel-dtype float16``) against float32: the
rounding error of the mels, and a short training on each (same seed), next to the spread between
two float32 trainings of other seeds (what "no measurable cost" is measured against). Run by hand;
prints figures, asserts nothing.

    .venv/bin/python -m bench mel_dtype                  # generates 3 x 200 sounds first
    .venv/bin/python -m bench mel_dtype -d npy_data --epochs 3
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from bench import common
from data.dataset import MANIFEST, SPLITS, load_split, read_manifest


def float16_copy(src: Path, dst: Path) -> None:
    """``src`` (assembled, float32 mels) with its mels stored as float16, as ``--mel-dtype float16``
    writes them (the same rounding); the other files linked."""
    dst.mkdir()
    for path in src.glob("*.npy"):
        if path.name.endswith("_mels.npy"):
            np.save(dst / path.name, np.load(path, mmap_mode="r").astype(np.float16), allow_pickle=False)
        else:
            os.symlink(path.resolve(), dst / path.name)
    manifest = read_manifest(src)
    manifest.update(mel_dtype="float16", fingerprint=manifest["fingerprint"] + "f16")
    (dst / MANIFEST).write_text(json.dumps(manifest))


def losses(data_dir: Path, model_dir: Path, epochs: int, seed: int) -> dict:
    from asp.training import TrainConfig, train

    cfg = TrainConfig(
        approach="multi", data_dir=str(data_dir), model_dir=str(model_dir), epochs=epochs, seed=seed, verbose=0
    )
    config = train(cfg)
    return {"best val_recon_loss": config["best_loss"], **config["last_losses"]}


def main() -> None:
    parser = common.parser(__doc__)
    common.add_dataset(parser, layout="assembled", n=200)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with common.dataset(args, "assembled") as data, tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / "f16"
        float16_copy(data, half)
        print(common.machine_line(f"dataset {data}"))
        worst, total, count = 0.0, 0.0, 0
        for split in SPLITS:
            exact, rounded = load_split(data, split).mels, load_split(half, split).mels
            for start in range(0, len(exact), 256):
                diff = np.abs(rounded[start : start + 256] - np.asarray(exact[start : start + 256]))
                worst, total, count = max(worst, float(diff.max())), total + float(diff.sum()), count + diff.size
        disk = [sum(p.stat().st_size for p in d.glob("*_mels.npy")) for d in (data, half)]
        print(f"mels on disk: float32 {disk[0] / 2**20:.0f} MiB, float16 {disk[1] / 2**20:.0f} MiB")
        print(f"float16 rounding of the mels (values in [0, 1]): max abs error {worst:.2e}, mean {total / count:.2e}\n")
        runs = {
            "float32, seed 0": losses(data, Path(tmp) / "m1", args.epochs, 0),
            "float16, seed 0": losses(half, Path(tmp) / "m2", args.epochs, 0),
            "float32, seed 1": losses(data, Path(tmp) / "m3", args.epochs, 1),
        }
        keys = ["best val_recon_loss", "val_param_loss"]
        keys = [k for k in keys if all(k in r for r in runs.values())]
        print(
            f"multi model, {args.epochs} epochs, latent 64, batch 32 ({len(load_split(data, 'train'))} training sounds)"
        )
        print("| run | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for name, r in runs.items():
            print(f"| {name} | " + " | ".join(f"{r[k]:.5f}" for k in keys) + " |")
        a, b, c = runs.values()
        for k in keys:
            change, spread = 100 * (b[k] / a[k] - 1), 100 * (c[k] / a[k] - 1)
            print(f"{k}: float16 vs float32 {change:+.2f}%, seed 1 vs seed 0 {spread:+.2f}%")


if __name__ == "__main__":
    main()
