"""The settings of one training run, written once: ``TrainConfig``.

Every field says how it is set and checked; the rest derives from it:
    the train scripts' command line    ``add_arguments`` (flag, type, default, help)
    a run's config.json                ``TrainConfig.record`` (every setting, by field name)
    resuming a run                     ``changed_settings`` (the fields that change what a run learns)
    the run's folder name              ``run_name`` (approach or synth, latent size, encoder)
    the experiment runner              ``EXPERIMENT_KEYS`` (every setting a config or row may set) and
                                       ``identity`` (the key of the checkpoints it shares)

Imports nothing heavy (no TensorFlow, no DawDreamer): the runner checks configs with it before
it imports the trainer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from asp.cli import nonnegative_float, nonnegative_int, positive_float, positive_int
from asp.errors import ASPError

DATA_DIR = "npy_data"  # the default dataset folder (the npy_data layout: data/dataset.py)
MODEL_DIR = "saved_models"  # the default folder of trained runs (and of the shipped model)
APPROACHES = ("multi", "single", "synth")
PARAM_LOSSES = ("mse", "mixed")
DISTRIBUTE = ("none", "mirrored", "multi-worker")  # asp/training/distributed.py
DEFAULT_ENCODER = "paper"  # measured best at the demo's scale (docs/training.md); "resnet" is the other
# The loss defaults, chosen on held-out sounds (docs/training.md, "The loss"); the paper's are PAPER_LOSS.
PAPER_LOSS = {"beta": 1.0, "free_bits": 0.0, "kl_warmup_epochs": 100, "param_weight": 1.0}
PARAM_WEIGHT = 1.0  # the parameter loss against the spectrogram loss, the paper's (docs/training.md: 10 measured)
PAPER_MODEL = {
    "encoder": "paper",
    "param_loss": "mse",
    "lr": 1e-4,
}  # with PAPER_LOSS: every setting as the paper has it


# value checks, shared with the experiment runner


def integer(low: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def number(low: float, *, open_: bool = False) -> Callable[[object], bool]:
    def check(v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        finite = isinstance(v, int) or math.isfinite(v)  # (an int may be too large for a float)
        return finite and (v > low if open_ else v >= low)

    return check


def text(v) -> bool:
    return isinstance(v, str) and bool(v)


def texts(v) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(text(x) for x in v)


def or_null(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or check(v)


def setting(
    default,
    *,
    flag: str | None,
    check: Callable[[object], bool],
    what: str,
    help: str = "",  # noqa: A002  (argparse's word)
    learns: bool = True,
    short: str | None = None,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], object] | None = None,
):
    """A field of ``TrainConfig``.

    Args:
        flag: its command-line flag (None: set by the script, e.g. the approach).
        check / what: whether a value is valid, and what a valid one is, in words (for errors).
        learns: whether it changes what a run learns (a run resumes only with the same value).
        short: a short flag too (``-l``).
        choices: the valid names, when they are a fixed list.
        parse: the argparse type of its flag (``asp.cli``'s: one wording for every script).
    """
    meta = {"flag": flag, "check": check, "what": what, "help": help, "learns": learns, "short": short}
    meta["choices"], meta["parse"] = choices, parse
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything a training run needs; the scripts differ only in the approach (and synth)."""

    approach: str = setting("multi", flag=None, check=lambda v: v in APPROACHES, what="multi, single or synth")
    synth: str | None = setting(
        None, flag="--synth", check=or_null(text), what="a synth name", help="the synth of a per-synth baseline"
    )
    synths: tuple[str, ...] | None = setting(
        None,
        flag="--synths",
        check=or_null(texts),
        what="a non-empty list of synth names",
        help="train multi/single on these synths of the dataset only",
    )
    data_dir: str = setting(
        DATA_DIR,
        flag="--data-dir",
        short="-d",
        check=text,
        what="a folder path",
        help=f"npy_data folder (default {DATA_DIR})",
        learns=False,  # (its fingerprint does: see record)
    )
    model_dir: str = setting(
        MODEL_DIR,
        flag="--model-dir",
        check=text,
        what="a folder path",
        help=f"where runs are saved (default {MODEL_DIR})",
        learns=False,
    )
    latent_size: int = setting(
        64,
        flag="--latent-size",
        short="-l",
        check=integer(1),
        parse=positive_int,
        what="an integer >= 1",
        help="latent size (default 64)",
    )
    encoder: str = setting(
        DEFAULT_ENCODER,
        flag="--encoder",
        check=text,
        what="an encoder name",
        help=f"the encoder (default {DEFAULT_ENCODER}: the paper's two 8-filter convolutions; resnet: residual CNN)",
    )
    spec_decoder: str = setting(
        "paper",
        flag="--spec-decoder",
        check=text,
        what="a spectrogram decoder name",
        help="the spectrogram decoder: paper (default) or none",
    )
    param_loss: str = setting(
        "mse",
        flag="--param-loss",
        check=lambda v: v in PARAM_LOSSES,
        what="mse or mixed",
        choices=PARAM_LOSSES,
        help="mse (default, the paper's) or mixed (MSE for continuous, cross-entropy per categorical parameter)",
    )
    param_weight: float = setting(
        PARAM_WEIGHT,
        flag="--param-weight",
        check=number(0, open_=True),
        parse=positive_float,
        what="a finite number > 0",
        help=f"weight of the parameter loss against the spectrogram loss (default {PARAM_WEIGHT:g}; the paper's 1)",
    )
    note_input: bool = setting(
        False,
        flag="--note-input",
        check=lambda v: isinstance(v, bool),
        what="true or false",
        help="give the parameter heads each sound's MIDI note beside z (for data at many notes; "
        "inference then takes the sound's note, as every match already knows it)",
    )
    generative_head: str | None = setting(
        None,
        flag="--generative-head",
        check=or_null(text),
        what="a generative head name or null",
        learns=False,  # trained after the run, on its frozen encoder: what the run learns is the same
        help="after training, add a generative head per synth on the frozen encoder (flow: conditional flow "
        "matching), which run_inference.py draws best-of-K candidates from (default none)",
    )
    epochs: int = setting(
        500,
        flag="--epochs",
        check=integer(1),
        parse=positive_int,
        what="an integer >= 1",
        help="epochs (default 500, the paper's)",
        learns=False,
    )
    batch_size: int = setting(
        32, flag="--batch-size", check=integer(1), parse=positive_int, what="an integer >= 1", help="(default 32)"
    )
    lr: float = setting(
        1e-4,
        flag="--lr",
        check=number(0, open_=True),
        parse=positive_float,
        what="a finite number > 0",
        help="Adam learning rate (default 1e-4, the paper's)",
    )
    seed: int = setting(
        0, flag="--seed", check=integer(0), parse=nonnegative_int, what="an integer >= 0", help="(default 0)"
    )
    max_samples: int | None = setting(
        None,
        flag="--max-samples",
        check=or_null(integer(1)),
        parse=positive_int,
        what="an integer >= 1 or null",
        help="use at most this many samples (quick runs)",
    )
    patience: int | None = setting(
        None,
        flag="--patience",
        check=or_null(integer(1)),
        parse=positive_int,
        what="an integer >= 1 or null",
        help="stop after this many epochs without improvement",
        learns=False,
    )
    beta: float = setting(
        0.0,
        flag="--beta",
        check=number(0),
        parse=nonnegative_float,
        what="a finite number >= 0",
        help="final KL weight (default 0; the paper's is 1, which collapses the latent)",
    )
    free_bits: float = setting(
        0.0,
        flag="--free-bits",
        check=number(0),
        parse=nonnegative_float,
        what="a finite number >= 0",
        help="nats per latent dimension free of the KL penalty (default 0)",
    )
    kl_warmup_epochs: int = setting(
        0,
        flag="--kl-warmup-epochs",
        check=integer(0),
        parse=nonnegative_int,
        what="an integer >= 0",
        help="epochs of linear KL warm-up to --beta (default 0)",
    )
    distribute: str = setting(
        "none",
        flag="--distribute",
        check=lambda v: v in DISTRIBUTE,
        what="none, mirrored or multi-worker",
        choices=DISTRIBUTE,
        help="train on many devices: mirrored (this machine's GPUs, or --devices) or multi-worker (the "
        "processes or machines of the TF_CONFIG environment variable); --batch-size is then per replica "
        "(default none: one device)",
        learns=False,  # (the number of replicas does: see DERIVED; config.json records it with the global batch)
    )
    devices: str | None = setting(
        None,
        flag="--devices",
        check=or_null(text),
        what="comma-separated device names or null",
        help="the devices of --distribute mirrored, e.g. GPU:0,GPU:1 (default every GPU; CPU:0,CPU:1 splits the CPU)",
        learns=False,
    )
    fresh: bool = setting(
        False,
        flag="--fresh",
        check=lambda v: isinstance(v, bool),
        what="true or false",
        help="discard an existing run in the same folder",
        learns=False,
    )
    verbose: int = setting(1, flag=None, check=integer(0), what="an integer >= 0", learns=False)

    def check(self) -> TrainConfig:
        """Refuses a value of the wrong kind, naming the flag; returns itself."""
        check_settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if self.approach == "synth" and not self.synth:
            raise ASPError("the per-synth approach needs --synth NAME")
        return self

    def record(self) -> dict:
        """The settings as config.json stores them, by field name (the operational ones left out;
        ``synths`` is recorded as ``trained_synths``, the synths the run ended up with, since a
        config's ``synths`` holds their specs)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in (*OPERATIONAL, "synths")
        }


OPERATIONAL = ("model_dir", "fresh", "verbose", "distribute", "devices")  # how a run is carried out, not what it is
# settings added after runs were keyed (asp.runs.identity), with the value that leaves a run's key as it was
KEYED_WITHOUT = {"generative_head": None}
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# each setting's one default: TrainConfig's, which the model (models.SynthVAE) takes too
DEFAULTS = {name: f.default for name, f in FIELDS.items()}


def check_settings(**values) -> None:
    """Refuses a setting's value of the wrong kind, naming its flag: TrainConfig's check, which a
    model built without a TrainConfig (models.SynthVAE) runs too."""
    for name, value in values.items():
        f = FIELDS[name]
        if not f.metadata["check"](value):
            raise ASPError(f"{_name(f)} must be {f.metadata['what']}, got {value!r}")


def _name(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or f.name


def add_arguments(p: argparse.ArgumentParser, *, choices: dict[str, list[str]] | None = None, skip=()) -> None:
    """Adds a flag for every setting that has one (except ``skip``).

    Args:
        choices: the valid names of settings whose values come from a registry
            (``{"encoder": sorted(models.ENCODERS)}``).
    """
    choices = choices or {}
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if meta["flag"] is None or f.name in skip:
            continue
        flags = [meta["short"], meta["flag"]] if meta["short"] else [meta["flag"]]
        if f.type == "bool":
            p.add_argument(*flags, action="store_true", help=meta["help"])
            continue
        kwargs: dict = {"default": f.default, "help": meta["help"]}
        listed = choices.get(f.name) or meta["choices"]
        if listed:
            kwargs["choices"] = listed
        if f.name == "synths":
            kwargs["nargs"] = "+"
        else:
            kwargs["type"] = _parser_type(f)
        p.add_argument(*flags, **kwargs)


def _parser_type(f: dataclasses.Field) -> Callable[[str], object]:
    """The field's argparse type, or one that converts a flag's text and applies its check."""
    if f.metadata["parse"] is not None:
        return f.metadata["parse"]
    kind = float if "float" in f.type else int if "int" in f.type else str
    check, what = f.metadata["check"], f.metadata["what"]

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def from_arguments(args: argparse.Namespace, **fixed) -> TrainConfig:
    """A TrainConfig from parsed arguments (plus fixed values: the script's approach and synth)."""
    values = {k: v for k, v in vars(args).items() if k in FIELDS}
    values.update(fixed)
    if values.get("synths"):
        values["synths"] = tuple(values["synths"])
    return TrainConfig(**values).check()


def from_settings(values: dict, where: str) -> TrainConfig:
    """A TrainConfig from an experiment config's settings (JSON names = field names).

    Raises:
        ASPError: naming ``where`` and the key, for an unknown key or a value of the wrong kind.
    """
    for key, value in values.items():
        if key not in FIELDS:
            raise ASPError(f"{where} has an unknown training setting {key!r}; known: {', '.join(EXPERIMENT_KEYS)}")
        if not FIELDS[key].metadata["check"](value):
            raise ASPError(f"{where}: {key!r} must be {FIELDS[key].metadata['what']}, got {json.dumps(value)[:80]}")
    values = dict(values)
    if values.get("synths"):
        values["synths"] = tuple(values["synths"])
    return TrainConfig(**values)


# the settings an experiment config (or one of its rows) may set: every field but the script's
# own choices of how to carry a run out
EXPERIMENT_KEYS = tuple(k for k in FIELDS if k not in ("fresh",))


def experiment_checks() -> dict[str, tuple[Callable[[object], bool], str]]:
    """{key: (check, what)} of the training settings, for the experiment runner's config check."""
    return {k: (FIELDS[k].metadata["check"], FIELDS[k].metadata["what"]) for k in EXPERIMENT_KEYS}


# config.json keys that change what a run learns but are not settings: derived from the data and code
DERIVED = {
    "model_version": "the model code",
    "trained_synths": "--synths",
    "data_fingerprint": "the dataset, -d",
    "replicas": "--distribute: the devices or workers",  # with --batch-size, the global batch
}


def changed_settings(old: dict, new: dict) -> list[str]:
    """What differs between a run's config.json (``old``) and this run's (``new``), as
    ``key = old, not new (flag)`` for each setting that changes what a run learns; [] when the
    run can resume. A key that ``old`` lacks (a run made before the setting existed) counts as
    the value such runs had (``LEGACY``)."""
    keys = {f.name: _name(f) for f in dataclasses.fields(TrainConfig) if f.metadata["learns"]}
    keys.update(DERIVED)
    keys.pop("synths", None)  # compared as trained_synths (the dataset's synths when not given)
    return [
        f"{key} = {old.get(key, LEGACY.get(key))!r}, not {new.get(key, LEGACY.get(key))!r} ({flag})"
        for key, flag in keys.items()
        if old.get(key, LEGACY.get(key)) != new.get(key, LEGACY.get(key))
    ]


# what a run made before a setting existed was trained with
LEGACY = {
    "encoder": "paper",
    "spec_decoder": "paper",
    "beta": 1.0,
    "free_bits": 0.0,
    "kl_warmup_epochs": 100,
    "param_weight": 1.0,
    "replicas": 1,
}
