"""A match's output folder: which folders it may replace, the preset files it writes (named JSON
and the synth's own format), and the comparison picture of the mels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.inference.target import Target
from data_generation import amsynth, dx7
from data_generation.presets import read_preset_file, write_preset_file
from data_generation.spec import SynthSpec

SAMPLE_RATE = 44100
SUMMARY = "match.json"  # every output folder's summary, and the mark that this tool made the folder
OUTPUT_SUFFIXES = {".wav", ".json", ".bank", ".png", ".html", ".syx"}


def check_output_folder(out: Path) -> None:
    """Refuses an output path this tool must not replace: a file, or an existing folder it did not
    make (no ``match.json``, or holding anything a match does not write)."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise ASPError(f"output path {out} exists and is not a folder; choose another --out")
    entries = list(out.iterdir())
    ours = (out / SUMMARY).is_file() and all(_written_by_match(e) for e in entries)
    if entries and not ours:
        older = " (an output of an older version has no match.json: delete it yourself)"
        raise ASPError(
            f"output folder {out} already exists and was not made by run_inference (no {SUMMARY}, or other files "
            f"in it); choose a new --out, nothing was changed{older if (out / 'target.wav').is_file() else ''}"
        )


def _written_by_match(entry: Path) -> bool:
    """A file a match writes, or one of its LV2 preset bundles (a ``.lv2`` folder of ``.ttl`` files)."""
    if entry.is_dir() and not entry.is_symlink() and entry.suffix == ".lv2":
        return all(f.is_file() and f.suffix == ".ttl" for f in entry.iterdir())
    return entry.is_file() and entry.suffix in OUTPUT_SUFFIXES


def write_preset_outputs(
    folder: Path, spec: SynthSpec, preset: np.ndarray, title: str, *, stem: str | None = None
) -> np.ndarray:
    """Writes the predicted preset as named JSON and in a form the synth itself loads, as
    ``<stem>.preset.json`` and ``<stem>.bank`` / ``.faust.json`` / ``.params.json`` / ``.syx``
    (stem: the synth's name); returns the preset as read back from that file (the files round
    values to 6 digits; a DX7 voice to the DX7's integer steps, as the engine renders it).

    A DX7 voice (a ``dexed`` synth) is a single-voice dump ``<stem>.syx`` and is also added to
    the folder's 32-voice cartridge ``<synth>.cartridge.syx`` (made on the first voice), named
    from the title's text before `` (``: the target's name; a refined voice ends in `` R``.
    """
    stem = stem or spec.name
    voice = None
    if spec.backend == "dexed":  # the voice first: the named values are then the voice's (the DX7's steps)
        preset = voice = _write_dx7_voice(folder, spec, preset, title, stem)
    named = {"synth": spec.name, "name": title, "normalized": spec.preset_to_dict(preset)}
    if any(p.units for p in spec.params):  # the synth's own units (seconds, semitones, ...)
        named["units"] = amsynth.presets_to_bank_values(spec, preset)[0]
        if voice is not None:  # a DX7 voice's values: whole numbers, a categorical one its class number
            named["units"] = {
                p.name: int(round(v * (p.units[1] - p.units[0]) + p.units[0] if p.units else v * (p.classes - 1)))
                for p, v in zip(spec.params, preset)
            }
    (folder / f"{stem}.preset.json").write_text(json.dumps(named, indent=1) + "\n")
    if spec.name == "amsynth" or any(s.get("kind") == "amsynth_bank" for s in spec.presets):
        path = amsynth.write_bank(folder / f"{stem}.bank", spec, preset[None], [title[:60]])
        return amsynth.bank_to_presets(spec, amsynth.read_bank(path))[0]
    if voice is not None:
        return voice
    if spec.backend == "faust":
        path = write_preset_file(folder / f"{stem}.faust.json", spec, preset[None], [title])
        return read_preset_file(spec, path)[1][0]
    values = [round(float(v), 6) for v in preset]
    listing = [{"index": p.index, "name": p.label or p.name, "value": v} for p, v in zip(spec.params, values)]
    document = {"synth": spec.name, "plugin": spec.source, "normalized_parameters": listing}
    (folder / f"{stem}.params.json").write_text(json.dumps(document, indent=1) + "\n")
    return spec.snap(np.array(values))


def _write_dx7_voice(folder: Path, spec: SynthSpec, preset: np.ndarray, title: str, stem: str) -> np.ndarray:
    name = title.split(" (")[0]
    if stem.endswith(".refined"):
        name = dx7.voice_name(name)[: dx7.NAME_CHARS - 2].rstrip() + " R"
    voice = dx7.write_syx(folder / f"{stem}.syx", dx7.single_voice_sysex(dx7.to_patch(spec, preset, name)))
    cartridge = folder / f"{spec.name}.cartridge.syx"
    voices = [p for n, p in dx7.read_voices(cartridge) if n != "INIT VOICE"] if cartridge.is_file() else []
    dx7.write_syx(cartridge, dx7.bank_sysex([*voices, *(p for _, p in dx7.read_voices(voice))][-dx7.BANK_VOICES :]))
    return dx7.read_voice_presets(spec, voice)[1][0]


def plot_comparison(path: Path, target: Target, mels: dict[str, np.ndarray], results: list[dict]) -> None:
    """One PNG: the target's mel and each prediction's, with their LSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("target", target.mel, "")]
    for r in results:
        if r["synth"] in mels:
            rows.append((r["synth"], mels[r["synth"]], f"one-shot LSD {r['lsd']:.2f}"))
        if f"{r['synth']} best" in mels:
            label = f"best of {r['candidates']['count']}: LSD {r['best_lsd']:.2f} (from {r['candidates']['winner']})"
            rows.append((f"{r['synth']} best", mels[f"{r['synth']} best"], label))
        if f"{r['synth']} refined" in mels:
            label = f"LSD {r['refined_lsd']:.2f} ({r['search_renders']} renders, {r['search_seconds']:.0f} s)"
            rows.append((f"{r['synth']} refined", mels[f"{r['synth']} refined"], label))
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.2 * len(rows)), squeeze=False)
    try:
        for ax, (name, mel, label) in zip(axes[:, 0], rows):
            ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1)
            ax.set_title(f"{name} {label}".strip(), fontsize=9)
            ax.set_yticks([])
            ax.set_xticks([])
        fig.suptitle(f"{target.name} (note {target.note})", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
    finally:
        plt.close(fig)  # pyplot keeps every figure until closed: a folder of sounds grew by MBs per file
