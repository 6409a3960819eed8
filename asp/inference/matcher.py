"""The ``Matcher``: a loaded model and a renderer; ``match`` turns one target into an output folder
(presets, renders, distances, report.html), refined by a search when given a budget."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np

from asp.checkpoints import damaged_fix
from asp.errors import ASPError
from asp.files import atomic_folder, write_sound
from asp.inference.candidates import candidates, summarize
from asp.inference.outputs import SAMPLE_RATE, SUMMARY, check_output_folder, plot_comparison, write_preset_outputs
from asp.inference.target import Target
from asp.metrics import log_spectral_distance, multi_resolution_spectral_distance
from asp.report import write_match_report
from asp.search import BEST_OF_K, DEFAULT_STARTS_KEPT, NEAREST_STARTS, Budget, Searcher, SearchObjective
from asp.training.export import INDEX, read_index
from data.dataset import load_split
from data.encoding import Codec
from data.features import mel_spectrogram
from data.lookup import nearest_rows, nearest_vectors
from data.sound import align_onset, load_audio
from data_generation.lv2 import write_match_bundle
from data_generation.render import Renderer
from data_generation.spec import load_spec
from models import check_mel_shape, config_specs, load_model


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
        self.run_dir = Path(run_dir)
        self._train = None
        self._index = None
        self._searcher: Searcher | None = None
        self.extra_starts: dict[str, dict[str, np.ndarray]] = {}  # synth -> {name: encoded preset}: add_starts

    def add_starts(self, items: list[str]) -> None:
        """Preset files the search also starts from (``run_inference.py --start-from``), each
        ``SYNTH=PATH``, or a DX7 ``.syx``/``.dx7`` alone (for the model's DX7): every preset of
        the file is a start of its synth's search.

        Raises:
            ASPError: for a synth the model does not predict, a file with no synth to go to, or
                a file ``read_preset_file`` refuses.
        """
        from data_generation import dx7
        from data_generation.presets import read_preset_file

        for item in items:
            synth, sep, path = item.partition("=")
            if not sep or synth not in self.specs and Path(item).exists():
                path = item
                dexed = [s for s, spec in self.specs.items() if spec.backend == "dexed"]
                if not (dx7.is_voice_file(path) and dexed):
                    raise ASPError(
                        f"--start-from {item}: say which synth it is for as SYNTH=PATH "
                        f"(the model predicts {', '.join(self.specs)})"
                    )
                synth = dexed[0]
            if synth not in self.specs:
                raise ASPError(f"--start-from {item}: the model predicts {', '.join(self.specs)}, not {synth!r}")
            names, presets = read_preset_file(self.specs[synth], path)
            vectors = Codec(self.specs[synth]).encode(presets)
            starts = self.extra_starts.setdefault(synth, {})
            starts.update({f"{Path(path).name}: {n}": v.astype(np.float32) for n, v in zip(names, vectors)})

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

    def index(self) -> dict | None:
        """The exported run's start index (``asp.training.export``: per synth the z_mean, encoded
        preset and note of every training sound), or None for a run without one."""
        if self._index is None and (self.run_dir / INDEX).is_file():
            try:
                self._index = read_index(self.run_dir / INDEX)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # an export without checksums
                why = " ".join(str(err).split())[:120] or type(err).__name__
                raise ASPError(f"{self.run_dir / INDEX} is damaged ({why}); {damaged_fix(self.run_dir)}") from None
        return self._index

    def nearest_starts(self, target: Target, synth: str, k: int) -> dict[str, np.ndarray]:
        """The ``k`` training presets of ``synth`` nearest the target, named: by the network's latent
        in the run's own index when it has one (a shipped model), else by mel in ``data_dir``'s
        training split; none without either."""
        index = self.index()
        if index is not None and f"z_{synth}" in index and len(index[f"z_{synth}"]):
            z_mean, _ = self.model.encoder(target.mel[None].astype(np.float32), training=False)
            z = np.asarray(z_mean, dtype=np.float32)[0]
            rows = nearest_vectors(index[f"z_{synth}"], z, k)
            return {
                f"nearest {j + 1} (index row {r})": index[f"params_{synth}"][r].astype(np.float32)
                for j, r in enumerate(rows)
            }
        train = self.train_split()
        if train is None or synth not in train.synths or not np.any(train.synth == synth):
            return {}
        rows = nearest_rows(train, target.mel[None], synth, k=k)[0]
        return {f"nearest {j + 1} ({train.names[r]})": np.asarray(train.params[synth][r]) for j, r in enumerate(rows)}

    def test_target(self, data_dir: str | Path, index: int) -> Target:
        split = load_split(data_dir, "test")
        check_mel_shape(split.mels, Path(data_dir) / "test_mels.npy")
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

    def wav_target(self, path: str | Path, note: int, *, name: str | None = None) -> Target:
        """A sound file as a target named ``name`` (default: the file's stem; ``asp.api.output_names``
        tells apart files of one stem), its onset moved to where the synths start their notes (as
        in the training sounds); its note comes from ``data.sound.estimate_note``, which must run
        before TensorFlow is imported (see data/sound.py)."""
        first = self.specs[next(iter(self.specs))].render
        audio = align_onset(load_audio(path, self.seconds), first.onset_seconds, first.sample_rate)
        mel = mel_spectrogram(audio)
        if not np.isfinite(mel).all():  # the file's fault, not the presets' predicted from it
            raise ASPError(
                f"the spectrogram of {path} holds NaN or infinite values (its samples peak at "
                f"{np.abs(audio).max():.3g}); normalize the file to -1..1"
            )
        return Target(name or Path(path).stem, mel, audio, note, info={"input": str(path)})

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
        best_of: int | None = None,
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
            best_of: K presets drawn per synth from the generative heads, ranked with the
                network's and the ``refine_starts`` nearest presets by the search's distance; the
                closest is written as ``<synth>.best.*`` and a search starts from the best few. 0:
                off (the network's preset alone, searched from it and the nearest); None:
                ``BEST_OF_K`` for a model with generative heads, else off.
            workers: search render processes.
            seed: the search's seed.

        Returns:
            {"model_seconds", "out", "results": [{synth, lsd, mrsd, ...; with a search also
            refined_lsd, refined_mrsd, search_start, search_distance_start, search_distance,
            search_renders, search_seconds}] closest first, "summary": what match.json holds}.
        """
        out = Path(out)
        best_of = self.best_of(best_of)
        check_output_folder(out)
        start = time.perf_counter()
        vectors = self.model.predict_vectors(target.mel[None].astype(np.float32), notes=np.array([target.note]))
        model_seconds = time.perf_counter() - start
        with atomic_folder(out) as tmp:  # ours (check_output_folder): replaced whole, never half-written
            results, mels = self._write(target, vectors, tmp, self.synths_for(target, all_outputs))
            ranked = {}
            if best_of > 0:
                for row in results:
                    if "lsd" in row:
                        ranked[row["synth"]] = self._best_of(
                            target, vectors, tmp, row, best_of, refine_starts, workers, seed
                        )
                        mels[f"{row['synth']} best"] = ranked[row["synth"]].pop("mel")
                results.sort(key=lambda r: min(r.get("lsd", np.inf), r.get("best_lsd", np.inf)))
            if refine is not None:
                for row in self._to_refine(results, refine_synths):
                    starts = ranked.get(row["synth"], {}).get("starts")
                    mels.update(
                        self._refine(target, vectors, tmp, row, refine, refine_starts, workers, seed, progress, starts)
                    )
            results.sort(key=lambda r: min(r.get(k, np.inf) for k in ("lsd", "best_lsd", "refined_lsd")))
            summary = {"target": target.name, "note": target.note, **target.info, "results": results}
            if target.synth:
                summary["true_synth"] = target.synth
            (tmp / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
            if plot:
                plot_comparison(tmp / "compare.png", target, mels, results)
            write_match_report(tmp, summary, {"target": target.mel, **mels})
        return {"model_seconds": model_seconds, "results": results, "out": out, "summary": summary}

    def _write(self, target: Target, vectors: dict, folder: Path, synths: list[str]) -> tuple[list[dict], dict]:
        write_sound(folder / "target.wav", target.audio, SAMPLE_RATE, subtype="FLOAT")
        results, mels = [], {}
        for name in synths:
            spec = self.specs[name]
            row = {"synth": name, "note": target.note}
            # render exactly what the written preset file holds, so loading it reproduces the wav
            predicted = Codec(spec).decode(vectors[name][0])
            preset = write_preset_outputs(folder, spec, predicted, f"{target.name} ({name})")
            write_match_bundle(folder, spec, preset, target.name, name)  # an LV2 preset, for a DAW
            try:
                audio = self.renderer.render(spec, preset, note=target.note)
            except ASPError as err:  # a synth this machine cannot render (Serum without its plugin)
                row["error"] = str(err)
                results.append(row)
                continue
            write_sound(folder / f"{name}.wav", audio, SAMPLE_RATE, subtype="FLOAT")
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

    def best_of(self, k: int | None) -> int:
        """K as ``match`` uses it: ``BEST_OF_K`` for None with generative heads, else 0.

        Raises:
            ASPError: K below 0, or above 0 for a model without generative heads.
        """
        if k is None:
            return BEST_OF_K if self.model.generative is not None else 0
        if k < 0:
            raise ASPError(f"--best-of must be 0 (off) or more, got {k}")
        if k > 0 and self.model.generative is None:
            raise ASPError(
                f"--best-of {k}: the model in {self.run_dir} has no generative heads to draw presets from; add them "
                "with add_generative_head.py, or pass --best-of 0"
            )
        return k

    def searcher(self, workers: int) -> Searcher:
        """The search's worker pool (started on first use, restarted for another worker count)."""
        if self._searcher is None or self._searcher.workers != workers:
            self.close()
            self._searcher = Searcher(workers=workers, plugin_paths=self.plugin_paths)
        return self._searcher

    def candidate_presets(self, target: Target, vectors: dict, synth: str, k: int, nearest: int, seed: int) -> dict:
        """{label: encoded vector} a synth's best of K is chosen from: the network's preset, k drawn
        from its generative head (none without one) and the ``nearest`` presets of the index."""
        drawn = np.zeros((0, vectors[synth].shape[1]), np.float32)
        if k > 0:
            drawn = self.model.sample_vectors(target.mel[None], np.array([target.note]), k, seed=seed)[synth][0]
        near = self.nearest_starts(target, synth, nearest) if nearest > 0 else {}
        return candidates(vectors[synth][0], drawn, near)

    def _best_of(self, target, vectors, folder, row, k, nearest, workers, seed) -> dict:
        """Renders and ranks a synth's candidates by the search's distance; writes the closest as
        ``<synth>.best.*``, fills ``row`` (best_lsd, best_mrsd, candidates: ``summarize``'s, with
        renders and seconds); returns {"mel": its mel, "starts": the best candidates, closest first}."""
        start = time.perf_counter()
        name = row["synth"]
        spec = self.specs[name]
        found = self.candidate_presets(target, vectors, name, k, nearest, seed)
        labels = list(found)
        presets = Codec(spec).decode(np.stack([found[label] for label in labels]))
        distances = self.searcher(workers).score(spec, target.audio, target.note, presets)
        summary = summarize(dict(zip(labels, distances.tolist())))
        winner = summary["winner"]
        written = write_preset_outputs(
            folder,
            spec,
            Codec(spec).decode(found[winner]),
            f"{target.name} ({name}, best of {len(labels)})",
            stem=f"{name}.best",
        )
        write_match_bundle(folder, spec, written, target.name, f"{name}.best")
        audio = self.renderer.render(spec, written, note=target.note)
        write_sound(folder / f"{name}.best.wav", audio, SAMPLE_RATE, subtype="FLOAT")
        order = np.argsort(distances, kind="stable")[:DEFAULT_STARTS_KEPT]
        summary.update(renders=len(labels), seconds=round(time.perf_counter() - start, 2))
        row.update(
            best_lsd=float(log_spectral_distance(target.audio, audio)),
            best_mrsd=float(multi_resolution_spectral_distance(target.audio, audio)),
            candidates=summary,
        )
        return {"mel": mel_spectrogram(audio), "starts": {labels[i]: found[labels[i]] for i in order}}

    def _refine(
        self, target, vectors, folder, row, budget, refine_starts, workers, seed, progress, starts=None
    ) -> dict:
        """Searches from ``starts`` (the best of K's best candidates) or else the network's preset and
        the nearest training presets; writes the refined preset files and wav, fills ``row``; returns
        {"<synth> refined": mel}."""
        name = row["synth"]
        spec = self.specs[name]
        if starts is None:
            starts = {"network": np.asarray(vectors[name][0])}
            if refine_starts > 0:
                starts.update(self.nearest_starts(target, name, refine_starts))
        starts = {**starts, **self.extra_starts.get(name, {})}  # --start-from
        searcher = self.searcher(workers)
        found = searcher.search(spec, target.audio, target.note, starts, budget, seed=seed, progress=progress)
        # the search returns the better of its winner and its best start, both rendered exactly; the
        # wav is rendered from the preset file written, so loading the file gives the same sound
        title = f"{target.name} ({name}, refined)"
        written = write_preset_outputs(folder, spec, found.preset, title, stem=f"{name}.refined")
        write_match_bundle(folder, spec, written, target.name, f"{name}.refined")
        audio = self.renderer.render(spec, written, note=target.note)
        distance = SearchObjective(target.audio, spec.render.sample_rate)(audio)
        write_sound(folder / f"{name}.refined.wav", audio, SAMPLE_RATE, subtype="FLOAT")
        row.update(
            refined_lsd=float(log_spectral_distance(target.audio, audio)),
            refined_mrsd=float(multi_resolution_spectral_distance(target.audio, audio)),
            search_start=found.start,
            search_distance_start=found.start_distance,
            search_distance=float(distance),
            search_renders=found.renders,
            search_seconds=round(found.seconds, 2),
            # the quality-against-renders curve: (renders so far, best distance so far) after each batch
            search_history=[[int(r), round(float(d), 5)] for r, d in found.history],
        )
        return {f"{name} refined": mel_spectrogram(audio)}
