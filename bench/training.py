"""Benchmark of training on CPU: samples/s per encoder and approach, and peak memory when training on a
dataset and on one 4x larger (streaming from memory-mapped files: the peak must grow < 25%).
Run by hand; prints figures, asserts nothing.

    .venv/bin/python -m bench training -d npy_data
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import json
import os
import tempfile
import time
from pathlib import Path

from asp.config import DATA_DIR
from asp.training.memory import measure_in_child
from bench import common


def speed(data_dir: str, approach: str, synth: str | None, samples: int, encoder: str) -> float:
    """Samples/s of the second epoch (the first includes tracing)."""
    import keras

    from asp.training import TrainConfig, train

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last = time.perf_counter() - self.start

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            approach=approach,
            synth=synth,
            data_dir=data_dir,
            model_dir=tmp,
            epochs=2,
            max_samples=samples,
            encoder=encoder,
            verbose=0,
        )
        train(cfg, callbacks=[timer])
    return samples / timer.last


def tiled(data_dir: Path, out: Path, times: int) -> None:
    """A copy of a dataset with its train split repeated ``times`` times (valid/test linked)."""
    import numpy as np

    out.mkdir(parents=True)
    for path in data_dir.glob("*.npy"):
        if path.name.startswith("train_"):
            src = np.load(path, mmap_mode="r")
            dst = np.lib.format.open_memmap(
                out / path.name, mode="w+", dtype=src.dtype, shape=(src.shape[0] * times, *src.shape[1:])
            )
            for k in range(times):
                dst[k * src.shape[0] : (k + 1) * src.shape[0]] = src
            dst.flush()
            del dst
        else:
            os.symlink(path.resolve(), out / path.name)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    manifest["fingerprint"] += f"x{times}"
    (out / "manifest.json").write_text(json.dumps(manifest))


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("-d", "--data-dir", default=DATA_DIR, help=f"an assembled dataset (default {DATA_DIR})")
    parser.add_argument("--samples", type=int, default=512, help="samples per speed measurement")
    parser.add_argument("--encoders", nargs="+", default=["paper", "resnet"], help="encoders to time")
    args = parser.parse_args()
    from data.dataset import dataset_synths

    synth = dataset_synths(args.data_dir)[0]
    print(f"cores: {os.cpu_count()}; data {args.data_dir}")
    for encoder in args.encoders:
        for approach, name in (("multi", None), ("single", None), ("synth", synth)):
            rate = speed(args.data_dir, approach, name, args.samples, encoder)
            what = approach + (" (" + name + ")" if name else "")
            print(f"{encoder:<8} {what:<14} {rate:6.1f} samples/s (batch 32, latent 64)")
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "x4"
        tiled(Path(args.data_dir), big, 4)
        peaks = []
        for folder in (args.data_dir, str(big)):  # one epoch of the multi model, latent 16, in a fresh process
            peaks.append(measure_in_child(folder)["hwm_mib"])
        import numpy as np

        n = len(np.load(Path(args.data_dir) / "train_synth.npy"))
        print(
            f"peak RSS, 1 epoch of multi: {peaks[0]:.0f} MiB on {n} samples, {peaks[1]:.0f} MiB on {4 * n} "
            f"samples: {100 * (peaks[1] / peaks[0] - 1):+.1f}% (target < +25%)"
        )


if __name__ == "__main__":
    main()
