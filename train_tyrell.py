"""Train the per-synth baseline for TyrellN6 (the paper's; needs a dataset with TyrellN6 samples).

python train_tyrell.py [-d npy_data] [--model-dir saved_models] [-l 64] [--epochs 500] ...
"""

from asp.cli import run_cli
from asp.training import main

if __name__ == "__main__":
    run_cli(lambda: main(__doc__, approach="synth", synth="tyrell"))
