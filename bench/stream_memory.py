"""Benchmark of training's memory as a sharded dataset grows: one short training (one epoch of the
multi model) on a sharded dataset repeated 1x, 2x and 4x (``asp.builder.repeat_dataset``: its
shard files copied, so the mels on disk grow 4x), each in a fresh process, prints a table of the
mels' size on disk, the peak RSS (VmHWM) and its growth after the first batch. The peak must stay
flat: the mels are read in place from the shards, one batch at a time. Run by hand; prints
figures, asserts nothing.

    .venv/bin/python bench/stream_memory.py                   # generates a small sharded dataset first
    .venv/bin/python bench/stream_memory.py -d npy_big --times 1 2 4

``--child FOLDER`` trains once on FOLDER and prints its figures as JSON (what the table runs, and
what tests/test_stream.py runs under its memory cap).
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARM_BATCHES = 5  # training batches after which TensorFlow's own memory has settled (measured: +100 MB)


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def child(data_dir: str, epochs: int, latent: int, batch_size: int) -> None:
    """Trains the multi model on ``data_dir`` and prints JSON: train samples, seconds, the RSS after
    the first training batch (``first_mib``: the model built and its step traced) and after
    ``WARM_BATCHES`` (``warm_mib``: TensorFlow's buffers and threads settled), the largest RSS at a
    training batch's end after those (``streamed_mib``: what streaming the rest of the data adds to
    ``warm_mib``), the largest at any batch's or epoch's end (``peak_mib``) and VmHWM (``hwm_mib``:
    the process's peak, setup included)."""
    import keras

    from asp.training import TrainConfig, train

    class Rss(keras.callbacks.Callback):
        first = warm = None
        peak = streamed = 0.0
        batches = 0

        series: list = []

        def on_train_batch_end(self, batch, logs=None):
            rss = status_mib("VmRSS")
            self.series.append(round(rss))
            self.batches += 1
            self.first = rss if self.first is None else self.first
            self.peak = max(self.peak, rss)
            if self.batches == WARM_BATCHES:
                self.warm = rss
            elif self.batches > WARM_BATCHES:
                self.streamed = max(self.streamed, rss)

        def on_epoch_end(self, epoch, logs=None):
            self.peak = max(self.peak, status_mib("VmRSS"))

    rss = Rss()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            approach="multi",
            data_dir=data_dir,
            model_dir=tmp,
            epochs=epochs,
            latent_size=latent,
            batch_size=batch_size,
            verbose=0,
        )
        config = train(cfg, callbacks=[rss])
    print(
        json.dumps(
            {
                "train": config["train_samples"],
                "valid": config["valid_samples"],
                "seconds": time.perf_counter() - start,
                "first_mib": rss.first,
                "warm_mib": rss.warm,
                "streamed_mib": rss.streamed,
                "peak_mib": rss.peak,
                "series_mib": rss.series,  # after each training batch
                "hwm_mib": status_mib("VmHWM"),  # VmHWM, not ru_maxrss: Linux carries that over exec
            }
        )
    )


def run_child(data_dir: str | Path, *, epochs: int = 1, latent: int = 16, batch_size: int = 32) -> dict:
    """``child`` in a fresh process; its JSON."""
    args = ["--epochs", str(epochs), "--latent", str(latent), "--batch-size", str(batch_size)]
    res = subprocess.run(
        [sys.executable, __file__, "--child", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        cwd=ROOT,
    )
    if res.returncode:
        raise RuntimeError(f"training on {data_dir} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def mel_bytes(data_dir: Path) -> int:
    """The bytes of a sharded dataset's shard files (the mels, nearly all of it)."""
    return sum(p.stat().st_size for p in (data_dir / "shards").glob("shard_*.npz"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--data-dir", help="a sharded dataset (default: generate one of --n presets per synth)")
    parser.add_argument("--n", type=int, default=200, help="presets per built-in synth of the generated dataset")
    parser.add_argument("--times", type=int, nargs="+", default=[1, 2, 4], help="repeats of the dataset")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs, args.latent, args.batch_size)
        return
    import asp
    from asp.builder import repeat_dataset

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.data_dir or Path(tmp) / "base")
        if not args.data_dir:
            asp.generate(["va", "fm", "modal"], args.n, out=base, presets=["random"], hpss=False, layout="sharded")
        print(f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; base dataset {base}")
        print(
            f"| dataset | train sounds | mels on disk | peak RSS (VmHWM) | RSS after {WARM_BATCHES} batches "
            "| growth over the rest of the epoch | seconds |"
        )
        print("|---|---|---|---|---|---|---|")
        for times in args.times:
            folder = base if times == 1 else Path(tmp) / f"x{times}"
            if times != 1:
                repeat_dataset(base, folder, times)
            r = run_child(folder, epochs=args.epochs, latent=args.latent, batch_size=args.batch_size)
            print(
                f"| {times}x | {r['train']} | {mel_bytes(folder) / 2**20:.0f} MiB | {r['hwm_mib']:.0f} MiB | "
                f"{r['warm_mib']:.0f} MiB | {r['streamed_mib'] - r['warm_mib']:+.0f} MiB | {r['seconds']:.0f} |",
                flush=True,
            )
            if times != 1:
                import shutil

                shutil.rmtree(folder)


if __name__ == "__main__":
    main()
