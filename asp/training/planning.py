"""What a run trains on and how its folder starts: the checked settings and parts, the synths
and samples (``Plan``), the run's config.json, and taking over (or starting over) its folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from asp.checkpoints import CONFIG, WEIGHTS, read_config
from asp.config import TrainConfig, changed_settings
from asp.errors import ASPError
from asp.files import write_json
from asp.training.checkpoints import BACKUP
from asp.training.stream import dataset_specs
from data.dataset import (
    Split,
    check_finite,
    check_not_blank,
    data_fingerprint,
    has_split,
    load_split,
    mel_file,
    training_rows,
)
from data_generation.spec import SynthSpec
from models import ENCODERS, GENERATIVE_HEADS, MODEL_VERSION, SPEC_DECODERS


def _check_every_synth_has_samples(cfg: TrainConfig, available: dict[str, int], picked: np.ndarray) -> None:
    """Refuses a run that would train a synth's head (or a per-synth model) on no samples.

    Args:
        available: {synth: samples of it in the train split} for the synths of the run.
        picked: (n,) the synth of each training sample the run takes (after ``--max-samples``).
    """
    empty = [s for s, n in available.items() if n == 0]
    if empty:
        counts = ", ".join(f"{s} {n}" for s, n in available.items())
        fix = (
            "generate a dataset with samples of it"
            if cfg.approach == "synth"
            else "leave it out with --synths, or generate a dataset with samples of it"
        )
        raise ASPError(
            f"the train split of {cfg.data_dir} has no samples of {', '.join(empty)} (train samples: {counts}): "
            f"a model cannot learn a synth it never hears; {fix}"
        )
    short = [s for s in available if not (picked == s).any()]
    if short:
        raise ASPError(
            f"--max-samples {cfg.max_samples} leaves no training samples of {', '.join(short)}; raise it "
            f"(the train split has {sum(available.values())})"
        )


@dataclass
class Plan:
    """What a run trains on: its synths and the rows of each split it takes."""

    specs: list[SynthSpec]
    train_split: Split
    train_idx: np.ndarray
    valid_split: Split | None
    valid_idx: np.ndarray

    @property
    def synths(self) -> list[str]:
        return [s.name for s in self.specs]


def check_parts(cfg: TrainConfig) -> None:
    """Refuses settings of the wrong kind and parts that are not registered (one line each)."""
    cfg.check()
    for name, table in (("encoder", ENCODERS), ("spec_decoder", SPEC_DECODERS)):
        if getattr(cfg, name) not in table:
            flag = "--" + name.replace("_", "-")
            raise ASPError(
                f"{flag} {getattr(cfg, name)!r} is not a registered part; use one of {', '.join(sorted(table))}"
            )
    if cfg.generative_head is not None and cfg.generative_head not in GENERATIVE_HEADS:
        raise ASPError(
            f"--generative-head {cfg.generative_head!r} is not a registered head; "
            f"use one of {', '.join(sorted(GENERATIVE_HEADS))}"
        )


def plan(cfg: TrainConfig) -> Plan:
    """The synths and samples of a run, checked: every synth has training samples, nothing is NaN.

    Raises:
        ASPError: a missing or inconsistent dataset, a synth it lacks.
    """
    train_split = load_split(cfg.data_dir, "train")
    specs = dataset_specs(cfg.data_dir, train_split)
    names = [s.name for s in specs]
    if cfg.approach == "synth":
        if cfg.synth not in names:
            raise ASPError(
                f"{cfg.data_dir} has synths {', '.join(names)} but no {cfg.synth} samples; train a "
                "per-synth baseline for one of them with `python train_synth.py --synth NAME`"
            )
        specs = [s for s in specs if s.name == cfg.synth]
    elif cfg.synths:
        unknown = [s for s in cfg.synths if s not in names]
        if unknown:
            raise ASPError(f"{cfg.data_dir} has synths {', '.join(names)}, not {', '.join(unknown)} (--synths)")
        specs = [s for s in specs if s.name in cfg.synths]
    wanted = [s.name for s in specs]
    valid_split = load_split(cfg.data_dir, "valid") if has_split(cfg.data_dir, "valid") else None
    if valid_split is not None:
        dataset_specs(cfg.data_dir, valid_split)

    available = {s: int((train_split.synth == s).sum()) for s in wanted}
    train_idx = training_rows(train_split, wanted, cfg.max_samples, cfg.seed)
    valid_idx = (
        training_rows(valid_split, wanted, cfg.max_samples, cfg.seed) if valid_split is not None else np.zeros(0, int)
    )
    _check_every_synth_has_samples(cfg, available, train_split.synth[train_idx])
    check_finite(train_split, train_idx, data_dir=cfg.data_dir)  # NaN in, NaN weights out
    check_not_blank(train_split, train_idx, data_dir=cfg.data_dir)  # silence in, nothing learnt
    check_each_synth_varies(train_split, train_idx, data_dir=cfg.data_dir)  # one synth's data broken
    if len(valid_idx):
        check_finite(valid_split, valid_idx, data_dir=cfg.data_dir)
        check_not_blank(valid_split, valid_idx, data_dir=cfg.data_dir)
        check_each_synth_varies(valid_split, valid_idx, data_dir=cfg.data_dir)
    return Plan(specs, train_split, train_idx, valid_split, valid_idx)


def check_each_synth_varies(split: Split, rows: np.ndarray, *, data_dir: str | Path = "", chunk: int = 64) -> None:
    """Refuses a split in which one synth's spectrograms (of ``rows``) all hold one value (all zeros,
    or one constant): its renders were silent or its part of the data is damaged, and the model
    would learn nothing of that synth while the others train (``check_not_blank`` sees only a split
    that is blank as a whole). Reads each synth's rows in chunks until they vary: one chunk each
    for a sound dataset.

    Raises:
        ASPError: naming the synth, the split and its file.
    """
    rows = np.sort(np.asarray(rows))
    synths = split.synth[rows]
    for synth in dict.fromkeys(synths.tolist()):
        mine = rows[synths == synth]
        low, high = np.inf, -np.inf
        for start in range(0, len(mine), chunk):
            mels = np.asarray(split.mels[mine[start : start + chunk]])
            if not np.isfinite(mels).all():  # NaN or infinity: check_finite's to name
                break
            low, high = min(low, float(mels.min())), max(high, float(mels.max()))
            if low < high:
                break
        else:
            what = "all zeros" if high == 0 else f"the one value {high:g}"
            raise ASPError(
                f"every spectrogram of synth {synth!r} in the {split.name} split ({Path(data_dir) / mel_file(split)}) "
                f"is {what}: its sounds are silent or its part of the file is damaged; regenerate the dataset, "
                f"or leave {synth} out with --synths"
            )


def run_config(cfg: TrainConfig, p: Plan) -> dict:
    """The run's config.json: its settings (``TrainConfig.record``), the synth specs, the data's
    fingerprint and what derives from them; progress fields start empty."""
    steps = int(np.ceil(len(p.train_idx) / cfg.batch_size))
    return {
        **cfg.record(),
        "target_synth": cfg.synth if cfg.approach == "synth" else None,
        "trained_synths": p.synths,
        "synths": [s.to_json(with_path=False) for s in p.specs],
        "encodings": [{"name": s.name, "encoded_size": s.encoded_size, "hash": s.hash} for s in p.specs],
        "data_fingerprint": data_fingerprint(cfg.data_dir),
        "train_samples": int(len(p.train_idx)),
        "valid_samples": int(len(p.valid_idx)),
        "kl_warmup_steps": cfg.kl_warmup_epochs * steps,
        "steps_per_epoch": steps,
        "epochs_done": 0,
        "best_loss": None,
        "best_epoch": None,
        "model_version": MODEL_VERSION,
        "keras_version": keras.__version__,
    }


def open_run(run_dir: Path, cfg: TrainConfig, config: dict) -> dict:
    """Takes over the run folder's progress (same settings) or starts it over (``--fresh``), and
    writes config.json; returns the config to train with. Call with the folder's lock held.

    Raises:
        ASPError: the folder holds a run trained with other settings (and no ``--fresh``).
    """
    if (run_dir / CONFIG).is_file() and not cfg.fresh:
        old = read_config(run_dir)
        changed = changed_settings(old, config)
        if changed:
            raise ASPError(
                f"{run_dir} holds a model trained with other settings (its config.json has "
                f"{'; '.join(changed)}); pass --fresh to start it over with these, or choose another --model-dir"
            )
        for key in ("epochs_done", "best_loss", "best_epoch", "last_losses"):  # progress so far
            if key in old:
                config[key] = old[key]
    elif cfg.fresh and run_dir.exists():
        for child in (BACKUP, WEIGHTS, CONFIG, "log.csv"):
            path = run_dir / child
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    write_json(run_dir / CONFIG, config)
    return config
