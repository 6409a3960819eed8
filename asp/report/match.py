"""A match's page (report.html beside its wavs and presets) and the index of a folder's matches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.report.pages import GENERATOR, INDEX_PAGE, MATCH_PAGE, PRESET_FILES, _relative, render_page, save_mel_png


def write_match_report(folder: Path, summary: dict, mels: dict[str, np.ndarray]) -> Path:
    """Writes ``report.html`` and its mel PNGs into a match's output folder (``folder`` is the
    temp folder ``Matcher.match`` fills before renaming it, so the page is never half-written).

    Args:
        folder: holds ``target.wav``, ``<synth>.wav``, ``<synth>.best.wav`` (best of K),
            ``<synth>.refined.wav`` and the preset files.
        summary: what ``match.json`` holds: target, note, input or true synth, results closest first.
        mels: {"target": mel, "<synth>": mel, "<synth> best": mel, "<synth> refined": mel}, each
            (128, frames) in [0, 1].
    """
    folder = Path(folder)
    save_mel_png(folder / "target.mel.png", mels["target"])
    matches = []
    for rank, row in enumerate(summary["results"], 1):
        synth = row["synth"]
        versions = []
        for stem, key, label, prefix in (
            (synth, synth, "one-shot", ""),
            (f"{synth}.best", f"{synth} best", "best of K", "best_"),
            (f"{synth}.refined", f"{synth} refined", "refined", "refined_"),
        ):
            if key not in mels:
                continue
            save_mel_png(folder / f"{stem}.mel.png", mels[key])
            versions.append(
                {
                    "label": label,
                    "wav": f"{stem}.wav",
                    "png": f"{stem}.mel.png",
                    "lsd": row.get(f"{prefix}lsd"),
                    "mrsd": row.get(f"{prefix}mrsd"),
                    "files": [f"{stem}{s}" for s in PRESET_FILES if (folder / f"{stem}{s}").is_file()]
                    + [  # the LV2 preset bundle's preset file (a link to a folder would not open everywhere)
                        f"{t.parent.name}/{t.name}"
                        for t in sorted(folder.glob(f"*.{stem}.lv2/*.ttl"))
                        if t.name != "manifest.ttl"
                    ],
                }
            )
        matches.append({"rank": rank, "synth": synth, "row": row, "versions": versions})
    rendered = [m for m in matches if m["versions"]]
    return render_page(
        "match.html.j2",
        folder / MATCH_PAGE,
        summary=summary,
        matches=matches,
        closest=rendered[0]["synth"] if rendered else None,
        extras=[name for name in ("compare.png", "match.json") if (folder / name).is_file()]
        + sorted(p.name for p in folder.glob("*.cartridge.syx")),  # a DX7 cartridge of the match's voices
    )


def check_index(root: Path) -> None:
    """Refuses an ``index.html`` in ``root`` that these reports did not write (it would be replaced).

    Raises:
        ASPError: naming the file.
    """
    page = Path(root) / INDEX_PAGE
    if page.is_symlink() or (page.exists() and not page.is_file()):
        ours = False
    elif page.exists():
        with open(page, errors="replace") as f:
            ours = GENERATOR in f.read(2000)
    else:
        return
    if not ours:
        raise ASPError(
            f"{page} exists and was not written by run_inference, whose index of the matches goes there; "
            "choose another --out (nothing was changed)"
        )


def write_index(root: Path, entries: list[dict], failures: list[tuple[str, str]]) -> Path:
    """Writes ``<root>/index.html``: a row per matched sound (its target, closest synth and a link
    to its report) and a line per sound that could not be matched.

    Args:
        entries: {"folder": the match's output folder, "summary": its match.json contents}.
        failures: (file, error message) per sound that failed.
    """
    root = Path(root)
    rows = []
    for entry in entries:
        folder = Path(entry["folder"])
        results = [r for r in entry["summary"]["results"] if "lsd" in r]
        best = results[0] if results else None
        rows.append(
            {
                "name": entry["summary"]["target"],
                "folder": Path(_relative(folder, root)).as_posix(),
                "note": entry["summary"]["note"],
                "best": best,
                "best_lsd": min(best.get("lsd", math.inf), best.get("refined_lsd", math.inf)) if best else None,
            }
        )
    return render_page("index.html.j2", root / INDEX_PAGE, rows=rows, failures=failures)
