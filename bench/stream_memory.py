"""Benchmark of training's memory as a sharded dataset grows: one short training (one epoch of the
multi model) on a sharded dataset repeated 1x, 2x and 4x (``asp.builder.repeat_dataset``: its
shard files copied, so the mels on disk grow 4x), each in a fresh process, prints a table of the
mels' size on disk, the peak RSS (VmHWM) and its growth after the first batch. The peak must stay
flat: the mels are read in place from the shards, one batch at a time. Run by hand; prints
figures, asserts nothing.

    .venv/bin/python -m bench stream_memory                   # generates a small sharded dataset first
    .venv/bin/python -m bench stream_memory -d npy_big --times 1 2 4

Each training runs in a fresh process, ``python -m asp.training.memory FOLDER`` (which
tests/test_stream.py also runs, under its memory cap).
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import tempfile
from pathlib import Path

from asp.builder import repeat_dataset
from asp.training.memory import WARM_BATCHES, measure_in_child
from bench import common


def mel_bytes(data_dir: Path) -> int:
    """The bytes of a sharded dataset's shard files (the mels, nearly all of it)."""
    return sum(p.stat().st_size for p in (data_dir / "shards").glob("shard_*.npz"))


def main() -> None:
    parser = common.parser(__doc__)
    common.add_dataset(parser, layout="sharded", n=200)
    parser.add_argument("--times", type=int, nargs="+", default=[1, 2, 4], help="repeats of the dataset")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with common.dataset(args, "sharded") as base, tempfile.TemporaryDirectory() as tmp:
        print(common.machine_line(f"base dataset {base}"))
        print(
            f"| dataset | train sounds | mels on disk | peak RSS (VmHWM) | RSS after {WARM_BATCHES} batches "
            "| growth over the rest of the epoch | seconds |"
        )
        print("|---|---|---|---|---|---|---|")
        for times in args.times:
            folder = base if times == 1 else Path(tmp) / f"x{times}"
            if times != 1:
                repeat_dataset(base, folder, times)
            r = measure_in_child(folder, epochs=args.epochs, latent=args.latent, batch_size=args.batch_size)
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
