"""Inference: a test sample or any sound -> a preset for each synth, rendered and compared.

The model is built and loaded once (``Matcher``); each target (a test sample or a wav file) is
written to its own output folder, assembled in a temp folder and renamed into place, so a run that
fails leaves nothing partial behind. An existing output folder is replaced only when this tool made
it (its ``match.json`` says so and it holds nothing else than what a match writes); any other
existing folder is refused, never deleted. ``report.html`` (``asp.report``) in the same folder plays
the target and every match, with their mel spectrograms, distances and preset files.

With a search budget (``refine``), the closest synths' one-shot presets are refined by searching
with the synth in the loop (``asp.search``), from the network's preset and the nearest training
presets; the refined preset is written next to the one-shot one (``<synth>.refined.*``).
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from asp.checkpoints import read_config
from asp.errors import ASPError
from asp.files import atomic_folder
from asp.metrics import log_spectral_distance, multi_resolution_spectral_distance
from asp.report import write_match_report
from asp.runs import find_run
from asp.search import NEAREST_STARTS, Budget, Searcher, SearchObjective
from data.dataset import load_split, nearest_rows
from data.encoding import Codec
from data.features import mel_spectrogram
from data.sound import align_onset, load_audio
from data_generation import amsynth
from data_generation.presets import read_preset_file, write_preset_file
from data_generation.render import Renderer
from data_generation.spec import SynthSpec, load_spec
from models import config_specs, load_model

__all__ = ["Matcher", "find_run", "read_config"]

SAMPLE_RATE = 44100
SUMMARY = "match.json"  # every output folder's summary, and the mark that this tool made the folder
OUTPUT_SUFFIXES = {".wav", ".json", ".bank", ".png", ".html"}


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

    def __init__(
        self,
        run_dir: Path,
        *,
        latent_size: int | None = None,
        plugin_paths: dict | None = None,
        data_dir: str | Path | None = None,
    ):
        start = time.perf_counter()
        self.model, self.config = load_model(run_dir, latent_size=latent_size)
        self.specs = {s.name: s for s in config_specs(self.config)}
        self.plugin_paths = dict(plugin_paths or {})
        self.renderer = Renderer(plugin_paths=plugin_paths)
        self.load_seconds = time.perf_counter() - start
        self.seconds = self.specs[next(iter(self.specs))].render.duration
        self.data_dir = data_dir
        self._train = None
        self._searcher: Searcher | None = None

    def close(self) -> None:
        """Stops the search workers, if any were started."""
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None

    def train_split(self):
        """The training split of ``data_dir`` (for the search's nearest starts), or None without one."""
        if self._train is None and self.data_dir is not None:
            try:
                self._train = load_split(self.data_dir, "train")
            except ASPError:
                self.data_dir = None  # no dataset here: the search starts from the network alone
        return self._train

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
        """A sound file as a target, its onset moved to where the synths start their notes (as
        in the training sounds); its note comes from ``data.sound.estimate_note``, which must run
        before TensorFlow is imported (see data/sound.py)."""
        first = self.specs[next(iter(self.specs))].render
        audio = align_onset(load_audio(path, self.seconds), first.note_start, first.sample_rate)
        return Target(Path(path).stem, mel_spectrogram(audio), audio, note, info={"input": str(path)})

    def synths_for(self, target: Target, all_outputs: bool) -> list[str]:
        if target.synth is None or all_outputs:
            return list(self.specs)
        return [target.synth] if target.synth in self.specs else list(self.specs)

    def match(
        self,
        target: Target,
        out: Path,
        *,
        all_outputs: bool = False,
        plot: bool = True,
        refine: Budget | None = None,
        refine_synths: int | list[str] = 2,
        refine_starts: int = NEAREST_STARTS,
        workers: int = 1,
        seed: int = 0,
        progress: bool = True,
    ) -> dict:
        """Predicts, renders (and, with ``refine``, searches) and writes everything for one target
        into ``out`` (atomically; see the module's docstring for an existing ``out``).

        Args:
            refine: a search budget per refined synth; None for the network's presets alone.
            refine_synths: the synths to refine, or how many of the closest one-shot matches.
            refine_starts: nearest training presets (of ``data_dir``) the search also starts from.
            workers: search render processes.
            seed: the search's seed.

        Returns:
            {"model_seconds", "out", "results": [{synth, lsd, mrsd, ...; with a search also
            refined_lsd, refined_mrsd, search_start, search_distance_start, search_distance,
            search_renders, search_seconds}] closest first, "summary": what match.json holds}.
        """
        out = Path(out)
        check_output_folder(out)
        start = time.perf_counter()
        vectors = self.model.predict_vectors(target.mel[None].astype(np.float32))
        model_seconds = time.perf_counter() - start
        with atomic_folder(out) as tmp:  # ours (check_output_folder): replaced whole, never half-written
            results, mels = self._write(target, vectors, tmp, self.synths_for(target, all_outputs))
            if refine is not None:
                for row in self._to_refine(results, refine_synths):
                    mels.update(self._refine(target, vectors, tmp, row, refine, refine_starts, workers, seed, progress))
            results.sort(key=lambda r: min(r.get("lsd", np.inf), r.get("refined_lsd", np.inf)))
            summary = {"target": target.name, "note": target.note, **target.info, "results": results}
            if target.synth:
                summary["true_synth"] = target.synth
            (tmp / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
            if plot:
                plot_comparison(tmp / "compare.png", target, mels, results)
            write_match_report(tmp, summary, {"target": target.mel, **mels})
        return {"model_seconds": model_seconds, "results": results, "out": out, "summary": summary}

    def _write(self, target: Target, vectors: dict, folder: Path, synths: list[str]) -> tuple[list[dict], dict]:
        sf.write(folder / "target.wav", target.audio, SAMPLE_RATE, subtype="FLOAT")
        results, mels = [], {}
        for name in synths:
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
        return results, mels

    def _to_refine(self, results: list[dict], refine_synths: int | list[str]) -> list[dict]:
        rendered = [r for r in results if "lsd" in r]
        if isinstance(refine_synths, int):
            return rendered[:refine_synths]
        unknown = [s for s in refine_synths if s not in self.specs]
        if unknown:
            raise ASPError(
                f"cannot refine {', '.join(unknown)}: the model predicts {', '.join(self.specs)}; "
                "pick --refine-synths among them"
            )
        return [r for r in rendered if r["synth"] in refine_synths]

    def _refine(self, target, vectors, folder, row, budget, refine_starts, workers, seed, progress) -> dict:
        """Searches from the network's preset and the nearest training presets; writes the refined
        preset files and wav, fills ``row``; returns {"<synth> refined": mel}."""
        name = row["synth"]
        spec = self.specs[name]
        starts = {"network": np.asarray(vectors[name][0])}
        train = self.train_split() if refine_starts > 0 else None
        if train is not None and name in train.synths and np.any(train.synth == name):
            for k, r in enumerate(nearest_rows(train, target.mel[None], name, k=refine_starts)[0]):
                starts[f"nearest {k + 1} ({train.names[r]})"] = np.asarray(train.params[name][r])
        if self._searcher is None or self._searcher.workers != workers:
            self.close()
            self._searcher = Searcher(workers=workers, plugin_paths=self.plugin_paths)
        found = self._searcher.search(spec, target.audio, target.note, starts, budget, seed=seed, progress=progress)
        # the search returns the better of its winner and its best start, both rendered exactly; the
        # wav is rendered from the preset file written, so loading the file gives the same sound
        title = f"{target.name} ({name}, refined)"
        written = write_preset_outputs(folder, spec, found.preset, title, stem=f"{name}.refined")
        audio = self.renderer.render(spec, written, note=target.note)
        distance = SearchObjective(target.audio, spec.render.sample_rate)(audio)
        sf.write(folder / f"{name}.refined.wav", audio, SAMPLE_RATE, subtype="FLOAT")
        row.update(
            refined_lsd=float(log_spectral_distance(target.audio, audio)),
            refined_mrsd=float(multi_resolution_spectral_distance(target.audio, audio)),
            search_start=found.start,
            search_distance_start=found.start_distance,
            search_distance=float(distance),
            search_renders=found.renders,
            search_seconds=round(found.seconds, 2),
        )
        return {f"{name} refined": mel_spectrogram(audio)}


def check_output_folder(out: Path) -> None:
    """Refuses an output path this tool must not replace: a file, or an existing folder it did not
    make (no ``match.json``, or holding anything a match does not write)."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise ASPError(f"output path {out} exists and is not a folder; choose another --out")
    entries = list(out.iterdir())
    ours = (out / SUMMARY).is_file() and all(e.is_file() and e.suffix in OUTPUT_SUFFIXES for e in entries)
    if entries and not ours:
        older = " (an output of an older version has no match.json: delete it yourself)"
        raise ASPError(
            f"output folder {out} already exists and was not made by run_inference (no {SUMMARY}, or other files "
            f"in it); choose a new --out, nothing was changed{older if (out / 'target.wav').is_file() else ''}"
        )


def write_preset_outputs(
    folder: Path, spec: SynthSpec, preset: np.ndarray, title: str, *, stem: str | None = None
) -> np.ndarray:
    """Writes the predicted preset as named JSON and in a form the synth itself loads, as
    ``<stem>.preset.json`` and ``<stem>.bank`` / ``.faust.json`` / ``.params.json`` (stem: the
    synth's name); returns the preset as read back from that file (the files round values to 6
    digits)."""
    stem = stem or spec.name
    named = {"synth": spec.name, "name": title, "normalized": spec.preset_to_dict(preset)}
    if any(p.units for p in spec.params):  # the synth's own units (seconds, semitones, ...)
        named["units"] = amsynth.presets_to_bank_values(spec, preset)[0]
    (folder / f"{stem}.preset.json").write_text(json.dumps(named, indent=1) + "\n")
    if spec.name == "amsynth" or any(s.get("kind") == "amsynth_bank" for s in spec.presets):
        path = amsynth.write_bank(folder / f"{stem}.bank", spec, preset[None], [title[:60]])
        return amsynth.bank_to_presets(spec, amsynth.read_bank(path))[0]
    if spec.backend == "faust":
        path = write_preset_file(folder / f"{stem}.faust.json", spec, preset[None], [title])
        return read_preset_file(spec, path)[1][0]
    values = [round(float(v), 6) for v in preset]
    listing = [{"index": p.index, "name": p.label or p.name, "value": v} for p, v in zip(spec.params, values)]
    document = {"synth": spec.name, "plugin": spec.source, "normalized_parameters": listing}
    (folder / f"{stem}.params.json").write_text(json.dumps(document, indent=1) + "\n")
    return spec.snap(np.array(values))


def plot_comparison(path: Path, target: Target, mels: dict[str, np.ndarray], results: list[dict]) -> None:
    """One PNG: the target's mel and each prediction's, with their LSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("target", target.mel, "")]
    for r in results:
        if r["synth"] in mels:
            rows.append((r["synth"], mels[r["synth"]], f"one-shot LSD {r['lsd']:.2f}"))
        if f"{r['synth']} refined" in mels:
            label = f"LSD {r['refined_lsd']:.2f} ({r['search_renders']} renders, {r['search_seconds']:.0f} s)"
            rows.append((f"{r['synth']} refined", mels[f"{r['synth']} refined"], label))
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
