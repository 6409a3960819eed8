"""Runs experiment configs: trains what is missing (or reuses checkpoints trained with the same
settings), evaluates, and writes results/<config>/ with CSVs, a markdown table and plots.

    python experiments/run.py experiments/configs/paper_table.json --profile small
    python experiments/run.py experiments/configs/*.json --profile paper     # a GPU machine

A config is a JSON file; ``"include": "base.json"`` merges a base config under it. Each entry of
``rows`` is one row of the table: ``approach`` (multi, single, synth; ``synth`` rows are trained
once per synth of the dataset and reported as one row), ``label``, ``train_synths`` (train on
these synths only), ``eval_synths`` (evaluate these synths' sounds: out of domain when the model
never saw them), and any training setting: every field of ``asp.config.TrainConfig`` by its name
(``encoder``, ``latent_size``, ``param_loss``, ``lr``, ``beta``, ``kl_warmup_epochs``, ...), which
a config may also set for all its rows; what neither sets takes TrainConfig's default.
``test_dir`` (a setting) takes the
sounds of every row and baseline from that dataset's test split, held out from ``data_dir``,
whose training split the mean and nearest baselines still use. ``profiles`` holds what a profile
overrides (epochs, patience, max_samples, eval_max_samples, data_dir, test_dir). ``refine_renders``
and/or ``refine_seconds`` (settings) add a ``<label>+search`` row under every model row: the
model's presets refined by searching with the synth (``asp.search``) for that budget per sound.
``report_samples`` (a setting, default 12, 0 for none) is how many sounds results/<config>/report/
index.html plays, rendered again with every row's preset: the best, the median and the worst by the
first row's LSD, and others between.

A real-sound config (``real_sounds``: a folder of sound files, ``make real-sounds``; ``model``: a run
folder or name; ``data_dir``: its training data; no ``rows``) measures a trained model on sounds no
synth of ours made (``asp.evaluation.real``): per sound, the best synth's one-shot and searched
match (``refine_renders``/``refine_seconds``; default run_inference.py's 20 s per synth), lookup
over the whole training set and the mean presets; ``eval_max_samples`` takes a seeded subset of the
sounds. ``experiments/configs/real_sounds.json`` is the shipped model's.

Every config is checked before anything is trained or written (unknown keys, values of the wrong
kind, missing settings, include loops, rows naming synths the dataset lacks: one line naming the
key); a run that fails later removes the empty folders it created, and keeps finished results.
"""

from asp.experiments.config import REAL_REQUIRED, REQUIRED, ROW_KEYS, SETTINGS, load_config, resolve
from asp.experiments.runner import check_rows, model_dir_for, run_config, train_runs
from asp.experiments.table import relative_table, write_table

__all__ = [
    "REAL_REQUIRED",
    "REQUIRED",
    "ROW_KEYS",
    "SETTINGS",
    "check_rows",
    "load_config",
    "model_dir_for",
    "relative_table",
    "resolve",
    "run_config",
    "train_runs",
    "write_table",
]
