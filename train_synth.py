"""Train the separate-encoder separate-decoder baseline for one synth of the dataset.

python train_synth.py [-d npy_data] [--model-dir saved_models] --synth NAME [-l 64] [--epochs 500] ...
"""

from asp.cli import run_cli
from asp.training import main

if __name__ == "__main__":
    run_cli(lambda: main(__doc__, approach="synth"))
