"""An evaluation's page: its tables and plots, every sample's LSD per method, and a few samples
(the best, the median, the worst by the reference method's LSD, others between) rendered again to
listen to."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asp.files import atomic_folder
from asp.report.document import Document
from asp.report.pages import (
    INDEX_PAGE,
    REPORT_FOLDER,
    _relative,
    hpss_bins,
    render_page,
    save_mel_png,
    write_audio,
)
from asp.report.presets import Render, read_presets
from data.features import mel_spectrogram
from data_generation.render import Renderer
from data_generation.spec import load_spec


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


def evaluation_report(
    out: Path,
    rows: list[dict],
    *,
    preset_files: list[Path],
    report_samples: int,
    title: str,
    documents: list[tuple[Path, Document]] = (),
    plots: list[Path] = (),
    links: list[Path] = (),
    reference: str | None,
    progress: bool = True,
) -> Path:
    """Writes ``<out>/report/index.html`` with, beside it, the audio and mel PNGs of up to
    ``report_samples`` samples (the whole folder swapped in at once); returns the page.

    Args:
        out: the evaluation's output folder; the report's links to ``documents``, ``plots`` and
            ``links`` are relative to it.
        rows: the evaluation's CSV rows (name, index, synth, hpss, note, method, rendered_synth, lsd, ...).
        preset_files: the ``presets.npz`` files of the evaluations the rows come from.
        report_samples: how many samples to render (0: none, the page keeps its tables).
        title: the page's heading.
        documents: (markdown file, its ``Document``) of each summary whose tables the page shows
            (summary.md, table.md): the page links the file and shows the document's tables.
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
            documents=[{"path": "../" + _relative(p, out), "doc": doc} for p, doc in documents if Path(p).is_file()],
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
