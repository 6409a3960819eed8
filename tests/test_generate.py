"""Dataset generation on tiny data: layout, encodings, determinism, resume, splits by group, errors."""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from asp.builder import SHARD_SIZE, WORK_DIR, Settings, generate, make_plan, parse_notes, parse_sources
from asp.builder.sampling import _human_groups, _rng, _split_groups
from asp.errors import ASPError
from asp.parallel import WorkerPool
from data.dataset import SPLITS, load_split, pick_test_index, read_manifest, split_files
from data.encoding import Codec
from data.features import harmonic_magnitude, harmonic_percentage, hpss_bin, mel_spectrogram, stft
from data_generation.presets import human_presets
from data_generation.render import Renderer
from data_generation.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SYNTHS = ("va", "fm")


def settings(n=12, notes=(60, 64), seed=3, hpss=True, synths=SYNTHS):
    return Settings(synths=synths, presets=parse_sources(None, synths), n=n, notes=notes, seed=seed, hpss=hpss)


def arrays(folder):
    return {p.name: np.load(p, allow_pickle=False) for p in sorted(Path(folder).glob("*.npy"))}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "npy_data"
    summary = generate(settings(), out, workers=1, progress=False)
    return out, summary


@pytest.mark.slow
def test_layout_files_dtypes_and_shapes(dataset):
    out, summary = dataset
    names = {p.name for p in out.glob("*.npy")}
    assert names == {f for split in SPLITS for f in split_files(split, list(SYNTHS))}
    manifest = read_manifest(out)
    assert [s["name"] for s in manifest["synths"]] == list(SYNTHS)
    sizes = {s: load_spec(s).encoded_size for s in SYNTHS}
    assert manifest["single_size"] == max(sizes.values())
    total = 0
    for split in SPLITS:
        data = load_split(out, split)
        n = len(data)
        total += n
        assert manifest["counts"][split] == n
        assert data.mels.shape == (n, 128, 431) and data.mels.dtype == np.float32
        assert isinstance(data.mels, np.memmap)  # memory-mapped, never read whole
        assert data.mels.min() >= 0.0 and data.mels.max() <= 1.0
        for s in SYNTHS:
            assert data.params[s].shape == (n, sizes[s]) and data.params[s].dtype == np.float32
            assert data.masks[s].shape == (n, sizes[s])
        assert data.params_single.shape == (n, max(sizes.values()))
        assert data.synth.dtype.kind == "U" and data.names.dtype.kind == "U"
        assert set(np.unique(data.hpss)) <= {20, 40, 60, 80, 100}
        assert set(np.unique(data.note)) <= {60, 64}
    assert total == sum(summary.kept.values())
    assert sum(summary.kept.values()) + sum(summary.dropped.values()) == 2 * 12 * 2


def test_masks_and_padding_follow_the_synth_column(dataset):
    out, _ = dataset
    data = load_split(out, "train")
    for s in SYNTHS:
        own = data.synth == s
        size = load_spec(s).encoded_size
        np.testing.assert_array_equal(data.masks[s][own], 1.0)
        np.testing.assert_array_equal(data.masks[s][~own], 0.0)
        np.testing.assert_array_equal(data.params[s][~own], 0.0)
        np.testing.assert_array_equal(data.params_single[own, :size], data.params[s][own])
        np.testing.assert_array_equal(data.params_single[own, size:], 0.0)
        np.testing.assert_array_equal(data.mask_single[own, :size], 1.0)
        np.testing.assert_array_equal(data.mask_single[own, size:], 0.0)


def test_encodings_round_trip_to_the_rendered_presets(dataset):
    """Decoding a stored vector and rendering it reproduces the stored mel exactly."""
    out, _ = dataset
    data = load_split(out, "test")
    renderer = Renderer()
    for i in range(min(3, len(data))):
        spec = load_spec(str(data.synth[i]))
        codec = Codec(spec)
        preset = codec.decode(np.asarray(data.params[spec.name][i]))
        np.testing.assert_allclose(codec.encode(preset), data.params[spec.name][i])
        audio = renderer.render(spec, preset, note=int(data.note[i]))
        np.testing.assert_array_equal(mel_spectrogram(audio), data.mels[i])


def test_splits_keep_all_notes_of_a_preset_together(dataset):
    out, _ = dataset
    seen = {}
    for split in SPLITS:
        data = load_split(out, split)
        for synth, name in zip(data.synth, data.names):
            assert seen.setdefault((synth, name), split) == split


def test_silent_renders_are_dropped_and_counted(tmp_path):
    spec = json.loads((ROOT / "data_generation/synths/va.json").read_text())
    for p in spec["parameters"]:  # a synth whose every preset is silent: volume range 0
        if p["group"] == "vol":
            p["sample_range"] = [0.0, 0.0]
            p["default"] = 0.0
    spec["name"], spec["source"], spec["presets"] = "quiet", str(ROOT / "data_generation/synths/faust/va.dsp"), []
    (tmp_path / "quiet.json").write_text(json.dumps(spec))
    quiet = str(tmp_path / "quiet.json")
    s = Settings(
        synths=("va", quiet), presets={"va": ("random",), quiet: ("random",)}, n=4, notes=(60,), seed=0, hpss=False
    )
    summary = generate(s, tmp_path / "out", workers=1, progress=False)
    assert summary.dropped["quiet"] == 4 and summary.kept["quiet"] == 0
    assert summary.kept["va"] + summary.dropped["va"] == 4
    data = load_split(tmp_path / "out", "train")
    assert "quiet" not in set(data.synth) and set(np.unique(data.hpss)) == {0}
    assert data.params["quiet"].shape[0] == len(data)


@pytest.mark.slow
def test_same_arrays_whatever_the_number_of_workers(dataset, tmp_path):
    out, _ = dataset
    generate(settings(), tmp_path / "two", workers=2, progress=False)
    one, two = arrays(out), arrays(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)


def _mapped_apart(nbytes: int) -> bool:
    """Whether glibc gives an array of ``nbytes`` its own memory mapping (then unmapped on free)."""

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    before = libc.mallinfo2().hblkhd
    held = np.ones(nbytes, dtype=np.uint8)
    mapped = libc.mallinfo2().hblkhd - before >= nbytes
    del held
    return mapped


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc 2.33 or later (mallinfo2)")
@pytest.mark.slow
def test_workers_keep_large_arrays_in_their_heap():
    # 64 MB: above glibc's largest automatic threshold (32 MB), so this process maps it apart, while
    # render workers keep such arrays in their heap for reuse (no page faults on every task)
    assert _mapped_apart(64 << 20)
    with WorkerPool(2) as pool:
        assert pool.map(_mapped_apart, [(64 << 20,), (64 << 20,)]) == [False, False]


@pytest.mark.slow
def test_resume_after_stopping_gives_the_same_arrays(dataset, tmp_path):
    out, _ = dataset
    partial = generate(settings(), tmp_path / "r", workers=1, progress=False, max_shards=1)
    assert not partial.complete and not (tmp_path / "r" / "manifest.json").exists()
    shards = sorted((tmp_path / "r" / WORK_DIR).glob("shard_*.npz"))
    assert len(shards) == 1
    # a torn shard (killed while written) and a corrupt one are detected and regenerated
    plan = make_plan(settings())
    second = tmp_path / "r" / WORK_DIR / plan.shards[1].file
    second.write_bytes(shards[0].read_bytes()[:1000])
    generate(settings(), tmp_path / "r", workers=1, progress=False, max_shards=1)
    generate(settings(), tmp_path / "r", workers=2, progress=False)
    resumed, full = arrays(tmp_path / "r"), arrays(out)
    for key in full:
        np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)
    assert not (tmp_path / "r" / WORK_DIR).exists()


@pytest.mark.slow
def test_corrupt_shard_content_is_not_used(dataset, tmp_path):
    out, _ = dataset
    generate(settings(), tmp_path / "c", workers=1, progress=False, max_shards=1)
    shard = sorted((tmp_path / "c" / WORK_DIR).glob("shard_*.npz"))[0]
    with np.load(shard) as z:
        content = {k: z[k] for k in z.files}
    content["mels"] = content["mels"] * 0.5  # plausible-looking but wrong data
    np.savez(shard, **content)
    generate(settings(), tmp_path / "c", workers=1, progress=False)
    np.testing.assert_array_equal(arrays(tmp_path / "c")["train_mels.npy"], arrays(out)["train_mels.npy"])


@pytest.mark.slow
def test_kill_9_mid_run_then_resume(dataset, tmp_path):
    out, _ = dataset
    target = tmp_path / "k"
    cmd = [
        sys.executable,
        "data_generation/generate.py",
        "--synths",
        *SYNTHS,
        "--n",
        "12",
        "--notes",
        "60,64",
        "--seed",
        "3",
        "--out",
        str(target),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((target / WORK_DIR).glob("shard_*.npz")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (target / "manifest.json").exists()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    resumed, full = arrays(target), arrays(out)
    for key in full:
        np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)


@pytest.mark.slow
def test_finished_dataset_is_kept_unless_forced(dataset, tmp_path):
    out, _ = dataset
    again = generate(settings(), out, workers=1, progress=False)
    assert again.already
    with pytest.raises(ASPError, match="other arguments.*--force"):
        generate(settings(seed=4), out, workers=1, progress=False)
    target = tmp_path / "f"
    generate(settings(n=3, notes=(60,)), target, workers=1, progress=False)
    generate(settings(n=3, notes=(60,), seed=9), target, workers=1, progress=False, force=True)
    assert read_manifest(target)["settings"]["seed"] == 9


@pytest.mark.slow
def test_a_dataset_of_an_earlier_dsp_is_found_stale(tmp_path):
    va = load_spec("va")
    (tmp_path / "faust").mkdir()
    dsp = tmp_path / "faust" / "va.dsp"
    dsp.write_bytes(Path(va.resolve_source()).read_bytes())
    (tmp_path / "va.presets.json").write_bytes((va.path.parent / "va.presets.json").read_bytes())
    va.write(tmp_path / "va.json")
    cmd = [sys.executable, "data_generation/generate.py", "--synths", str(tmp_path / "va.json"), "--n", "2"]
    cmd += ["--notes", "60", "--no-hpss", "--workers", "1", "--out", str(tmp_path / "data")]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    before = arrays(tmp_path / "data")
    dsp.write_text(dsp.read_text().replace("0.05 * pow(2, 9*lfo_rate)", "0.1 * pow(2, 9*lfo_rate)"))
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "made with an earlier version of va (a spec or DSP code changed since); pass --force" in res.stderr
    after = arrays(tmp_path / "data")  # nothing touched
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)


def test_plan_shards_and_sources():
    plan = make_plan(settings(n=40, notes=(60,)))
    assert all(len(s.notes) <= SHARD_SIZE and len({s.synth}) == 1 for s in plan.shards)
    assert plan.total == 80
    names = plan.names["va"]
    human = [n for n in names if "~m" not in n and not n.startswith("random")]
    assert len(human) >= 4  # all factory presets first, then mutations of them and random ones
    assert any("~m" in n for n in names) and any(n.startswith("random_") for n in names)
    splits = np.bincount(plan.splits["va"], minlength=3)
    assert splits.tolist() == [32, 4, 4]


def test_mutations_land_in_their_parents_split():
    synths = ("va", "fm")
    plan = make_plan(
        Settings(synths=synths, presets=parse_sources(["human,mutate"], synths), n=40, notes=(60,), seed=5)
    )
    for synth in synths:
        names, splits, groups = plan.names[synth], plan.splits[synth], plan.groups[synth]
        human = [n for n in names if "~m" not in n]
        assert len(human) == len(human_presets(load_spec(synth))[0]) and len(names) == 40
        index = {name: i for i, name in enumerate(human)}  # human presets come first, in order
        mutations = [(i, index[n.partition("~m")[0]]) for i, n in enumerate(names) if "~m" in n]
        assert len(mutations) == 40 - len(human)
        for i, parent in mutations:
            assert splits[i] == splits[parent], (synth, names[i])
            assert groups[i] == groups[parent]
        assert len(np.unique(groups)) == len(human)  # one group per human preset and its mutations
        assert sorted(np.unique(splits).tolist()) == [0, 1, 2]  # >= 3 groups: valid and test hold some
        assert np.bincount(splits, minlength=3)[0] >= 24  # about 80 % in train


def _bank_spec(tmp_path, n_banks):
    """An amsynth spec (no plugin needed to plan) whose human presets are n_banks files of 3 presets."""
    banks = tmp_path / "banks"
    banks.mkdir()
    for b in range(n_banks):
        body = "".join(
            f"<preset> <name> b{b}_p{k}\n<parameter> amp_attack {0.1 * (b + 1)}\n<parameter> amp_sustain {0.2 * k}\n"
            for k in range(3)
        )
        (banks / f"bank{b}.bank").write_text(f"amSynth\n{body}EOF\n")
    spec = json.loads((ROOT / "data_generation/synths/amsynth.json").read_text())
    spec["presets"] = [{"kind": "amsynth_bank", "path": str(banks / "*.bank")}]
    path = tmp_path / "amsynth_banks.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_amsynth_presets_are_split_by_bank_file(tmp_path):
    spec = _bank_spec(tmp_path, 4)
    names, presets, groups = _human_groups(load_spec(spec))
    expected_names, expected = human_presets(load_spec(spec))
    assert names == expected_names == [f"b{b}_p{k}" for b in range(4) for k in range(3)]
    np.testing.assert_array_equal(presets, expected)
    assert groups.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for seed in range(4):
        plan = make_plan(Settings(synths=(spec,), presets={spec: ("human", "mutate")}, n=40, notes=(60,), seed=seed))
        split_of_bank = {}
        for name, split in zip(plan.names["amsynth"], plan.splits["amsynth"]):
            bank = name.partition("_")[0]  # mutations "b2_p1~m7" stay with their bank
            assert split_of_bank.setdefault(bank, int(split)) == split, (seed, name)
        assert len(split_of_bank) == 4 and {1, 2} <= set(split_of_bank.values())


def test_fewer_than_three_bank_files_are_split_by_preset(tmp_path):
    _, _, groups = _human_groups(load_spec(_bank_spec(tmp_path, 2)))
    assert groups.tolist() == [0, 1, 2, 3, 4, 5]


def test_group_split_is_deterministic_for_a_seed():
    groups = np.repeat(np.arange(20), [1, 2, 3, 4] * 5)  # 50 presets in 20 groups
    first = _split_groups(groups, _rng(7, "va", "split"))
    np.testing.assert_array_equal(first, _split_groups(groups, _rng(7, "va", "split")))
    assert not np.array_equal(first, _split_groups(groups, _rng(8, "va", "split")))
    for g in range(20):  # a group never straddles two splits
        assert len(np.unique(first[groups == g])) == 1
    # one preset per group: the shares exactly, 80/10/10
    assert np.bincount(_split_groups(np.arange(40), _rng(7, "x")), minlength=3).tolist() == [32, 4, 4]
    # three groups, one huge: still one group each in valid and test
    assert _split_groups(np.array([0] * 100 + [1, 2]), _rng(7, "x"))[[0, 100, 101]].tolist() in ([0, 1, 2], [0, 2, 1])
    a = make_plan(settings(n=40, notes=(60,), seed=11))
    b = make_plan(settings(n=40, notes=(60,), seed=11))
    for synth in ("va", "fm"):
        np.testing.assert_array_equal(a.splits[synth], b.splits[synth])
        np.testing.assert_array_equal(a.groups[synth], b.groups[synth])


def test_split_all_test_makes_a_held_out_folder(tmp_path):
    s = Settings(synths=("va",), presets={"va": ("random",)}, n=6, notes=(60,), seed=77, hpss=False, split_all="test")
    summary = generate(s, tmp_path / "heldout", workers=1, progress=False)
    assert summary.counts == {"train": 0, "valid": 0, "test": summary.kept["va"]} and summary.kept["va"] > 0
    size = load_spec("va").encoded_size
    for split in ("train", "valid"):
        data = load_split(tmp_path / "heldout", split)
        assert len(data) == 0 and data.mels.shape == (0, 128, 431)
        assert data.params["va"].shape == (0, size) and data.names.shape == (0,)
    test = load_split(tmp_path / "heldout", "test")
    assert len(test) == summary.kept["va"] and sorted(set(test.names)) <= [f"random_{i:05d}" for i in range(6)]
    assert read_manifest(tmp_path / "heldout")["settings"]["split_all"] == "test"
    # the same presets as without --split-all, only their split differs
    plan = make_plan(Settings(synths=("va",), presets={"va": ("random",)}, n=6, notes=(60,), seed=77, hpss=False))
    np.testing.assert_array_equal(make_plan(s).presets["va"], plan.presets["va"])
    assert make_plan(s).fingerprint != plan.fingerprint
    train_only = replace(s, n=2, split_all="train")
    generate(train_only, tmp_path / "train_only", workers=1, progress=False)
    assert len(load_split(tmp_path / "train_only", "test")) == 0
    with pytest.raises(ASPError, match="test split of .* is empty"):
        pick_test_index(tmp_path / "train_only", -1, synth=None, hpss=None, seed=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--synths", "nope", "--n", "2"], "unknown synth 'nope'"),
        (["--synths", "va", "--n", "0"], "--n must be >= 1"),
        (["--synths", "va", "--n", "2", "--notes", "60-"], "not a note list"),
        (["--synths", "va", "--n", "2", "--presets", "va=bank"], "sources must be among"),
        (["--synths", "va", "--n", "2", "--out", "/proc/no_such_dir/x"], "cannot write to output folder"),
        (["--synths", "va", "--n", "2", "--split-all", "holdout"], "invalid choice: 'holdout'"),
    ],
)
@pytest.mark.slow
def test_bad_arguments_are_one_line_errors(args, message, tmp_path):
    res = subprocess.run(
        [sys.executable, "data_generation/generate.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr


def test_mel_is_the_papers_librosa_mel():
    import librosa

    audio = Renderer().render("fm")
    power = librosa.feature.melspectrogram(y=audio, sr=44100)  # 128 mels, n_fft 2048, hop 512
    db = librosa.power_to_db(power, ref=np.max)
    expected = (db - db.min()) / (db.max() - db.min())
    mel = mel_spectrogram(audio)
    assert mel.shape == (128, 431) and mel.dtype == np.float32
    np.testing.assert_allclose(mel, expected, atol=1e-6)


def test_hpss_matches_librosa():
    import librosa

    rng = np.random.default_rng(0)
    t = np.arange(44100) / 44100
    audio = (np.sin(2 * np.pi * 440 * t) + 0.5 * rng.normal(size=t.size) * (t % 0.25 < 0.01)).astype(np.float32)
    magnitude = np.abs(stft(audio))
    expected, _ = librosa.decompose.hpss(magnitude, margin=3.0)
    np.testing.assert_allclose(harmonic_magnitude(magnitude), expected, rtol=1e-6, atol=1e-9)
    assert 0.0 < harmonic_percentage(stft(audio)) < 1.0
    assert harmonic_percentage(np.zeros((1025, 10))) == 0.0


def test_parse_notes_and_hpss_bins():
    assert parse_notes("60-63") == (60, 61, 62, 63)
    assert parse_notes("48,60,72") == (48, 60, 72)
    assert hpss_bin(np.array([0.0, 0.05, 0.2, 0.21, 0.99, 1.0])).tolist() == [20, 20, 20, 40, 100, 100]


def test_reading_a_dataset_without_manifest_like_the_papers(dataset, tmp_path):
    out, _ = dataset
    paper = tmp_path / "paper"
    paper.mkdir()
    for p in out.glob("valid_*.npy"):
        if not p.name.endswith(("_note.npy", "_mask_single.npy")):
            (paper / p.name).write_bytes(p.read_bytes())
    # the paper stored one mask value per sample for each synth
    for s in SYNTHS:
        mask = np.load(out / f"valid_{s}_mask.npy")[:, 0]
        np.save(paper / f"valid_{s}_mask.npy", mask)
    data = load_split(paper, "valid")
    assert data.synths == sorted(SYNTHS)
    assert data.masks["va"].shape == data.params["va"].shape
    assert (data.note == 60).all()


def test_loader_errors(dataset, tmp_path):
    out, _ = dataset
    with pytest.raises(ASPError, match="does not exist"):
        load_split(tmp_path / "none", "train")
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in [*out.glob("test_*.npy"), out / "manifest.json"]:
        (broken / p.name).write_bytes(p.read_bytes())
    np.save(broken / "test_hpss.npy", np.zeros(999, np.int16))
    with pytest.raises(ASPError, match="different datasets"):
        load_split(broken, "test")
    np.save(broken / "test_hpss.npy", np.zeros(len(load_split(out, "test")), np.int16))
    (broken / "test_name.npy").write_bytes(b"garbage, not an npy file")
    with pytest.raises(ASPError, match="not a readable .npy"):
        load_split(broken, "test")
    (broken / "test_va_params.npy").unlink()
    with pytest.raises(ASPError, match="test_va_params.npy is missing"):
        load_split(broken, "test")
