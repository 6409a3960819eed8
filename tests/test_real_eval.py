"""The real-sound evaluation (asp/evaluation/real.py, experiments/configs/real_sounds.json): lookup
over every synth's training sounds, the tables' known answers, the checks, and a whole run on tiny
data with a sound that is itself a training preset."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from scipy import stats

from asp import metrics
from asp.errors import ASPError
from asp.evaluation import real
from asp.stats import ratio_ci
from data.dataset import load_split
from data.encoding import Codec
from data.features import mel_spectrogram
from data.lookup import nearest_rows
from data.sound import SAMPLE_RATE, align_onset
from data_generation.params import RenderSettings
from data_generation.render import Renderer
from data_generation.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "saved_models" / "pretrained" / "config.json"


def _training_sound(data_dir, row: int = 0) -> np.ndarray:
    """A training sound rendered again at its note: (5 s,) float32."""
    train = load_split(data_dir, "train")
    synth = str(train.synth[row])
    spec = load_spec(synth)
    return Renderer().render(spec, Codec(spec).decode(np.asarray(train.params[synth][row])), note=int(train.note[row]))


def _sound_folder(folder: Path, sounds: dict[str, tuple[np.ndarray, int]]) -> Path:
    """A real-sound folder as make real-sounds writes it: <name>.wav and sounds.csv."""
    import soundfile as sf

    folder.mkdir(parents=True)
    with open(folder / "sounds.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "source", "note", "pitch", "seconds"])
        for name, (audio, note) in sounds.items():
            sf.write(folder / f"{name}.wav", audio, SAMPLE_RATE, subtype="FLOAT")
            writer.writerow([f"{name}.wav", "test", note, note, 5.0])
    return folder


def _harmonic_tone(note: int, seconds: float = 5.0) -> np.ndarray:
    """A decaying tone of 6 harmonics from 0.25 s: a sound none of the synths made."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 440.0 * 2 ** ((note - 69) / 12)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7)) * np.exp(-1.5 * t)
    audio = np.concatenate([np.zeros(int(0.25 * SAMPLE_RATE)), 0.5 * wave])[: len(t)]
    return audio.astype(np.float32)


def test_lookup_finds_a_rendered_training_sound_at_distance_zero(tiny_data):
    train = load_split(tiny_data, "train")
    row = 3
    mel = mel_spectrogram(_training_sound(tiny_data, row))
    for chunk in (3, 512):  # blocks that split the synths, and one block
        rows, distance = real.nearest_any(train, mel[None], chunk=chunk)
        assert rows[0] == row and distance[0] == pytest.approx(0.0, abs=1e-3)


def test_lookup_is_the_nearest_of_every_synths_nearest(tiny_data):
    """The same distance as the nearest baseline's (data.lookup.nearest_rows), over all synths."""
    train = load_split(tiny_data, "train")
    rng = np.random.default_rng(0)
    queries = np.clip(np.asarray(train.mels[[0, 5, 9]]) + rng.normal(0, 0.2, (3, 128, 431)), 0, 1)
    rows, distance = real.nearest_any(train, queries, chunk=4)
    for q, found, d in zip(queries, rows, distance):
        per_synth = [nearest_rows(train, q[None], s, k=1)[0, 0] for s in train.synths]
        exact = [np.sqrt(np.sum((np.asarray(train.mels[r], np.float64) - q) ** 2)) for r in per_synth]
        assert found == per_synth[int(np.argmin(exact))] and d == pytest.approx(min(exact), rel=1e-9)
    within = np.flatnonzero(train.synth == "fm")
    rows, _ = real.nearest_any(train, queries, within, chunk=4)
    assert set(train.synth[rows]) == {"fm"}


def _rows(lsd: dict[str, list[float]]) -> list[dict]:
    """samples.csv rows of len(values) sounds: each method's values as its best synth's LSD (and
    as the other distances), plus a worse second synth."""
    rows = []
    for method, values in lsd.items():
        for k, v in enumerate(values):
            for synth, d in (("va", v), ("fm", v + 1.0)):
                if method == "lookup" and synth == "fm":
                    continue
                rows.append(
                    {"sound": f"s{k}", "source": "gm" if k % 2 else "sonicpi", "note": 60, "method": method}
                    | {"synth": synth, "lsd": d, "multi_scale_log_mel_distance": d, "mfcc_distance": d}
                )
    for k in range(len(next(iter(lsd.values())))):
        real.mark_best([r for r in rows if r["sound"] == f"s{k}"])
    return rows


def test_tables_known_answers():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    rows = _rows({"one-shot": values, "searched": [v / 4 for v in values], "lookup": [2 * v for v in values]})
    assert [r["best"] for r in rows if r["sound"] == "s0"] == [1, 0, 1, 0, 1]  # va: the lower LSD
    doc, table = real.summary(rows, title="t", about="about")
    assert list(table[0]) == ["method", "metric", "n", "mean", "ci95", "median", "iqr"] + [
        "ratio_to_lookup",
        "ratio_low",
        "ratio_high",
    ]
    cell = {(r["method"], r["metric"]): r for r in table}
    one = cell[("one-shot", "lsd")]
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)  # 2.776 * 1.581 / 2.236 = 1.963
    assert one["n"] == 5 and one["mean"] == pytest.approx(3.0) and one["ci95"] == pytest.approx(half)
    assert half == pytest.approx(1.9632, abs=1e-4) and one["median"] == 3.0 and one["iqr"] == 2.0
    # a method exactly half of lookup on every sound: the ratio and its whole interval are 0.5
    assert (one["ratio_to_lookup"], one["ratio_low"], one["ratio_high"]) == pytest.approx((0.5, 0.5, 0.5))
    assert cell[("searched", "mfcc_distance")]["ratio_to_lookup"] == pytest.approx(0.125)
    assert cell[("lookup", "lsd")]["ratio_to_lookup"] == pytest.approx(1.0)
    md = doc.markdown()
    assert "| network one-shot (best synth) | 3.00 ± 1.96 / 3.00 / 2.00 |" in md
    assert (
        "| network one-shot (best synth) | 0.50x [0.50, 0.50] | 0.50x [0.50, 0.50] | 0.50x [0.50, 0.50] | 5 of 5 |"
        in md
    )
    assert "| network + search (best synth) | 0.12x [0.12, 0.12]" in md
    assert "## Per synth" in md and "| va |" in md and "## Per source" in md


def test_ratio_interval_is_a_paired_bootstrap():
    rng = np.random.default_rng(1)
    reference = rng.uniform(1, 3, 40)
    ratio, low, high = ratio_ci(reference * rng.uniform(0.5, 1.5, 40), reference)
    assert low < ratio < high and high - low < 0.4
    assert ratio_ci(reference, reference, seed=3) == pytest.approx((1.0, 1.0, 1.0))


def test_a_missing_or_bad_sound_folder_is_one_line(tmp_path):
    with pytest.raises(
        ASPError, match=r"real-sound folder .*nowhere does not exist; make the set with `make real-sounds`"
    ):
        real.read_real_sounds(tmp_path / "nowhere")
    folder = _sound_folder(tmp_path / "set", {"a": (_harmonic_tone(60), 60)})
    (folder / "a.wav").unlink()
    with pytest.raises(ASPError, match=r"sounds.csv, line 2: sound file .*a.wav is missing"):
        real.read_real_sounds(folder)
    (folder / "a.wav").write_bytes((folder / "sounds.csv").read_bytes())  # any file: the name is refused first
    with open(folder / "sounds.csv", "a") as f:
        f.write("a.flac,test,60,60,5.0\nb.wav,test,inf,60,5.0\n")
    (folder / "a.flac").write_bytes(b"")
    with pytest.raises(ASPError, match=r"line 4: sound file .*b.wav is missing"):
        real.read_real_sounds(folder)
    (folder / "b.wav").write_bytes(b"")
    with pytest.raises(ASPError, match=r"line 4: note 'inf' is not a MIDI note 0-127"):
        real.read_real_sounds(folder)
    lines = (folder / "sounds.csv").read_text().splitlines()
    (folder / "sounds.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ASPError, match=r"a.flac, a.wav share a name; rename one"):
        real.read_real_sounds(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ASPError, match="has no sound files"):
        real.read_real_sounds(empty)


def test_sounds_come_with_their_notes_and_a_seeded_choice(tmp_path):
    folder = _sound_folder(tmp_path / "set", {f"t{n}": (_harmonic_tone(n), n) for n in (40, 52, 64, 76)})
    sounds = real.read_real_sounds(folder)
    assert [(s.name, s.note, s.source) for s in sounds] == [(f"t{n}", n, "test") for n in (40, 52, 64, 76)]
    two = real.choose_sounds(sounds, 2, seed=0)
    assert len(two) == 2 and two == real.choose_sounds(sounds, 2, seed=0) and two == sorted(two, key=sounds.index)
    assert real.choose_sounds(sounds, None, seed=0) == sounds


@pytest.mark.slow
def test_a_folder_without_a_list_has_its_notes_estimated(tmp_path):
    """pyin, in a process of its own: its numba code segfaults once TensorFlow is loaded, as it may
    be in this one."""
    import subprocess
    import sys

    folder = _sound_folder(tmp_path / "set", {f"t{n}": (_harmonic_tone(n), n) for n in (40, 64)})
    (folder / "sounds.csv").unlink()
    code = f"from asp.evaluation import real; print([s.note for s in real.read_real_sounds({str(folder)!r})])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[40, 64]"


def test_a_mismatched_model_and_dataset_are_refused(tiny_data):
    shipped = json.loads(SHIPPED.read_text())
    # its va, fm and modal, the specs tiny_data was made with (it predicts dx7 too, which tiny_data lacks)
    config = {
        **shipped,
        "encodings": [e for e in shipped["encodings"] if e["name"] in ("va", "fm", "modal")],
        "trained_synths": ["va", "fm", "modal"],
    }
    line = real.check_pair(config, tiny_data, SHIPPED.parent)
    assert "not the model's own training data" in line
    assert "model's own training data" in real.check_pair(
        {**config, "data_fingerprint": _fingerprint(tiny_data)}, tiny_data, "m"
    )
    other = {**config, "encodings": [{**e, "hash": "0" * 16} if e["name"] == "fm" else e for e in config["encodings"]]}
    with pytest.raises(ASPError, match=r"encode fm differently .*use the dataset the model was trained on"):
        real.check_pair(other, tiny_data, "m")
    unknown = {**config, "encodings": [*config["encodings"], {"name": "amsynth", "encoded_size": 3, "hash": "x"}]}
    with pytest.raises(ASPError, match="predicts amsynth but the training split of .* has no amsynth sounds"):
        real.check_pair(unknown, tiny_data, "m")


def _fingerprint(data_dir):
    from data.dataset import data_fingerprint

    return data_fingerprint(data_dir)


def test_a_real_sound_config_is_checked_before_anything_is_written(tmp_path, tiny_data):
    from asp.experiments import load_config, resolve, run_config

    config = tmp_path / "real.json"
    base = {"real_sounds": str(tmp_path / "none"), "model": str(SHIPPED.parent), "data_dir": str(tiny_data)}
    config.write_text(json.dumps({**base, "profiles": {"small": {}}}))
    with pytest.raises(ASPError, match=r"real-sound folder .*none does not exist"):
        run_config(config, "small", results=tmp_path / "results", workers=1)
    assert not (tmp_path / "results").exists()
    config.write_text(json.dumps({**base, "rows": [{"approach": "multi"}], "profiles": {"small": {}}}))
    with pytest.raises(ASPError, match="a real-sound config .* has no 'rows'"):
        load_config(config)
    config.write_text(json.dumps({"real_sounds": "x", "data_dir": "d", "profiles": {"small": {}}}))
    with pytest.raises(ASPError, match="lacks 'model'"):
        resolve(load_config(config), "small")
    shipped = load_config(ROOT / "experiments" / "configs" / "real_sounds.json")
    assert resolve(shipped, "small")["refine_renders"] == 300 and resolve(shipped, "paper")["eval_max_samples"] is None


@pytest.mark.slow
def test_real_sounds_end_to_end_on_tiny_data(tiny_data, tiny_models, tmp_path):
    """Three sounds (a training preset rendered at its note, two tones no synth made) through the
    config runner with an exported model (the shipped form: the search starts from its own index):
    lookup finds the preset, every method scores every sound, the tables, CSVs and pages are
    written; a second run reuses every sound's scores, and one against another dataset scores only
    the baselines again."""
    from asp.builder import Settings, generate
    from asp.experiments import run_config
    from asp.training.export import export

    model = export(tiny_models / "vae_multi_8_paper", tiny_data, tmp_path / "exported")

    train = load_split(tiny_data, "train")
    row = 3
    audio = _training_sound(tiny_data, row)
    # read as a sound file, its onset (40 dB below its peak) moves to where the renders' notes start
    # (the first block of 512 samples from 0.25 s): lookup's known distances are those of that shift alone
    aligned = align_onset(audio, RenderSettings().onset_seconds)
    sounds = {
        "preset": (audio, int(train.note[row])),
        "tone48": (_harmonic_tone(48), 48),
        "tone67": (_harmonic_tone(67), 67),
    }
    folder = _sound_folder(tmp_path / "set", sounds)
    config = tmp_path / "real_tiny.json"
    settings = {
        "title": "tiny",
        "real_sounds": str(folder),
        "model": str(model),
        "data_dir": str(tiny_data),
        "report_samples": 2,
        "profiles": {"small": {"refine_renders": 12}},
    }
    config.write_text(json.dumps(settings))
    out = run_config(config, "small", results=tmp_path / "results", workers=1)
    with open(out / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"sound", "source", "note", "method", "synth", "best", "lsd", "multi_scale_log_mel_distance"} <= set(rows[0])
    for name in sounds:
        mine = [r for r in rows if r["sound"] == name]
        assert sorted((r["method"], r["synth"]) for r in mine) == sorted(
            [(m, s) for m in ("one-shot", "searched", "mean") for s in ("va", "fm", "modal")]
            + [("lookup", next(r["synth"] for r in mine if r["method"] == "lookup"))]
        )
        assert sum(int(r["best"]) for r in mine) == 4  # one pick per method
    lookup = next(r for r in rows if r["sound"] == "preset" and r["method"] == "lookup")
    assert int(lookup["lookup_row"]) == row and lookup["lookup_name"] == str(train.names[row])
    assert float(lookup["lsd"]) == pytest.approx(float(metrics.log_spectral_distance(aligned, audio)), rel=1e-5)
    stored = np.asarray(train.mels[row], np.float64)
    assert float(lookup["mel_distance"]) == pytest.approx(
        np.sqrt(np.sum((mel_spectrogram(aligned) - stored) ** 2)), rel=1e-3
    )
    searched = [r for r in rows if r["method"] == "searched"]
    assert all(int(r["search_renders"]) <= 12 + 3 for r in searched)
    table = (out / "table.md").read_text()
    assert "3 sounds" in table and "| lookup: nearest training sound (any synth) |" in table
    assert "not the model's own training data" not in table and "the model's own training data" in table
    with open(out / "table.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4 * 3  # methods x distances
    page = (out / "report" / "index.html").read_text()
    linked = re.findall(r'src="([^"]+)"', page)
    assert linked and all((out / "report" / unquote(link)).is_file() for link in linked)
    assert sum(f"../sounds/{sound}/target.wav" in page for sound in sounds) == 2  # report_samples
    assert all(f'<td data-value="{sound}">' in page for sound in sounds)  # every sound's row
    for sound in sounds:
        assert (out / "sounds" / sound / "report.html").is_file() and (out / "sounds" / sound / "lookup.wav").is_file()
    assert (out / "sounds" / "index.html").is_file()
    before = (out / "sounds" / "tone48" / "report.html").stat().st_mtime_ns
    run_config(config, "small", results=tmp_path / "results", workers=1)
    assert (out / "sounds" / "tone48" / "report.html").stat().st_mtime_ns == before  # scored once
    with open(out / "samples.csv", newline="") as f:
        assert list(csv.DictReader(f)) == rows
    other = tmp_path / "other"
    synths = ("va", "fm", "modal")
    generate(Settings(synths=synths, presets={s: ("random",) for s in synths}, n=6, notes=(48,), seed=5), other)
    config.write_text(json.dumps({**settings, "data_dir": str(other)}))
    run_config(config, "small", results=tmp_path / "results", workers=1)
    assert (out / "sounds" / "tone48" / "report.html").stat().st_mtime_ns == before  # not matched again
    with open(out / "samples.csv", newline="") as f:
        again = list(csv.DictReader(f))

    def network(rs):  # the network's rows: one-shot and searched
        return sorted(
            (r["sound"], r["method"], r["synth"], r["lsd"]) for r in rs if r["method"] in ("one-shot", "searched")
        )

    assert network(again) == network(rows) and len(network(rows)) == 18
    names = set(load_split(other, "train").names)
    assert all(r["lookup_name"] in names for r in again if r["method"] == "lookup")
    assert "not the model's own training data" in (out / "table.md").read_text()
    # as run_inference.py does: only the closest one-shot synth searched (the match made again: its stamp
    # changed), and match.json keeps each search's quality-against-renders curve
    config.write_text(json.dumps({**settings, "refine_synths": 1}))
    run_config(config, "small", results=tmp_path / "results", workers=1)
    assert (out / "sounds" / "tone48" / "report.html").stat().st_mtime_ns != before
    with open(out / "samples.csv", newline="") as f:
        narrow = list(csv.DictReader(f))
    for name in sounds:
        assert len([r for r in narrow if r["sound"] == name and r["method"] == "searched"]) == 1
        refined = [
            r
            for r in json.loads((out / "sounds" / name / "match.json").read_text())["results"]
            if "search_history" in r
        ]
        assert len(refined) == 1
        curve = np.array(refined[0]["search_history"])
        assert np.all(np.diff(curve[:, 0]) > 0) and np.all(np.diff(curve[:, 1]) <= 0)
        assert curve[-1, 0] == refined[0]["search_renders"] <= 12 + 3
