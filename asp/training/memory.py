"""A training run's memory, measured: one short training of the multi model with the process's
resident memory (``/proc/self/status``) taken after every batch, so that streaming a dataset
larger than memory can be shown to hold memory flat (``bench/stream_memory.py`` prints the table,
``tests/test_stream.py`` holds training to a cap). Linux only.

    python -m asp.training.memory DATA_DIR [--epochs 1 --latent 16 --batch-size 32]   # prints JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WARM_BATCHES = 5  # training batches after which TensorFlow's own memory has settled (measured: +100 MB)


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def measure(data_dir: str | Path, epochs: int = 1, latent: int = 16, batch_size: int = 32) -> dict:
    """Trains the multi model on ``data_dir`` in this process and returns its figures: train
    samples, seconds, the RSS after the first training batch (``first_mib``: the model built and
    its step traced) and after ``WARM_BATCHES`` (``warm_mib``: TensorFlow's buffers and threads
    settled), the largest RSS at a training batch's end after those (``streamed_mib``: what
    streaming the rest of the data adds to ``warm_mib``), the largest at any batch's or epoch's end
    (``peak_mib``) and VmHWM (``hwm_mib``: the process's peak, setup included)."""
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
    return {
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


def measure_in_child(data_dir: str | Path, *, epochs: int = 1, latent: int = 16, batch_size: int = 32) -> dict:
    """``measure`` in a fresh process (``python -m asp.training.memory``): its figures."""
    args = ["--epochs", str(epochs), "--latent", str(latent), "--batch-size", str(batch_size)]
    res = subprocess.run(
        [sys.executable, "-m", "asp.training.memory", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    if res.returncode:
        raise RuntimeError(f"training on {data_dir} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(measure(args.data_dir, args.epochs, args.latent, args.batch_size)))


if __name__ == "__main__":
    main()
