"""Dataset generation: presets -> rendered notes -> mels, HPSS labels and encodings in npy_data.

The whole run is planned up front from the arguments and the seed (which presets, which notes,
which split), then cut into shards of consecutive samples of one synth. Workers render their
shards and write each one atomically (a temp file, then a rename) with a digest of its content,
so a run killed at any moment (even ``kill -9``) and started again with the same arguments skips
the shards already done, regenerates torn or corrupt ones, and ends with the same arrays as an
uninterrupted run. The final layout files are written under temp names and renamed, and the
manifest comes last: a folder with a manifest is complete. A run holds its folder
(``asp.locks.folder_lock``): a second one on the same folder fails at once, naming the first.

Every render is deterministic (see ``data_generation.render``), so the arrays do not depend on
the number of workers.

Splits are made by group, not by preset, so that no test preset is a near-copy of a training one:
a human preset and all its mutations form one group, each random preset is its own, and the
presets of amsynth bank files are grouped by bank file (when a synth has at least
``MIN_BANK_GROUPS`` of them), so held-out human presets come from banks never seen in training.
"""

from asp.builder.assemble import Summary, assemble
from asp.builder.plan import (
    SHARD_SIZE,
    SHARDED_ABOVE,
    WORK_DIR,
    Plan,
    Settings,
    Shard,
    make_plan,
    parse_notes,
    parse_sources,
)
from asp.builder.run import generate
from asp.builder.shards import read_shard, render_shard
from asp.builder.tile import repeat_dataset

__all__ = [
    "SHARDED_ABOVE",
    "SHARD_SIZE",
    "WORK_DIR",
    "Plan",
    "Settings",
    "Shard",
    "Summary",
    "assemble",
    "generate",
    "make_plan",
    "parse_notes",
    "parse_sources",
    "read_shard",
    "render_shard",
    "repeat_dataset",
]
