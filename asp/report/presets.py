"""An evaluation's presets (``presets.npz``): every preset it rendered, so its report can render
a few again instead of keeping the audio."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import atomic_path


def write_presets(path: Path, index: np.ndarray, notes: np.ndarray, renders: list[dict]) -> None:
    """Writes every preset an evaluation rendered, so that its report can render a few again.

    Args:
        index: (n,) the evaluated samples' rows in their split.
        notes: (n,) their MIDI notes.
        renders: {"method" ("target" for the true preset), "synth" (the synth rendered), "spec"
            (its spec path), "presets": (n, parameters) float32, NaN rows where a sample has none}.
    """
    arrays = {"index": np.asarray(index, dtype=np.int64), "note": np.asarray(notes, dtype=np.int64)}
    meta = []
    for k, r in enumerate(renders):
        arrays[f"r{k}"] = np.asarray(r["presets"], dtype=np.float32)
        meta.append({"array": f"r{k}", "method": r["method"], "synth": r["synth"], "spec": str(r["spec"])})
    arrays["meta"] = np.array(json.dumps({"version": 1, "renders": meta}))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


@dataclass
class Render:
    """One preset to render for the report: its spec's path, parameters and note."""

    spec: str
    preset: np.ndarray
    note: int


def read_presets(path: Path) -> dict[tuple[int, str, str], Render]:
    """{(sample index, method, rendered synth): Render} from a ``presets.npz``; the true presets
    under the method ``target``.

    Raises:
        ASPError: for a damaged file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
            index, notes = data["index"], data["note"]
            out = {}
            for r in meta["renders"]:
                presets = data[r["array"]]
                for i, note, preset in zip(index, notes, presets):
                    if np.all(np.isfinite(preset)):
                        out[(int(i), r["method"], r["synth"])] = Render(r["spec"], preset, int(note))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise ASPError(
            f"the presets file {path} is damaged ({type(err).__name__}); run the evaluation again to rewrite it"
        ) from None
    return out
