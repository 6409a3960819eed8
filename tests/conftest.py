"""Shared fixtures. Importing data_generation first loads dawdreamer before anything pulls in
tensorflow (the other order segfaults)."""

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)
from data_generation.spec import available_synths, load_spec

ROOT = Path(__file__).resolve().parent.parent
AMSYNTH = Path("/usr/lib/vst/amsynth_vst.so")
CALF_TTL = Path("/usr/lib/lv2/calf.lv2")
BANKS = Path("/usr/share/amsynth/banks")

needs_amsynth = pytest.mark.skipif(
    not AMSYNTH.exists() or not BANKS.is_dir(),
    reason="amsynth is not installed (apt-get install amsynth; CI installs it)",
)
needs_calf = pytest.mark.skipif(
    not CALF_TTL.exists(), reason="Calf plugins are not installed (apt-get install calf-plugins; CI installs them)"
)


def run_script(*args, cwd: Path = ROOT, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The tests' one way to run a command: this Python on ``args`` (a ``.py`` argument taken from the
    repository root, whatever ``cwd``), TensorFlow's C++ log off, output captured as text."""
    command = [sys.executable, *(str(ROOT / a) if str(a).endswith(".py") else str(a) for a in args)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def toy_spec(*params: tuple):
    """A plugin-less spec from (classes, group, default[, fixed]) tuples: parameters p0, p1, ..."""
    from data_generation.spec import spec_from_json

    parameters = [
        {"name": f"p{i}", "index": i, "classes": c, "group": g, "default": d, "fixed": bool(rest and rest[0])}
        for i, (c, g, d, *rest) in enumerate(params)
    ]
    return spec_from_json({"name": "toy", "backend": "vst", "source": None, "parameters": parameters})


def synth_preset(name: str, **values):
    """The defaults of synth ``name`` with the named parameters set (normalized), snapped to classes."""
    spec = load_spec(name)
    preset = spec.defaults.copy()
    for param, value in values.items():
        preset[spec.names.index(param)] = value
    return spec.snap(preset)


FAUST_SYNTHS = [n for n in available_synths() if load_spec(n).backend == "faust"]
ALL_SYNTHS = available_synths()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny dataset: 10 presets of each built-in synth at note 60 (about 8/1/1 per split)."""
    from asp.builder import Settings, generate

    out = tmp_path_factory.mktemp("tiny") / "npy_data"
    synths = ("va", "fm", "modal")
    settings = Settings(
        synths=synths, presets={s: ("human", "random") for s in synths}, n=10, notes=(60,), seed=0, hpss=True
    )
    generate(settings, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_models(tiny_data, tmp_path_factory):
    """Models trained 1 epoch on tiny_data, latent size 8: vae_multi_8_<encoder> and the va baseline vae_va_8_<encoder>
    (test_inference.py, test_report.py)."""
    from asp.training import TrainConfig, train

    models = tmp_path_factory.mktemp("models")
    for approach, synth in (("multi", None), ("synth", "va")):
        train(
            TrainConfig(
                approach=approach,
                synth=synth,
                data_dir=str(tiny_data),
                model_dir=str(models),
                latent_size=8,
                epochs=1,
                verbose=0,
            )
        )
    return models


FAULT_SYNTHS = ("va", "fm")


@pytest.fixture(scope="session")
def faults_data(tmp_path_factory):
    """The fault tests' dataset: 12 samples (8 train, 2 valid, 2 test) of two Faust synths, 6 random
    presets each at note 60 with HPSS labels (tests/test_faults.py's GENERATE makes the same)."""
    from asp.builder import Settings, generate

    out = tmp_path_factory.mktemp("faults") / "data"
    settings = Settings(
        synths=FAULT_SYNTHS, presets={s: ("random",) for s in FAULT_SYNTHS}, n=6, notes=(60,), seed=0, hpss=True
    )
    generate(settings, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def faults_runs(faults_data, tmp_path_factory):
    """The fault tests' model, one tiny multi run (latent 4, batch 4) on faults_data, as two folders
    of trained runs holding vae_multi_4_paper: (after 1 epoch, after 2: the first resumed for one more)."""
    from asp.training import TrainConfig, train

    one, two = tmp_path_factory.mktemp("faults_1_epoch"), tmp_path_factory.mktemp("faults_2_epochs")
    settings = dict(approach="multi", data_dir=str(faults_data), latent_size=4, batch_size=4, verbose=0)
    train(TrainConfig(model_dir=str(one), epochs=1, **settings))
    shutil.copytree(one, two, dirs_exist_ok=True)
    train(TrainConfig(model_dir=str(two), epochs=2, **settings))
    return one, two


@pytest.fixture
def tmp_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    yield out
    shutil.rmtree(out, ignore_errors=True)


LEARN_SYNTH = "va_learn"
LEARN_VARIED = ("filter_cutoff", "amp_attack", "osc1_wave")  # two continuous, one categorical (5 waves)


@contextmanager
def learn_dataset(root: Path, n: int, seed: int):
    """A dataset in which the sound determines the preset: ``n`` random presets at note 60 of the
    va synth with every parameter but LEARN_VARIED held at its default (a spec named
    ``va_learn`` in ``root/synths``, made visible through ``ASP_SYNTH_PATH`` while the block runs).
    Yields the npy_data folder (about 80/10/10 % train / valid / test)."""
    from asp.builder import Settings, generate

    va = load_spec("va")
    spec = json.loads(va.path.read_text())
    spec.update(name=LEARN_SYNTH, source=str(va.path.parent / spec["source"]), presets=[])
    for p in spec["parameters"]:
        if p["name"] not in LEARN_VARIED:
            p["sample_range"] = [p["default"], p["default"]]
    (root / "synths").mkdir(parents=True, exist_ok=True)
    (root / "synths" / f"{LEARN_SYNTH}.json").write_text(json.dumps(spec))
    old = os.environ.get("ASP_SYNTH_PATH")
    os.environ["ASP_SYNTH_PATH"] = str(root / "synths")
    try:
        if not (root / "npy_data").is_dir():
            settings = Settings(
                synths=(LEARN_SYNTH,), presets={LEARN_SYNTH: ("random",)}, n=n, notes=(60,), seed=seed, hpss=False
            )
            generate(settings, root / "npy_data", workers=1, progress=False)
        yield root / "npy_data"
    finally:
        if old is None:
            os.environ.pop("ASP_SYNTH_PATH")
        else:
            os.environ["ASP_SYNTH_PATH"] = old
