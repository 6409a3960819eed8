"""Inference: a test sample or any sound -> a preset for each synth, rendered and compared.

The model is built and loaded once (``Matcher``); each target (a test sample or a wav file) is
written to its own output folder, assembled in a temp folder and renamed into place, so a run that
fails leaves nothing partial behind.
"""

from __future__ import annotations

import data_generation  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from checkpoints import model_folder, read_config
from data.dataset import load_split
from data.encoding import Codec
from data.features import mel_spectrogram
from data.sound import load_audio
from data_generation import amsynth
from data_generation.errors import ASPError
from data_generation.presets import read_preset_file, write_preset_file
from data_generation.render import Renderer
from data_generation.spec import SynthSpec, load_spec
from experiments.metrics import log_spectral_distance, multi_resolution_spectral_distance
from training import config_specs, load_model

__all__ = ["Matcher", "model_folder", "read_config"]

SAMPLE_RATE = 44100


@dataclass
class Target:
    """What to match: a mel, the audio it came from, the note to render at, and where it came from."""

    name: str
    mel: np.ndarray
    audio: np.ndarray
    note: int
    synth: str | None = None  # the true synth of a test sample
    true_vector: np.ndarray | None = None
    info: dict = field(default_factory=dict)


class Matcher:
    """A loaded model and a renderer; ``match`` turns one target into an output folder."""

    def __init__(self, run_dir: Path, *, latent_size: int | None = None, plugin_paths: dict | None = None):
        start = time.perf_counter()
        self.model, self.config = load_model(run_dir, latent_size=latent_size)
        self.specs = {s.name: s for s in config_specs(self.config)}
        self.renderer = Renderer(plugin_paths=plugin_paths)
        self.load_seconds = time.perf_counter() - start
        self.seconds = self.specs[next(iter(self.specs))].render.duration

    def test_target(self, data_dir: str | Path, index: int) -> Target:
        split = load_split(data_dir, "test")
        synth = str(split.synth[index])
        spec = self.specs.get(synth) or load_spec(synth)  # a sound of a synth the model never saw works too
        vector = np.asarray(split.params[synth][index], dtype=np.float32)
        note = int(split.note[index])
        audio = self.renderer.render(spec, Codec(spec).decode(vector), note=note)
        return Target(
            f"test_{index:05d}_{synth}",
            np.asarray(split.mels[index]),
            audio,
            note,
            synth,
            vector,
            {"preset": str(split.names[index]), "hpss": int(split.hpss[index])},
        )

    def wav_target(self, path: str | Path, note: int) -> Target:
        """A sound file as a target; its note comes from ``data.sound.estimate_note``, which must
        run before TensorFlow is imported (see data/sound.py)."""
        audio = load_audio(path, self.seconds)
        return Target(Path(path).stem, mel_spectrogram(audio), audio, note, info={"input": str(path)})

    def synths_for(self, target: Target, all_outputs: bool) -> list[str]:
        if target.synth is None or all_outputs:
            return list(self.specs)
        return [target.synth] if target.synth in self.specs else list(self.specs)

    def match(self, target: Target, out: Path, *, all_outputs: bool = False, plot: bool = True) -> dict:
        """Predicts, renders and writes everything for one target into ``out`` (atomically).

        Returns:
            {"model_seconds", "results": [{synth, lsd, mrsd, wav, ...}] sorted by LSD}.
        """
        start = time.perf_counter()
        vectors = self.model.predict_vectors(target.mel[None].astype(np.float32))
        model_seconds = time.perf_counter() - start
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            results = self._write(target, vectors, tmp, all_outputs=all_outputs, plot=plot)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return {"model_seconds": model_seconds, "results": results, "out": out}

    def _write(self, target: Target, vectors: dict, folder: Path, *, all_outputs: bool, plot: bool) -> list[dict]:
        sf.write(folder / "target.wav", target.audio, SAMPLE_RATE, subtype="FLOAT")
        results, mels = [], {}
        for name in self.synths_for(target, all_outputs):
            spec = self.specs[name]
            row = {"synth": name, "note": target.note}
            # render exactly what the written preset file holds, so loading it reproduces the wav
            predicted = Codec(spec).decode(vectors[name][0])
            preset = write_preset_outputs(folder, spec, predicted, f"{target.name} ({name})")
            try:
                audio = self.renderer.render(spec, preset, note=target.note)
            except ASPError as err:  # a synth this machine cannot render (Serum without its plugin)
                row["error"] = str(err)
                results.append(row)
                continue
            sf.write(folder / f"{name}.wav", audio, SAMPLE_RATE, subtype="FLOAT")
            row["lsd"] = float(log_spectral_distance(target.audio, audio))
            row["mrsd"] = float(multi_resolution_spectral_distance(target.audio, audio))
            mels[name] = mel_spectrogram(audio)
            results.append(row)
        results.sort(key=lambda r: r.get("lsd", np.inf))
        if plot:
            plot_comparison(folder / "compare.png", target, mels, results)
        return results


def write_preset_outputs(folder: Path, spec: SynthSpec, preset: np.ndarray, title: str) -> np.ndarray:
    """Writes the predicted preset as named JSON and in a form the synth itself loads; returns the
    preset as read back from that file (the files round values to 6 digits)."""
    import json

    named = {"synth": spec.name, "name": title, "normalized": spec.preset_to_dict(preset)}
    if any(p.units for p in spec.params):  # the synth's own units (seconds, semitones, ...)
        named["units"] = amsynth.presets_to_bank_values(spec, preset)[0]
    (folder / f"{spec.name}.preset.json").write_text(json.dumps(named, indent=1) + "\n")
    if spec.name == "amsynth" or any(s.get("kind") == "amsynth_bank" for s in spec.presets):
        path = amsynth.write_bank(folder / f"{spec.name}.bank", spec, preset[None], [title[:60]])
        return amsynth.bank_to_presets(spec, amsynth.read_bank(path))[0]
    if spec.backend == "faust":
        path = write_preset_file(folder / f"{spec.name}.faust.json", spec, preset[None], [title])
        return read_preset_file(spec, path)[1][0]
    values = [round(float(v), 6) for v in preset]
    listing = [{"index": p.index, "name": p.label or p.name, "value": v} for p, v in zip(spec.params, values)]
    document = {"synth": spec.name, "plugin": spec.source, "normalized_parameters": listing}
    (folder / f"{spec.name}.params.json").write_text(json.dumps(document, indent=1) + "\n")
    return spec.snap(np.array(values))


def plot_comparison(path: Path, target: Target, mels: dict[str, np.ndarray], results: list[dict]) -> None:
    """One PNG: the target's mel and each prediction's, with their LSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("target", target.mel, "")] + [
        (r["synth"], mels[r["synth"]], f"LSD {r['lsd']:.1f}") for r in results if r["synth"] in mels
    ]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.2 * len(rows)), squeeze=False)
    for ax, (name, mel, label) in zip(axes[:, 0], rows):
        ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"{name} {label}".strip(), fontsize=9)
        ax.set_yticks([])
        ax.set_xticks([])
    fig.suptitle(f"{target.name} (note {target.note})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
