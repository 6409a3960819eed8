"""HTML reports to listen with: a page per match, an index of a folder's matches, a page per evaluation.

    write_match_report(folder, summary, mels)   report.html in a run_inference.py output folder
    write_index(root, entries, failures)       index.html linking the matches of an --input folder
    write_presets(path, ...), read_presets     every preset an evaluation rendered (presets.npz)
    evaluation_report(out, rows, ...)          <out>/report/index.html: tables, plots, and a few
                                               samples rendered again to listen to

Pages are static files made from the Jinja2 templates in ``templates/``: relative links only, CSS
inline, no server and no CDN, so a report opens from disk on a machine without internet and can
be copied elsewhere with its folder. Audio players and images are plain HTML; the few lines of
JavaScript in the evaluation page only add sorting and filtering to tables that are already
sorted by distance without it.

An evaluation does not keep its audio: it keeps the presets it rendered (``presets.npz``), and the
report renders the target and every method's preset again for a bounded number of samples: the
best, the median and the worst by the reference method's LSD, and others spread between them.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from asp.errors import ASPError
from asp.files import atomic_folder, atomic_path, atomic_write

TEMPLATES = Path(__file__).resolve().parent / "templates"
MATCH_PAGE = "report.html"
INDEX_PAGE = "index.html"
REPORT_FOLDER = "report"  # <evaluation out>/report/index.html and its audio
PRESETS = "presets.npz"
REPORT_SAMPLES = 12  # samples an evaluation report renders again by default
PRESET_FILES = (".bank", ".faust.json", ".params.json", ".preset.json")  # links per match, in this order
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
GENERATOR = "multi-task-asp report.py"  # in every page's <meta name="generator">: the mark of our pages
_ENV = None


def hpss_bins(rows: list[dict]) -> list[int]:
    """The HPSS bins that label evaluation rows, in order; empty when the test set has no labels
    (generated with ``--no-hpss``: every label is 0)."""
    return sorted({int(r["hpss"]) for r in rows} - {0})


def environment():
    """The Jinja2 environment of ``templates/``: autoescaped, undefined names are errors."""
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        _ENV.filters["url"] = lambda path: quote(str(path))
        _ENV.filters["num"] = number
        _ENV.globals["note_name"] = note_name
        _ENV.globals["generator"] = GENERATOR
    return _ENV


def render_page(template: str, path: Path, **context) -> Path:
    """Renders ``templates/<template>`` into ``path`` (atomically)."""
    html = environment().get_template(template).render(**context)
    with atomic_write(path) as f:
        f.write(html)
    return path


def number(value, digits: int = 2) -> str:
    """A distance for a page: ``digits`` decimals, ``-`` for a missing or non-finite value."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "-"


def note_name(note: int) -> str:
    """MIDI note -> name with octave: 57 -> A3, 60 -> C4."""
    return f"{NOTE_NAMES[int(note) % 12]}{int(note) // 12 - 1}"


def save_mel_png(path: Path, mel: np.ndarray, *, step: int = 1) -> None:
    """A mel spectrogram as a PNG, low frequencies at the bottom, each pixel one bin and frame
    (written directly: into a folder that is swapped in whole once complete).

    Args:
        mel: (128, frames) float32 in [0, 1].
        step: keep every ``step``-th frame (2 halves the width, for thumbnails).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image

    image.imsave(path, np.asarray(mel)[:, ::step], cmap="magma", vmin=0.0, vmax=1.0, origin="lower", format="png")


def write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit audio in the format of the path's suffix (``.flac``: lossless, about a third of a
    16-bit wav's size, and every current browser plays it), scaled down only if it would clip
    (written directly, like ``save_mel_png``)."""
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    sf.write(path, audio, sample_rate, subtype="PCM_16")


# ---------------------------------------------------------------------------------------
# a match: report.html beside the wavs and presets


def write_match_report(folder: Path, summary: dict, mels: dict[str, np.ndarray]) -> Path:
    """Writes ``report.html`` and its mel PNGs into a match's output folder (``folder`` is the
    temp folder ``Matcher.match`` fills before renaming it, so the page is never half-written).

    Args:
        folder: holds ``target.wav``, ``<synth>.wav``, ``<synth>.refined.wav`` and the preset files.
        summary: what ``match.json`` holds: target, note, input or true synth, results closest first.
        mels: {"target": mel, "<synth>": mel, "<synth> refined": mel}, each (128, frames) in [0, 1].
    """
    folder = Path(folder)
    save_mel_png(folder / "target.mel.png", mels["target"])
    matches = []
    for rank, row in enumerate(summary["results"], 1):
        synth = row["synth"]
        versions = []
        for stem, key, label in ((synth, synth, "one-shot"), (f"{synth}.refined", f"{synth} refined", "refined")):
            if key not in mels:
                continue
            save_mel_png(folder / f"{stem}.mel.png", mels[key])
            prefix = "refined_" if label == "refined" else ""
            versions.append(
                {
                    "label": label,
                    "wav": f"{stem}.wav",
                    "png": f"{stem}.mel.png",
                    "lsd": row.get(f"{prefix}lsd"),
                    "mrsd": row.get(f"{prefix}mrsd"),
                    "files": [f"{stem}{s}" for s in PRESET_FILES if (folder / f"{stem}{s}").is_file()],
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
        extras=[name for name in ("compare.png", "match.json") if (folder / name).is_file()],
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


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


# ---------------------------------------------------------------------------------------
# an evaluation's presets: what to render again for its report


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


# ---------------------------------------------------------------------------------------
# an evaluation's report


def choose_samples(distances: dict[int, float], n: int) -> dict[int, str]:
    """Which samples to render: the best, the median and the worst by ``distances``, and others
    spread evenly between them; {index: case} with case ``best``, ``median``, ``worst`` or
    ``p<percentile>``, ``n`` at most."""
    order = sorted((d, i) for i, d in distances.items() if math.isfinite(d))
    if n <= 0 or not order:
        return {}
    last = len(order) - 1
    ranks = sorted({round(r) for r in np.linspace(0, last, min(n, len(order)))})
    median = last // 2
    if n >= 3 and median not in ranks:  # the median always, in place of the rank closest to it
        ranks.remove(min(ranks[1:-1], key=lambda r: abs(r - median)))
        ranks = sorted([*ranks, median])
    cases = {}
    for r in ranks:
        case = "best" if r == 0 else "worst" if r == last else "median" if r == median else f"p{round(100 * r / last)}"
        cases[order[r][1]] = case
    return cases


def markdown_sections(text: str) -> dict:
    """The markdown our evaluations write (headings, paragraphs, pipe tables) as data for a page:
    {"title", "intro": [paragraph blocks], "sections": [{"heading", "blocks"}]}, each block
    {"kind": "text", "text"} or {"kind": "table", "head": [cells], "rows": [[cells]]}."""
    doc = {"title": "", "intro": [], "sections": []}
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = [line.rstrip() for line in chunk.splitlines() if line.strip()]
        while lines and lines[0].startswith("#"):
            heading = lines.pop(0).lstrip("#").strip()
            if not doc["title"] and not doc["sections"]:
                doc["title"] = heading
            else:
                doc["sections"].append({"heading": heading, "blocks": []})
        if not lines:
            continue
        if len(lines) >= 2 and all(line.startswith("|") for line in lines):
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
            block = {"kind": "table", "head": cells[0], "rows": cells[2:]}
        else:
            block = {"kind": "text", "text": " ".join(lines)}
        (doc["sections"][-1]["blocks"] if doc["sections"] else doc["intro"]).append(block)
    return doc


def evaluation_report(
    out: Path,
    rows: list[dict],
    *,
    preset_files: list[Path],
    report_samples: int,
    title: str,
    markdown: list[Path] = (),
    plots: list[Path] = (),
    links: list[Path] = (),
    reference: str | None,
    progress: bool = True,
) -> Path:
    """Writes ``<out>/report/index.html`` with, beside it, the audio and mel PNGs of up to
    ``report_samples`` samples (the whole folder swapped in at once); returns the page.

    Args:
        out: the evaluation's output folder; the report's links to ``markdown``, ``plots`` and
            ``links`` are relative to it.
        rows: the evaluation's CSV rows (name, index, synth, hpss, note, method, rendered_synth, lsd, ...).
        preset_files: the ``presets.npz`` files of the evaluations the rows come from.
        report_samples: how many samples to render (0: none, the page keeps its tables).
        title: the page's heading.
        markdown: summary files whose tables the page shows (summary.md, table.md).
        plots: PNG files the page shows.
        links: other files the page links to (per-row summaries).
        reference: the method whose LSD picks the best, median and worst samples, among those that
            the most methods scored (the model; None: no samples to pick).
    """
    out = Path(out)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    samples = _samples(rows, methods)
    # among the samples that the most methods scored (runs of a config may cover different sounds)
    most = max((len(s["cells"]) for s in samples.values()), default=0)
    candidates = {i: s["cells"][reference]["lsd"] for i, s in samples.items() if reference in s["cells"]}
    cases = choose_samples({i: d for i, d in candidates.items() if len(samples[i]["cells"]) == most}, report_samples)
    presets: dict = {}
    for path in preset_files:
        if Path(path).is_file():
            presets.update(read_presets(path))
    page = out / REPORT_FOLDER
    with atomic_folder(page) as folder:
        (folder / "audio").mkdir()
        missing = _render_cases(folder / "audio", samples, cases, presets, progress=progress)
        listen = sorted((samples[i] for i in cases), key=lambda s: _sort_key(s, reference))
        every = sorted(samples.values(), key=lambda s: _sort_key(s, reference))
        render_page(
            "evaluation.html.j2",
            folder / INDEX_PAGE,
            title=title,
            methods=methods,
            reference=reference,
            listen=listen,
            samples=every,
            report_samples=report_samples,
            missing=missing,
            synths=sorted({s["synth"] for s in every}),
            bins=hpss_bins(every),
            documents=[
                {"path": "../" + _relative(p, out), "doc": markdown_sections(Path(p).read_text())}
                for p in markdown
                if Path(p).is_file()
            ],
            plots=["../" + _relative(p, out) for p in plots if Path(p).is_file()],
            links=["../" + _relative(p, out) for p in links if Path(p).is_file()],
        )
    return page / INDEX_PAGE


def _samples(rows: list[dict], methods: list[str]) -> dict[int, dict]:
    """{index: {index, name, synth, hpss, note, cells: {method: {lsd, synth}}}}: per method the
    own synth's render, or out of domain the synth that came closest."""
    samples: dict[int, dict] = {}
    for r in rows:
        index = int(r["index"])
        s = samples.setdefault(
            index,
            {
                "index": index,
                "name": str(r["name"]),
                "synth": str(r["synth"]),
                "hpss": int(r["hpss"]),
                "note": int(r["note"]),
                "cells": {},
                "case": None,
            },
        )
        lsd = float(r["lsd"]) if isinstance(r.get("lsd"), (int, float)) else math.nan
        old = s["cells"].get(r["method"])
        own = r["rendered_synth"] == r["synth"]
        if old is None or (own and not old["own"]) or (own == old["own"] and lsd < old["lsd"]):
            s["cells"][r["method"]] = {"lsd": lsd, "synth": str(r["rendered_synth"]), "own": own}
    return samples


def _sort_key(sample: dict, reference: str | None) -> tuple:
    lsd = sample["cells"].get(reference, {}).get("lsd", math.nan)
    return (not math.isfinite(lsd), lsd if math.isfinite(lsd) else 0.0, sample["index"])


def _render_cases(folder: Path, samples: dict, cases: dict[int, str], presets: dict, *, progress: bool) -> int:
    """Renders the target and each method's preset of the chosen samples into ``folder``
    (``<index>_<method>.flac`` and ``.png``); fills each sample's ``case``, ``target`` and cells'
    ``audio``/``png``. Returns how many cells had no preset to render."""
    from tqdm import tqdm

    from data.features import mel_spectrogram
    from data_generation.render import Renderer
    from data_generation.spec import load_spec

    renderer = Renderer()
    specs: dict = {}
    missing = 0

    def render(item: Render, stem: str) -> dict:
        spec = specs.get(item.spec) or specs.setdefault(item.spec, load_spec(item.spec))
        audio = renderer.render(spec, item.preset, note=item.note)
        write_audio(folder / f"{stem}.flac", audio, spec.render.sample_rate)
        save_mel_png(folder / f"{stem}.png", mel_spectrogram(audio, spec.render.sample_rate), step=2)
        return {"audio": f"audio/{stem}.flac", "png": f"audio/{stem}.png"}

    for index, case in tqdm(cases.items(), desc="report", unit="sample", disable=not progress):
        sample = samples[index]
        sample["case"] = case
        target = presets.get((index, "target", sample["synth"]))
        sample["target"] = render(target, f"{index:05d}_target") if target else None
        missing += target is None
        stems = set()
        for method, cell in sample["cells"].items():
            item = presets.get((index, method, cell["synth"]))
            if item is None:
                missing += 1
                continue
            stem = f"{index:05d}_{re.sub(r'[^0-9A-Za-z]+', '_', method).strip('_') or 'method'}"
            while stem in stems:
                stem += "_"
            stems.add(stem)
            cell.update(render(item, stem))
    return missing
