"""A larger copy of a sharded dataset, made by repeating it: what the memory benchmark
(``bench/stream_memory.py``) and the streaming tests train on, without rendering more sounds."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import write_json
from data.dataset import MANIFEST, SPLITS, dataset_layout, read_manifest
from data.mels import SHARD_FOLDER, shard_file

_SHARD = re.compile(r"^shard_(\d+)\.npz$")


def repeat_dataset(src: str | Path, dst: str | Path, times: int) -> None:
    """Writes into ``dst`` (a new folder) the sharded dataset ``src`` with every split repeated
    ``times`` times: its shard files copied ``times`` times under new numbers (distinct files, as
    in a dataset ``times`` larger, not links), the per-sample arrays repeated to point at them, the
    counts multiplied and the fingerprint marked ``x<times>``.

    Raises:
        ASPError: ``src`` is not a sharded dataset, or ``dst`` exists.
    """
    src, dst = Path(src), Path(dst)
    manifest = read_manifest(src)
    if manifest is None or dataset_layout(manifest)[0] != "sharded":
        raise ASPError(f"{src} is not a sharded dataset (generate.py --layout sharded)")
    if dst.exists():
        raise ASPError(f"{dst} exists; choose a new folder")
    numbers = sorted(int(m.group(1)) for p in (src / SHARD_FOLDER).iterdir() if (m := _SHARD.match(p.name)))
    step = numbers[-1] + 1 if numbers else 0
    (dst / SHARD_FOLDER).mkdir(parents=True)
    for k in range(times):
        for number in numbers:
            shutil.copyfile(src / SHARD_FOLDER / shard_file(number), dst / SHARD_FOLDER / shard_file(k * step + number))
    for path in sorted(p for split in SPLITS for p in src.glob(f"{split}_*.npy")):
        array = np.load(path, allow_pickle=False)
        if path.name.startswith("train_lookup_"):  # the basis, not per sample
            parts = [array]
        elif path.name.endswith("_mel_shard.npy"):
            parts = [array + k * step for k in range(times)]
        else:
            parts = [array] * times
        np.save(dst / path.name, np.concatenate(parts), allow_pickle=False)
    manifest = json.loads(json.dumps(manifest))
    manifest["fingerprint"] += f"x{times}"
    for key in ("counts", "kept", "dropped"):
        manifest[key] = {name: count * times for name, count in manifest[key].items()}
    if isinstance(manifest.get("shard_tasks"), list):  # each copy is the shard it was copied from
        tasks = manifest["shard_tasks"]
        manifest["shard_tasks"] = [tasks[n] if n < len(tasks) else "" for _ in range(times) for n in range(step)]
    write_json(dst / MANIFEST, manifest)
