"""Reliability on the new surfaces (issue 42): never overwrite a user's file, never hang, every
damaged shipped or user file named. The helpers and the rules are tests/test_faults.py's: a
failure is exit 2 with one ``error:`` line, no traceback, nothing half-written; a command that
would wait forever ends on SIGTERM within seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_faults import error_line

from asp.checkpoints import read_config
from asp.errors import ASPError
from asp.experiments.config import load_config
from asp.files import not_a_file_problem, parse_json, read_json
from data_generation import amsynth
from data_generation.presets import random_presets, read_preset_file
from data_generation.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
HUGE = "1" + "0" * 5000  # Python refuses to parse an integer of over 4,300 digits with a ValueError


def run(*args, timeout=120, env=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# ---------------------------------------------------------------------------------------
# one JSON reader: limits, no blocking, one line naming the file


def test_read_json_refuses_a_huge_integer_naming_the_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(f'{{"a": {HUGE}}}')
    with pytest.raises(ASPError, match=r"x.json is damaged: it holds an integer of 5001 digits"):
        read_json(path, "preset file")
    path.write_text('{"a": 12345678901234567890, "b": -3}')
    assert read_json(path, "preset file") == {"a": 12345678901234567890, "b": -3}
    with pytest.raises(ASPError, match="TF_CONFIG is damaged"):
        parse_json(f'{{"task": {HUGE}}}', "TF_CONFIG")


@pytest.mark.parametrize("what", ["preset", "spec", "experiment", "run config"])
def test_every_json_the_project_reads_refuses_a_huge_integer(what, tmp_path):
    """A preset, a synth spec, an experiment config and a run's config.json holding a 5,000-digit
    integer: before, Python's integer-string limit ValueError (a traceback); now one line."""
    if what == "preset":
        path = tmp_path / "p.faust.json"
        path.write_text(f'{{"synth": "va", "values": {{"filter_cutoff": {HUGE}}}}}')
        call = lambda: read_preset_file(load_spec("va"), path)  # noqa: E731
    elif what == "spec":
        path = tmp_path / "big.json"
        spec = json.loads(load_spec("va").path.read_text())
        spec["render"] = dict(spec.get("render", {}), sample_rate=12345)
        path.write_text(json.dumps(spec).replace("12345", HUGE))
        call = lambda: load_spec(path)  # noqa: E731
    elif what == "experiment":
        path = tmp_path / "exp.json"
        path.write_text(f'{{"rows": [], "epochs": {HUGE}}}')
        call = lambda: load_config(path)  # noqa: E731
    else:
        path = tmp_path / "run" / "config.json"
        path.parent.mkdir()
        path.write_text(f'{{"latent_size": {HUGE}}}')
        call = lambda: read_config(path.parent)  # noqa: E731
    with pytest.raises(ASPError, match=rf"{path.name} is damaged: it holds an integer of 5001 digits"):
        call()


def test_named_pipes_and_devices_are_named_as_such_not_opened(tmp_path):
    pipe = fifo(tmp_path / "pipe.json")
    assert not_a_file_problem(pipe) == f"{pipe} is a named pipe (FIFO), not a file"
    assert not_a_file_problem("/dev/zero") == "/dev/zero is a device, not a file"
    assert not_a_file_problem(tmp_path) == f"{tmp_path} is a folder, not a file"
    assert not_a_file_problem(tmp_path / "missing") is None
    with pytest.raises(ASPError, match="is a named pipe"):
        read_json(pipe, "experiment config")  # would block forever when opened
    with pytest.raises(ASPError, match="/dev/zero is a device, not a file"):
        read_preset_file(load_spec("va"), "/dev/zero")  # would read forever
    with pytest.raises(ASPError, match="synth spec file .*spec.json is a named pipe"):
        load_spec(fifo(tmp_path / "spec.json"))  # was "not found"


def _ends_within(proc: subprocess.Popen, seconds: float) -> tuple[int, str]:
    """Waits for ``proc``; still running after ``seconds``, it gets SIGTERM, then must end within 10 s."""
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("the command ignored SIGTERM (killed with SIGKILL)")
        pytest.fail(f"the command hung for {seconds} s (ended on SIGTERM): {err[-2000:]}")
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["render_presets", "experiment"])
def test_a_named_pipe_as_an_input_file_is_refused_not_waited_on(command, tmp_path):
    pipe = fifo(tmp_path / "in.json")
    args = (
        ["data_generation/render_presets.py", "--synth", "va", "--preset-file", pipe, "--out", tmp_path / "o"]
        if command == "render_presets"
        else ["experiments/run.py", pipe, "--results", tmp_path / "r"]
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    code, err = _ends_within(proc, 60)
    res = subprocess.CompletedProcess(args, code, "", err)
    assert "is a named pipe (FIFO), not a file" in error_line(res)


# ---------------------------------------------------------------------------------------
# amsynth banks cut short; --plugin for a built-in synth


def test_an_amsynth_bank_cut_mid_preset_is_refused(tmp_path):
    spec = load_spec("amsynth")
    presets = random_presets(spec, 2, np.random.default_rng(0))
    path = amsynth.write_bank(tmp_path / "two.bank", spec, presets, ["one", "two"])
    whole = path.read_text()
    assert len(read_preset_file(spec, path)[0]) == 2
    lines = whole.splitlines(keepends=True)
    second = max(i for i, line in enumerate(lines) if line.startswith("<preset>"))
    cut = tmp_path / "cut.bank"
    cut.write_text("".join(lines[: second + 11]))  # the second preset's name and 10 of its parameters
    with pytest.raises(ASPError, match=r"cut.bank is cut short in preset 1 \('two': 10 of 4\d parameters"):
        read_preset_file(spec, cut)
    cut.write_text(whole[: whole.rindex(".") + 2])  # cut mid-line: the last value loses digits
    with pytest.raises(ASPError, match="its last line cut"):
        read_preset_file(spec, cut)


def test_plugin_for_a_built_in_synth_or_a_device_is_refused(tmp_path):
    with pytest.raises(ASPError, match=r"--plugin va=/dev/null: synth 'va' is built in"):
        load_spec("va").resolve_source("/dev/null")
    with pytest.raises(ASPError, match="/dev/null is a device, not a file"):
        load_spec("amsynth").resolve_source("/dev/null")


@pytest.mark.slow
def test_render_presets_with_plugin_va_dev_null_is_refused(tmp_path):
    res = run(
        "data_generation/render_presets.py",
        "--synth",
        "va",
        "--random",
        "1",
        "--plugin",
        "va=/dev/null",
        "--out",
        tmp_path / "o",
    )
    assert "--plugin va=/dev/null: synth 'va' is built in" in error_line(res)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------
# outputs: a file or folder the toolkit did not write is never replaced (unless --overwrite)


def test_check_outputs_refuses_what_no_command_wrote_and_allows_what_one_did(tmp_path):
    from asp.files import WRITTEN, check_outputs, is_ours, mark_written, output_path

    mine = tmp_path / "summary.md"
    mine.write_text("my notes")
    with pytest.raises(ASPError, match=r"summary.md already exists and was not written by this toolkit.*--overwrite"):
        check_outputs([tmp_path / "new.md", mine])
    check_outputs([mine], overwrite=True)  # said explicitly
    with pytest.raises(ASPError, match="not written by this toolkit"):
        with output_path(mine) as tmp:
            tmp.write_text("ours")
    assert mine.read_text() == "my notes"

    ours = tmp_path / "out.txt"
    with output_path(ours) as tmp:
        tmp.write_text("first")
    assert is_ours(ours) and (tmp_path / WRITTEN).is_file()
    with output_path(ours) as tmp:  # a second run replaces its own file
        tmp.write_text("second")
    assert ours.read_text() == "second"
    ours.write_text("edited by the user")  # edited since: the user's now
    with pytest.raises(ASPError, match="or was changed since"):
        check_outputs([ours])

    folder = tmp_path / "va.lv2"
    folder.mkdir()
    (folder / "a.ttl").write_text("x")
    mark_written(folder)
    check_outputs([folder])
    (folder / "b.ttl").write_text("a file the user added")
    with pytest.raises(ASPError, match="va.lv2 already exists"):
        check_outputs([folder])


def test_demo_sound_refuses_a_users_file_and_replaces_its_own(tmp_path):
    user = tmp_path / "pluck.wav"
    user.write_bytes(b"my own recording")
    res = run("data_generation/demo_sound.py", user, "--seconds", "0.1")
    assert "pluck.wav already exists and was not written by this toolkit" in error_line(res)
    assert user.read_bytes() == b"my own recording"
    ours = tmp_path / "demo.wav"
    for _ in range(2):  # its own file, again
        assert run("data_generation/demo_sound.py", ours, "--seconds", "0.1").returncode == 0
    assert run("data_generation/demo_sound.py", user, "--seconds", "0.1", "--overwrite").returncode == 0
    assert user.read_bytes()[:4] == b"RIFF"


@pytest.mark.slow
def test_render_presets_refuses_to_write_over_a_users_wav(tmp_path):
    out = tmp_path / "renders"
    out.mkdir()
    (out / "000_random_000.wav").write_bytes(b"mine")
    args = ["data_generation/render_presets.py", "--synth", "va", "--random", "2", "--out", out]
    assert "000_random_000.wav already exists and was not written" in error_line(run(*args))
    assert (out / "000_random_000.wav").read_bytes() == b"mine" and not (out / "001_random_001.wav").exists()
    (out / "000_random_000.wav").unlink()
    assert run(*args).returncode == 0
    assert run(*args).returncode == 0  # its own files: replaced
    assert (out / "001_random_001.wav").stat().st_size > 1000


@pytest.mark.slow
def test_view_parameters_write_spec_refuses_a_users_file(tmp_path):
    mine = tmp_path / "my.json"
    mine.write_text('{"mine": true}')
    res = run("data_generation/view_parameters.py", "--synth", "va", "--write-spec", mine)
    assert "my.json already exists and was not written by this toolkit" in error_line(res)
    assert mine.read_text() == '{"mine": true}'
    new = tmp_path / "va_copy.json"
    for _ in range(2):
        assert run("data_generation/view_parameters.py", "--synth", "va", "--write-spec", new).returncode == 0
    assert json.loads(new.read_text())["name"] == "va"


def test_evaluate_and_audibility_refuse_a_users_summary_before_any_work(tmp_path):
    from asp.evaluation.audibility import audibility
    from asp.evaluation.run import run_evaluation

    (tmp_path / "summary.md").write_text("my summary")
    with pytest.raises(ASPError, match="summary.md already exists and was not written by this toolkit"):
        run_evaluation(None, tmp_path / "no_data", tmp_path, report_samples=0)
    (tmp_path / "summary.md").unlink()
    (tmp_path / "sweeps.csv").write_text("my sweeps")
    with pytest.raises(ASPError, match="sweeps.csv already exists and was not written by this toolkit"):
        audibility(tmp_path / "no_data", tmp_path)
    assert (tmp_path / "sweeps.csv").read_text() == "my sweeps"


def test_build_plugins_refuses_a_users_bundle_in_out(tmp_path):
    bundle = tmp_path / "va.lv2"
    bundle.mkdir()
    (bundle / "manifest.ttl").write_text("# my own va plugin\n")
    res = run("data_generation/build_plugins.py", "--synths", "va", "--out", tmp_path, "--check", "0")
    assert "va.lv2 already exists and was not written by this toolkit" in error_line(res)
    assert (bundle / "manifest.ttl").read_text() == "# my own va plugin\n"


@pytest.mark.slow
def test_generate_force_deletes_only_the_files_a_dataset_writes(tmp_path):
    from asp.builder import Settings, generate

    out = tmp_path / "data"
    generate(
        Settings(synths=("va",), presets={"va": ("random",)}, n=4, notes=(60,), seed=0, hpss=False),
        out,
        workers=1,
        progress=False,
    )
    mine = out / "train_my_labels.npy"
    np.save(mine, np.arange(3))
    generate(
        Settings(synths=("fm",), presets={"fm": ("random",)}, n=4, notes=(60,), seed=1, hpss=False),
        out,
        workers=1,
        progress=False,
        force=True,
    )
    assert np.array_equal(np.load(mine), np.arange(3))
    assert not list(out.glob("*_va_params.npy")) and list(out.glob("train_fm_params.npy"))


# ---------------------------------------------------------------------------------------
# waits on a cluster: a time limit, the addresses in the message, a clean end on SIGTERM


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _lonely_worker(data: Path, model_dir: Path, wait: str | None) -> tuple[subprocess.Popen, str]:
    """Worker 0 of a two-worker TF_CONFIG whose worker 1 never comes."""
    hosts = [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]
    tf_config = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 0}})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config)
    if wait is not None:
        env["ASP_CLUSTER_WAIT"] = wait
    cmd = ["train_multi.py", "-d", data, "--model-dir", model_dir, "-l", "4", "--epochs", "1"]
    proc = subprocess.Popen(
        [sys.executable, *map(str, cmd), "--distribute", "multi-worker"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, hosts[1]


@pytest.mark.slow
def test_multi_worker_whose_peer_never_comes_ends_at_its_time_limit_naming_it(tiny_data, tmp_path):
    proc, missing = _lonely_worker(tiny_data, tmp_path / "models", "3")
    code, err = _ends_within(proc, 90)
    line = error_line(subprocess.CompletedProcess([], code, "", err))
    assert f"waited 3 s for the workers of TF_CONFIG at {missing}, which did not answer" in line
    assert not list((tmp_path / "models").rglob("*.weights.h5"))


@pytest.mark.slow
def test_multi_worker_waiting_for_its_peer_ends_on_sigterm(tiny_data, tmp_path):
    proc, _ = _lonely_worker(tiny_data, tmp_path / "models", None)  # the default wait: minutes
    out = ""
    deadline = time.monotonic() + 90
    while "waiting for the 2 workers" not in out and time.monotonic() < deadline:  # in the wait now
        out += proc.stdout.readline()
    assert "waiting for the 2 workers" in out
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the worker ignored SIGTERM (SIGKILL needed)")
    assert proc.returncode == 143 and time.monotonic() - start < 10, err[-2000:]
    assert "Traceback" not in err


def _silent_head() -> tuple[subprocess.Popen, int]:
    """A 'half-dead' Ray head: its port accepts connections and never answers."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', 0)); s.listen(64); print(s.getsockname()[1], flush=True)\n"
        "held = []\n"
        "while True: held.append(s.accept()[0])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def _generate_on_ray(tmp_path: Path, address: str, **env) -> subprocess.Popen:
    args = ["data_generation/generate.py", "--synths", "va", "--n", "2", "--out", tmp_path / "d", "--ray", address]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", RAY_TMPDIR=str(tmp_path), **env)
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_auto_with_a_stale_cluster_file_names_it_at_once(tmp_path):
    pytest.importorskip("ray")
    port = _free_port()  # nothing listens there: the head was killed without `ray stop`
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
    code, err = _ends_within(_generate_on_ray(tmp_path, "auto"), 60)
    line = error_line(subprocess.CompletedProcess([], code, "", err))
    assert f"nothing answers at the Ray address 127.0.0.1:{port} (named by Ray's cluster file" in line
    assert "run `ray stop`" in line
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("end", ["time limit", "SIGTERM"])
def test_ray_with_a_half_dead_head_ends_at_its_time_limit_or_on_sigterm(end, tmp_path):
    pytest.importorskip("ray")
    head, port = _silent_head()
    try:
        if end == "time limit":
            code, err = _ends_within(_generate_on_ray(tmp_path, f"127.0.0.1:{port}", ASP_CLUSTER_WAIT="4"), 60)
            line = error_line(subprocess.CompletedProcess([], code, "", err))
            assert f"the Ray cluster at 127.0.0.1:{port} did not answer within 4 s" in line
        else:
            proc = _generate_on_ray(tmp_path, f"127.0.0.1:{port}")  # the default wait: minutes
            time.sleep(8)  # in ray.init's GCS retries by now
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail("generate.py --ray ignored SIGTERM (SIGKILL needed)")
            assert proc.returncode == 143 and time.monotonic() - start < 10, err[-2000:]
            assert "Traceback" not in err
        assert not list(tmp_path.glob("d/*.npy"))
    finally:
        head.kill()
        head.wait()


# ---------------------------------------------------------------------------------------
# the shipped model's files verified on load


@pytest.fixture
def shipped_copy(tmp_path):
    import shutil

    from asp.runs import SHIPPED

    copy = tmp_path / "pretrained"
    shutil.copytree(SHIPPED, copy)
    return copy


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


RESTORE = "git checkout -- saved_models/pretrained"


@pytest.mark.parametrize("damage", ["index truncated", "index missing", "weights truncated"])
def test_a_damaged_or_missing_shipped_file_is_named_with_the_fix(damage, shipped_copy):
    from models import load_model

    name = "index.npz" if "index" in damage else "inference.weights.npz"
    if "missing" in damage:
        (shipped_copy / name).unlink()  # before: the search silently lost its nearest-preset starts
        message = f"{name} is missing from the exported model"
    else:
        _truncate(shipped_copy / name)  # before: zipfile.BadZipFile from the search starts
        message = f"{name} is damaged \\(its checksum differs"
    with pytest.raises(ASPError, match=message) as err:
        load_model(shipped_copy)
    assert RESTORE in str(err.value) and "--fresh" not in str(err.value) and "backup" not in str(err.value)


def test_a_truncated_or_changed_shipped_config_is_named_with_the_fix(shipped_copy, monkeypatch):
    from asp import runs
    from models import load_model

    text = (shipped_copy / "config.json").read_text()
    config = json.loads(text)
    config["synths"][0]["name"] = "va2"  # renamed: before, an array count was reported
    (shipped_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ASPError, match="config.json was changed since the model was exported") as err:
        load_model(shipped_copy)
    assert RESTORE in str(err.value)
    (shipped_copy / "config.json").write_text(text[: len(text) // 2])  # before: a JSONDecodeError traceback
    with pytest.raises(ASPError, match=f"config.json is not valid JSON .*{RESTORE}"):
        load_model(shipped_copy)
    monkeypatch.setattr(runs, "SHIPPED", shipped_copy)
    with pytest.raises(ASPError, match=f"the shipped model's config .* is not valid JSON .*{RESTORE}"):
        runs.shipped_model("multi")


def test_an_index_without_checksums_that_is_truncated_is_named(shipped_copy):
    from asp.inference import Matcher

    config = json.loads((shipped_copy / "config.json").read_text())
    del config["export"]["sha256"]  # an export made before the checksums
    (shipped_copy / "config.json").write_text(json.dumps(config))
    _truncate(shipped_copy / "index.npz")
    matcher = Matcher(shipped_copy, data_dir=None)
    with pytest.raises(ASPError, match=f"index.npz is damaged .*{RESTORE}"):
        matcher.index()


# ---------------------------------------------------------------------------------------
# datasets: one synth's broken data, swapped shards, shard manifests


@pytest.mark.parametrize("fill", [0.0, 0.25])
def test_a_synth_whose_mels_are_all_zero_or_constant_is_refused_by_name(fill, tiny_data, tmp_path):
    import shutil

    from asp.training import TrainConfig, train

    bad = tmp_path / "data"
    shutil.copytree(tiny_data, bad)
    mels = np.load(bad / "train_mels.npy")
    mels[np.load(bad / "train_synth.npy") == "va"] = fill  # every va training spectrogram
    np.save(bad / "train_mels.npy", mels)
    what = "all zeros" if fill == 0 else "the one value 0.25"
    with pytest.raises(ASPError, match=rf"every spectrogram of synth 'va' in the train split .* is {what}"):
        train(TrainConfig(approach="multi", data_dir=str(bad), model_dir=str(tmp_path / "m"), latent_size=4, verbose=0))
    assert not (tmp_path / "m").exists()


def _sharded(out: Path, mel_dtype: str = "float32") -> Path:
    """A sharded dataset of va and fm: 8 presets each at note 60, in shards of equal size."""
    from asp.builder import Settings, generate

    synths = ("va", "fm")
    settings = Settings(
        synths=synths,
        presets={s: ("random",) for s in synths},
        n=8,
        notes=(60,),
        seed=0,
        hpss=False,
        mel_dtype=mel_dtype,
    )
    generate(settings, out, layout="sharded", workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def sharded_data(tmp_path_factory):
    return _sharded(tmp_path_factory.mktemp("sharded") / "data")


def _copy(folder: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(folder, to)
    return to


def test_swapped_shards_are_refused(sharded_data, tmp_path):
    from data.dataset import load_split

    data = _copy(sharded_data, tmp_path / "data")
    by_size: dict[int, list[Path]] = {}
    for p in sorted((data / "shards").glob("shard_*.npz")):
        by_size.setdefault(p.stat().st_size, []).append(p)
    a, b = next(files for files in by_size.values() if len(files) >= 2)[:2]  # two shards of equal size
    load_split(data, "train")
    tmp = a.with_suffix(".swap")
    a.rename(tmp), b.rename(a), tmp.rename(b)
    with pytest.raises(ASPError, match=rf"{a} is not shard \d+ of this dataset .*were swapped"):
        for split in ("train", "valid", "test"):
            load_split(data, split)


@pytest.mark.parametrize("stored, dtype", [("float32", "float16"), ("float16", "float32")])
def test_a_changed_mel_dtype_in_the_manifest_is_named_not_called_truncation(stored, dtype, sharded_data, tmp_path):
    from data.dataset import load_split

    data = _copy(sharded_data, tmp_path / "data") if stored == "float32" else _sharded(tmp_path / "data", stored)
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["mel_dtype"] == stored
    manifest["mel_dtype"] = dtype  # float16 -> float32: was called a truncated shard
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ASPError, match=f"holds {stored} mels .* the dataset's manifest says {dtype}.*manifest was changed"
    ):
        load_split(data, "train")


def test_a_missing_manifest_of_a_sharded_dataset_is_named(sharded_data, tmp_path):
    from data.dataset import load_split

    data = _copy(sharded_data, tmp_path / "data")
    (data / "manifest.json").unlink()
    with pytest.raises(ASPError, match=r"manifest.json is missing \(a sharded dataset needs it\)"):
        load_split(data, "train")  # before: "train_mels.npy is missing"


# ---------------------------------------------------------------------------------------
# run_inference: one run per --out at a time; a folder of many sounds


def _tone(path: Path, seconds: float = 0.5) -> Path:
    import soundfile as sf

    t = np.arange(int(44100 * seconds)) / 44100
    sf.write(path, (0.3 * np.sin(2 * np.pi * 261.63 * t)).astype(np.float32), 44100)
    return path


def test_a_second_match_into_the_same_out_is_refused_naming_the_first(tmp_path, monkeypatch):
    import asp
    from asp.locks import folder_lock, output_lock

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _tone(a / "tone.wav"), _tone(b / "tone.wav")  # different inputs of the same name
    out = tmp_path / "matches"
    with output_lock(out):  # a first run of a single sound, still running
        with pytest.raises(ASPError, match=rf"{out} is in use by another run_inference.py run \(pid {os.getpid()}"):
            asp.match(a / "tone.wav", out=out, note=60)
    assert not out.exists()
    with output_lock(out):  # a first run of a folder of sounds
        with pytest.raises(ASPError, match="is in use by another run_inference.py run"):
            asp.match(b, out=out, note=60)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # the lock removed
    monkeypatch.chdir(tmp_path / "a")
    with folder_lock(".", remove=True):  # --out .: the lock inside
        with pytest.raises(ASPError, match="is in use by another run_inference.py run"):
            asp.match(b, out=".", note=60, model_dir=ROOT / "saved_models")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["tone.wav"]


def test_the_comparison_picture_leaves_no_figure_open(tmp_path):
    """pyplot keeps every figure until closed: a folder of 300 sounds grew to 2.5 GB."""
    import matplotlib.pyplot as plt

    from asp.inference.outputs import plot_comparison
    from asp.inference.target import Target

    mel = np.random.default_rng(0).random((128, 431)).astype(np.float32)
    target = Target(name="t", mel=mel, audio=np.zeros(10, np.float32), note=60)
    results = [{"synth": "va", "lsd": 1.0}]
    for k in range(3):
        plot_comparison(tmp_path / f"c{k}.png", target, {"va": mel}, results)
    assert plt.get_fignums() == [] and (tmp_path / "c2.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------
# LV2 preset bundles of sounds named in any script


def test_preset_bundles_of_non_ascii_names_stay_distinct_safe_and_read_back(tmp_path):
    from asp.files import distinct_slug
    from data_generation import lv2

    names = ["音", "ö", "ü", "o", "a b", "a-b", "pluck"]
    bundles = [lv2.preset_bundle_name(n, "va") for n in names]
    assert len(set(bundles)) == len(names)  # before: preset.va.lv2 for 音, ö and ü alike
    assert all(b.isascii() and "/" not in b and " " not in b for b in bundles)
    assert lv2.preset_bundle_name("pluck", "va") == "pluck.va.lv2"  # plain names unchanged
    assert distinct_slug("ö").startswith("o-") and distinct_slug("音").startswith("preset-")
    spec = load_spec("va")
    written = []
    for name in ("音", "ö"):
        preset = random_presets(spec, 1, np.random.default_rng(len(name)))[0]
        path = lv2.write_match_bundle(tmp_path, spec, preset, name, "va")
        written.append(path)
        label, values = read_preset_file(spec, path)
        assert label == [f"{name} (va)"] and np.allclose(values[0], spec.snap(preset), atol=1e-5)
    assert len({p.name for p in tmp_path.iterdir()}) == 2
    label = 'quote " backslash \\ tab\t音'
    path = lv2.write_preset_bundle(tmp_path / "q.lv2", spec, spec.defaults, label)
    assert read_preset_file(spec, path)[0] == [label]  # Turtle escaped


@pytest.mark.slow
def test_evaluate_replaces_its_own_outputs_and_refuses_them_once_edited(tiny_data, tmp_path):
    from asp.evaluation.run import run_evaluation

    out = tmp_path / "ev"
    kw = dict(baselines=("mean",), max_samples=2, workers=1, report_samples=0)
    for _ in range(2):  # the second run replaces what the first wrote
        run_evaluation(None, tiny_data, out, **kw)
    (out / "summary.md").write_text("my notes on it")
    with pytest.raises(ASPError, match="summary.md already exists and was not written by this toolkit"):
        run_evaluation(None, tiny_data, out, **kw)
    run_evaluation(None, tiny_data, out, overwrite=True, **kw)
    assert "my notes" not in (out / "summary.md").read_text()
