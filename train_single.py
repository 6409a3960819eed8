"""Train the joint-encoder joint-decoder model (one zero-padded head for all synths).

python train_single.py [-d npy_data] [--model-dir saved_models] [-l 64] [--epochs 500] ...
"""

from asp.cli import run_cli
from asp.training import main

if __name__ == "__main__":
    run_cli(lambda: main(__doc__, approach="single"))
