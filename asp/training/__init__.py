"""The one training function behind train_multi.py, train_single.py, train_synth.py and the
paper's per-synth scripts (train_serum.py, train_diva.py, train_tyrell.py).

Data stream from the memory-mapped npy_data files through ``tf.data`` in batches (never the
whole dataset in memory). Each run lives in ``<model-dir>/<asp.runs.run_name>/`` (e.g.
``vae_multi_64_resnet``, ``vae_single_16_paper``, ``vae_fm_64_resnet``) and holds:
    model.weights.h5   the best weights (lowest validation reconstruction loss: spectrogram +
                       parameters; the total loss rises with the KL weight during warm-up)
    config.json        the resolved config: approach, latent size, synth specs, data fingerprint,
                       seed, epochs done; inference rebuilds the model from it alone
    backup/            epoch_<n>.weights.h5, the weights and optimizer state after the last two
                       epochs: a killed run restarted with the same command continues from the
                       last one that loads (the one before, if the last is damaged)
    log.csv, tensorboard/
    .lock              held while a run trains: a second run on the folder fails at once, naming it

Every file is written to a temp file and renamed (``asp.files.atomic_path``), so a run killed at
any moment leaves whole files. An epoch whose loss or weights are NaN or infinite stops the run
with an ``ASPError``; nothing of that epoch is saved, so the last good checkpoint stays. A run
resumes only with the settings it was trained with (``asp.config.changed_settings``: not a different ``--lr``);
``--epochs`` and ``--patience`` may change, which is how a run goes on.
"""

from asp.checkpoints import read_config
from asp.config import PAPER_LOSS, PAPER_MODEL, TrainConfig
from asp.training.checkpoints import backup_path, restore
from asp.training.cli import main, parser
from asp.training.fit import train
from asp.training.monitor import collapse_warning, latent_report, mean_vectors
from asp.training.planning import Plan, plan
from asp.training.stream import make_stream
from data.dataset import data_fingerprint

__all__ = [
    "PAPER_LOSS",
    "PAPER_MODEL",
    "Plan",
    "TrainConfig",
    "backup_path",
    "collapse_warning",
    "data_fingerprint",
    "latent_report",
    "main",
    "make_stream",
    "mean_vectors",
    "parser",
    "plan",
    "read_config",
    "restore",
    "train",
]
