"""Train the per-synth baseline for Diva (the paper's; needs a dataset with Diva samples).

python train_diva.py [-d npy_data] [--model-dir saved_models] [-l 64] [--epochs 500] ...
"""

from asp.cli import run_cli
from asp.training import main

if __name__ == "__main__":
    run_cli(lambda: main(__doc__, approach="synth", synth="diva"))
