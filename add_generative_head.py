"""Add a generative parameter head per synth to a trained run, its encoder frozen.

python add_generative_head.py saved_models/pretrained            # an exported run: its index.npz
python add_generative_head.py saved_models/vae_multi_64_paper -d npy_data --epochs 40

The heads let run_inference.py draw several presets per synth and keep the one that sounds
closest (--candidates K; docs/inference.md, "Best of K").
"""

from asp import backend  # noqa: F401  (dawdreamer before tensorflow)

# isort: split
from asp.cli import ArgumentParser, positive_float, positive_int, run_cli
from asp.training.generative import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_LR, DTYPES, add_generative_head
from models import FLOW_UNITS, GENERATIVE_HEADS


def main() -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("run", help="a run folder (with config.json), e.g. saved_models/pretrained")
    p.add_argument("-d", "--data-dir", default="npy_data", help="its training data, for a run without index.npz")
    p.add_argument("--kind", default="flow", choices=sorted(GENERATIVE_HEADS), help="the head (default flow)")
    p.add_argument("--no-note", action="store_true", help="condition on z alone, not on z and the note")
    p.add_argument("--units", type=positive_int, default=FLOW_UNITS, help=f"width (default {FLOW_UNITS})")
    p.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS, help=f"(default {DEFAULT_EPOCHS})")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH, help=f"(default {DEFAULT_BATCH})")
    p.add_argument("--lr", type=positive_float, default=DEFAULT_LR, help=f"Adam learning rate (default {DEFAULT_LR:g})")
    p.add_argument("--seed", type=int, default=0, help="(default 0)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weights as saved (float16 to ship)")
    args = p.parse_args()
    record = add_generative_head(
        args.run,
        data_dir=args.data_dir,
        kind=args.kind,
        note_input=not args.no_note,
        units=args.units,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        dtype=args.dtype,
    )
    losses = ", ".join(f"{s} {v:.4f} ({record['samples'][s]} sounds)" for s, v in record["last_loss"].items())
    print(f"{args.run}: {args.kind} heads added in {record['seconds']:.0f} s; last loss {losses}")
    return 0


if __name__ == "__main__":
    run_cli(main)
