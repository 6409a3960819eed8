"""Benchmark of training on several workers (MultiWorkerMirroredStrategy over the loopback)
against one process with the same global batch: seconds per step and the validation loss after
the same epochs, per seed. Each run is a fresh process (the workers and the single run alike).
Run by hand; prints figures, asserts nothing.

    .venv/bin/python -m bench distributed -d npy_data --epochs 6 --batch-size 4 --seeds 0,1,2

On one machine the workers share its cores: this measures the cost of the collectives and the
split, not a speed-up (that needs a device per worker).
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asp.config import DATA_DIR
from bench import common

ROOT = Path(__file__).resolve().parent.parent


def child(args: argparse.Namespace) -> None:
    """One process of a run: trains, then prints the seconds of each epoch after the first as JSON."""
    import keras

    from asp.training import TrainConfig, train

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times: list[float] = []
    cfg = TrainConfig(
        data_dir=args.data_dir,
        model_dir=args.model_dir,
        latent_size=8,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        distribute=args.distribute,
        verbose=0,
    )
    config = train(cfg, callbacks=[Timer()])
    print(json.dumps({"epoch_seconds": times, "steps_per_epoch": config["steps_per_epoch"]}))


def run(args: argparse.Namespace, model_dir: Path, seed: int, workers: int) -> dict:
    """A run of ``workers`` processes (1: no strategy) with the global batch workers x batch size."""
    base = [sys.executable, "-m", "bench.distributed", "--child", "-d", args.data_dir, "--model-dir", str(model_dir)]
    base += ["--epochs", str(args.epochs), "--lr", str(args.lr), "--seed", str(seed)]
    if workers == 1:
        cmds = [[*base, "--batch-size", str(args.batch_size * args.workers), "--distribute", "none"]]
        envs = [dict(os.environ)]
    else:
        socks = [socket.socket() for _ in range(workers)]
        for s in socks:
            s.bind(("localhost", 0))
        hosts = [f"localhost:{s.getsockname()[1]}" for s in socks]
        for s in socks:
            s.close()
        cmds = [[*base, "--batch-size", str(args.batch_size), "--distribute", "multi-worker"]] * workers
        tasks = [{"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}} for i in range(workers)]
        envs = [{**os.environ, "TF_CONFIG": json.dumps(task)} for task in tasks]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.PIPE, text=True)
        for cmd, env in zip(cmds, envs, strict=True)
    ]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    if any(p.returncode for p in procs):
        raise SystemExit(f"a run failed: {[p.returncode for p in procs]}")
    chief = json.loads(outs[0].strip().splitlines()[-1])
    later = chief["epoch_seconds"][1:] or chief["epoch_seconds"]
    config = json.loads(next(model_dir.glob("*/config.json")).read_text())
    return {
        "s_per_step": sum(later) / len(later) / chief["steps_per_epoch"],
        "wall_s": wall,
        "val_recon_loss": config["last_losses"]["val_recon_loss"],
        "samples_per_epoch": config["samples_per_epoch"],
        "global_batch_size": config["global_batch_size"],
    }


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("-d", "--data-dir", default=DATA_DIR, help=f"a dataset (default {DATA_DIR})")
    p.add_argument("--model-dir")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=4, help="per replica (the single run takes workers x this)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--distribute", default="none")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the start")
    for seed in (int(s) for s in args.seeds.split(",")):
        for workers in (1, args.workers):
            with tempfile.TemporaryDirectory() as tmp:
                r = run(args, Path(tmp), seed, workers)
            print(
                f"seed {seed}, {workers} worker{'s' * (workers > 1)}: {r['s_per_step']:.3f} s/step (global batch "
                f"{r['global_batch_size']}), {r['samples_per_epoch']} samples/epoch, validation recon loss "
                f"{r['val_recon_loss']:.4f} after {args.epochs} epochs, {r['wall_s']:.0f} s wall",
                flush=True,
            )


if __name__ == "__main__":
    main()
