"""Models as parts: the registries, the one settings schema, run names, and the light modules (the
import layering: tests/test_layers.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asp import config as schema
from asp import runs
from asp.config import TrainConfig
from asp.errors import ASPError

ROOT = Path(__file__).resolve().parent.parent


LIGHT = ["asp.checkpoints", "data.encoding", "asp.errors", "asp.cli", "asp.files", "asp.locks", "asp.config"]
LIGHT += ["asp.runs"]


@pytest.mark.parametrize("module", [*LIGHT, "data.dataset"])
def test_light_modules_import_no_tensorflow(module):
    """The light modules never pull in TensorFlow (nor Keras); DawDreamer comes with ``asp`` itself,
    which imports it first of all (``asp.backend``), so the order that segfaults cannot happen."""
    code = f"import sys, {module}; print(sorted(m for m in ('dawdreamer', 'tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['dawdreamer']", f"{module} pulls in {out.stdout.strip()}"


@pytest.mark.slow
def test_a_new_encoder_registers_trains_one_step_and_reloads_from_its_config_alone(tiny_data, tmp_path):
    import keras
    import numpy as np

    from asp.training import train
    from models import ENCODERS, MEL_SHAPE, load_model, register_encoder

    @register_encoder("tiny_test")
    def tiny_encoder(latent_size):  # a new encoder: mean over time of every mel band -> dense
        mel = keras.Input(MEL_SHAPE, name="mel")
        x = keras.layers.Dense(16, activation="relu")(keras.ops.mean(mel, axis=2))
        z_mean = keras.layers.Dense(latent_size, name="z_mean")(x)
        return keras.Model(mel, [z_mean, keras.layers.Dense(latent_size, name="z_log_var")(x)], name="encoder")

    try:
        config = train(
            TrainConfig(
                data_dir=str(tiny_data),
                model_dir=str(tmp_path),
                latent_size=4,
                encoder="tiny_test",
                epochs=1,
                verbose=0,
            )
        )
        run_dir = tmp_path / "vae_multi_4_tiny_test"
        assert (
            config["encoder"] == "tiny_test" and json.loads((run_dir / "config.json").read_text())["epochs_done"] == 1
        )
        assert runs.find_run(tmp_path, "multi", encoder="tiny_test") == run_dir  # "_" in an encoder name
        model, loaded = load_model(run_dir)  # nothing but the folder: config.json names the parts
        assert loaded["encoder"] == "tiny_test" and model.encoder.count_params() == tiny_encoder(4).count_params()
        mels = np.load(tiny_data / "test_mels.npy")[:2]
        again, _ = load_model(run_dir)
        a, b = model.predict_vectors(mels), again.predict_vectors(mels)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    finally:
        ENCODERS.pop("tiny_test", None)


def test_every_setting_with_a_flag_is_on_the_train_scripts_command_line():
    from asp.training import parser

    p = parser("t", approach="multi")
    flags = {a.dest: a for a in p._actions}
    for name, f in schema.FIELDS.items():
        if f.metadata["flag"] and name != "synth":
            assert name in flags, name
            assert flags[name].default == f.default, name
    args = p.parse_args(["--encoder", "resnet", "-l", "16", "--lr", "0.01", "--synths", "va", "fm"])
    cfg = schema.from_arguments(args, approach="multi")
    assert (cfg.encoder, cfg.latent_size, cfg.lr, cfg.synths) == ("resnet", 16, 0.01, ("va", "fm"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1"], "--lr must be a finite number > 0"),
        (["-l", "0"], "-l/--latent-size must be >= 1"),
        (["--encoder", "transformer9"], "invalid choice: 'transformer9'"),
        (["--param-loss", "l1"], "--param-loss must be mse or mixed"),
    ],
)
def test_bad_settings_on_the_command_line_are_one_line_errors(argv, message, capsys):
    from asp.training import parser

    with pytest.raises(SystemExit) as exit_:
        parser("t", approach="multi").parse_args(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err


def test_the_paper_flag_gives_every_paper_setting():
    from asp.training import parser

    args = parser("t", approach="multi").parse_args(["--paper"])
    cfg = schema.from_arguments(args, approach="multi", **schema.PAPER_LOSS, **schema.PAPER_MODEL)
    assert (cfg.encoder, cfg.param_loss, cfg.lr, cfg.beta, cfg.kl_warmup_epochs) == ("paper", "mse", 1e-4, 1.0, 100)


def test_run_names_differ_by_latent_size_and_encoder():
    names = {
        runs.run_name(TrainConfig(approach="single", latent_size=16, encoder="resnet")),
        runs.run_name(TrainConfig(approach="single", latent_size=64, encoder="resnet")),
        runs.run_name(TrainConfig(approach="single", latent_size=64, encoder="paper")),
        runs.run_name(TrainConfig(approach="synth", synth="fm", latent_size=64, encoder="resnet")),
    }
    assert names == {"vae_single_16_resnet", "vae_single_64_resnet", "vae_single_64_paper", "vae_fm_64_resnet"}


def test_find_run_picks_by_latent_and_encoder_and_names_the_choices(tmp_path):
    for name in ("vae_single_16_resnet", "vae_single_64_resnet", "vae_single_64_paper", "vae_multi_64"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    assert runs.find_run(tmp_path, "single").name == f"vae_single_64_{schema.DEFAULT_ENCODER}"  # the defaults
    assert runs.find_run(tmp_path, "single", 16).name == "vae_single_16_resnet"  # the only one of latent 16
    assert runs.find_run(tmp_path, "single", encoder="resnet").name == "vae_single_64_resnet"
    assert runs.find_run(tmp_path, "multi").name == "vae_multi_64"  # named before the encoder was
    with pytest.raises(ASPError, match="no trained model vae_fm_.*trained runs there: vae_multi_64, vae_single_16"):
        runs.find_run(tmp_path, "fm")
    for name in ("vae_va_16_paper", "vae_va_32_paper"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    with pytest.raises(ASPError, match="several va runs .*vae_va_16_paper, vae_va_32_paper.*-l LATENT"):
        runs.find_run(tmp_path, "va")
    assert runs.find_run(tmp_path, "va", 32).name == "vae_va_32_paper"


def test_changed_settings_name_the_flag_and_old_runs_count_as_their_settings():
    new = {
        **TrainConfig(encoder="resnet").record(),
        "trained_synths": ["va"],
        "data_fingerprint": "x",
        "model_version": 3,
    }
    assert schema.changed_settings(dict(new), new) == []
    changed = schema.changed_settings({**new, "lr": 0.01, "encoder": "paper"}, new)
    assert any(f"lr = 0.01, not {new['lr']!r} (--lr)" in c for c in changed)
    assert any("encoder = 'paper', not 'resnet' (--encoder)" in c for c in changed)
    legacy = {k: v for k, v in new.items() if k not in ("encoder", "spec_decoder")}  # a run from before parts
    assert any("encoder = 'paper'" in c for c in schema.changed_settings(legacy, new))


def test_experiment_settings_are_the_schema_fields():
    from asp.experiments import ROW_KEYS, SETTINGS

    for key in ("encoder", "spec_decoder", "lr", "batch_size", "kl_warmup_epochs", "beta", "max_samples"):
        assert key in SETTINGS and key in ROW_KEYS, key
    with pytest.raises(ASPError, match="'encoder' must be an encoder name"):
        schema.from_settings({"encoder": 3}, "config x")
    with pytest.raises(ASPError, match="unknown training setting 'colour'"):
        schema.from_settings({"colour": "red"}, "config x")
